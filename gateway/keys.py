"""Key material: generate what the config points at, and find the sandbox's side of it.

``agency-gateway keys generate`` writes every missing key file named in the config (mode
0600), in the format its place needs:

* ``secrets.pii_keys``: a PII key ring line ``k<date>:<base64 32 bytes>``;
* ``secrets.evidence_signing_key``: a C2SP note signing key (``PRIVATE+KEY+...``), with the
  verifier key beside it as ``<file>.pub`` to hand to auditors;
* ``lender.signing_certificate``/``signing_key``: a demo CA and a document-signing
  certificate issued by it for the authorisation letters, the CA certificate beside them as
  ``<name>-ca.crt`` for verifiers (gateway.letters.certificates);
* an agency's ``signing.keys``: ``whsec_`` (v1) or ``whsk_`` (v1a, with ``<file>.pub``
  holding the ``whpk_`` to give the agency);
* an agency's ``inbound.keys``: ``whsec_`` (v1, the secret shared with the agency) or, for
  v1a, the ``whpk_`` public key. In production the agency sends us that public key; for the
  sandbox we generate the pair and keep the agency's private half in ``<file>.sandbox``.

Keys referenced by environment variable are not generated: the command says which to set.
"""

import ipaddress
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.config.agencies import AgencyConfig, EmailAgency, SftpAgency, WebhookAgency
from gateway.config.secrets import SecretRef
from gateway.config.settings import GatewaySettings
from gateway.errors import ConfigError
from gateway.evidence.signed_note import generate_key
from gateway.letters.certificates import ca_path_for, demo_signing_set
from gateway.privacy.pii import PiiKeyRing
from gateway.signing import (
    SigningKey,
    VerifyingKey,
    generate_ed25519_pair,
    generate_hmac_secret,
    parse_ed25519_private,
    parse_hmac_secret,
)


@dataclass(frozen=True, slots=True)
class KeyAction:
    path: str
    what: str
    done: str  # "created", "exists", "set env"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def _resolve_path(ref: SecretRef, base_dir: Path) -> Path | None:
    if ref.file is None:
        return None
    path = Path(ref.file)
    return path if path.is_absolute() else base_dir / path


def _notice_key_maker(scheme: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        if scheme == "v1":
            _write_secret(path, generate_hmac_secret())
            return
        private, public = generate_ed25519_pair()
        _write_secret(path, private)
        Path(f"{path}.pub").write_text(public + "\n", encoding="utf-8")

    return make


def generate_missing(
    settings: GatewaySettings, agencies: dict[str, AgencyConfig]
) -> list[KeyAction]:
    """Create every missing key file; never overwrite an existing one."""
    base = settings.base_dir
    actions: list[KeyAction] = []

    def handle(ref: SecretRef, what: str, make: Callable[[Path], None]) -> None:
        path = _resolve_path(ref, base)
        if path is None:
            actions.append(KeyAction(f"${ref.env}", what, "set env"))
        elif path.exists():
            actions.append(KeyAction(str(path), what, "exists"))
        else:
            make(path)
            actions.append(KeyAction(str(path), what, "created"))

    stamp = datetime.now(UTC).strftime("%Y%m%d")
    handle(
        settings.secrets.pii_keys,
        "PII key ring (AES-256-GCM)",
        lambda p: _write_secret(p, PiiKeyRing.generate_line(f"k{stamp}")),
    )

    def evidence_key(path: Path) -> None:
        private, verifier = generate_key(settings.secrets.evidence_origin)
        _write_secret(path, private)
        Path(f"{path}.pub").write_text(verifier + "\n", encoding="utf-8")

    handle(settings.secrets.evidence_signing_key, "evidence checkpoint key (Ed25519)", evidence_key)
    actions.extend(generate_lender_signing(settings))
    if settings.notices.enabled:
        for ref in settings.notices.keys:
            # The messaging service verifies with the .whsec itself (v1) or the .pub (v1a).
            handle(
                ref,
                f"borrower notices {settings.notices.scheme} key",
                _notice_key_maker(settings.notices.scheme),
            )
    for agency in agencies.values():
        if isinstance(agency, EmailAgency):
            actions.extend(generate_email_keys(agency, base))
            continue
        if isinstance(agency, SftpAgency):
            actions.extend(generate_sftp_keys(agency, base))
            continue
        for ref in agency.signing.keys:
            if agency.signing.scheme == "v1":
                handle(
                    ref,
                    f"{agency.id} outbound v1 secret",
                    lambda p: _write_secret(p, generate_hmac_secret()),
                )
            else:

                def outbound_pair(path: Path) -> None:
                    private, public = generate_ed25519_pair()
                    _write_secret(path, private)
                    Path(f"{path}.pub").write_text(public + "\n", encoding="utf-8")

                handle(ref, f"{agency.id} outbound v1a key", outbound_pair)
        for ref in agency.inbound.keys:
            if agency.inbound.scheme == "v1":
                handle(
                    ref,
                    f"{agency.id} inbound v1 secret",
                    lambda p: _write_secret(p, generate_hmac_secret()),
                )
            else:

                def inbound_pair(path: Path) -> None:
                    private, public = generate_ed25519_pair()
                    _write_secret(Path(f"{path}.sandbox"), private)
                    _write_secret(path, public)

                handle(ref, f"{agency.id} inbound v1a public key (+ sandbox private)", inbound_pair)
    return actions


def generate_lender_signing(settings: GatewaySettings) -> list[KeyAction]:
    """The lender's demo document-signing certificate, key and CA certificate
    (gateway.letters.certificates), when ``[lender] signing_certificate`` and
    ``signing_key`` name files and neither exists."""
    lender = settings.lender
    what = "lender letter-signing certificate + key (+ -ca.crt)"
    cert_path = _resolve_path(lender.signing_certificate, settings.base_dir)
    key_path = _resolve_path(lender.signing_key, settings.base_dir)
    if cert_path is None or key_path is None:
        env = lender.signing_certificate.env or lender.signing_key.env
        return [KeyAction(f"${env}", what, "set env")]
    if cert_path.exists() and key_path.exists():
        return [KeyAction(str(cert_path), what, "exists")]
    if cert_path.exists() or key_path.exists():
        raise ConfigError(
            f"[lender]: only one of {cert_path} and {key_path} exists; they are made as a "
            "pair, so remove the other one and run `agency-gateway keys generate` again"
        )
    registration = lender.registration
    made = demo_signing_set(registration.legal_name if registration else "Demo Lender")
    _write_secret(key_path, made.key.strip())
    cert_path.write_text(made.chain, encoding="utf-8")
    ca_path_for(cert_path).write_text(made.ca, encoding="utf-8")
    return [KeyAction(str(cert_path), what, "created")]


def self_signed(
    common_name: str, *, email: str | None = None, loopback: bool = False, days: int = 825
) -> tuple[str, str]:
    """A self-signed RSA-2048 certificate and its PKCS#8 key, both PEM.

    RSA because S/MIME envelopes can only be addressed to RSA keys and common mail clients
    handle RSA signers best. ``email`` adds the S/MIME subject address; ``loopback`` makes a
    server certificate for 127.0.0.1 and localhost (the sandbox's SMTP and IMAP servers).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    names: list[x509.GeneralName] = []
    if email:
        names.append(x509.RFC822Name(email))
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    if loopback:
        names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def generate_email_keys(agency: EmailAgency, base_dir: Path) -> list[KeyAction]:
    """A law firm's keys: our S/MIME pair, the firm's certificate (with its private half in
    ``<file>.sandbox`` for the sandbox firm), relay passwords, and a loopback server
    certificate wherever a ``ca_file`` is named but missing (its key in ``<file>.key``)."""
    email = agency.email
    actions: list[KeyAction] = []
    cert_path = _resolve_path(email.smime.sign_cert, base_dir)
    key_path = _resolve_path(email.smime.sign_key, base_dir)
    what = f"{agency.id} S/MIME signing certificate and key (lender)"
    if cert_path is None or key_path is None:
        actions.append(
            KeyAction(
                "$" + str(email.smime.sign_cert.env or email.smime.sign_key.env), what, "set env"
            )
        )
    elif cert_path.exists() and key_path.exists():
        actions.append(KeyAction(str(cert_path), what, "exists"))
    elif cert_path.exists() or key_path.exists():
        raise ConfigError(
            f"{agency.id}: only one of {cert_path} and {key_path} exists; they are made as a "
            "pair, so remove the other one and run `agency-gateway keys generate` again"
        )
    else:
        cert, key = self_signed(email.from_name or email.from_address, email=email.from_address)
        _write_secret(key_path, key)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_text(cert, encoding="utf-8")
        actions.append(KeyAction(str(cert_path), what, "created"))
    firm = email.smime.encrypt_cert
    if firm is not None:
        path = _resolve_path(firm, base_dir)
        what = f"{agency.id} firm encryption certificate (+ sandbox private key)"
        if path is None:
            actions.append(KeyAction(f"${firm.env}", what, "set env"))
        elif path.exists():
            actions.append(KeyAction(str(path), what, "exists"))
        else:
            cert, key = self_signed(agency.name, email=email.to[0])
            _write_secret(Path(f"{path}.sandbox"), key)
            path.write_text(cert, encoding="utf-8")
            actions.append(KeyAction(str(path), what, "created"))
    passwords = [("smtp", email.smtp.password)]
    if email.imap is not None:
        passwords.append(("imap", email.imap.password))
    for section, ref in passwords:
        if ref is None:
            continue
        path = _resolve_path(ref, base_dir)
        what = f"{agency.id} {section} password"
        if path is None:
            actions.append(KeyAction(f"${ref.env}", what, "set env"))
        elif path.exists():
            actions.append(KeyAction(str(path), what, "exists"))
        else:
            _write_secret(path, secrets.token_urlsafe(24))
            actions.append(KeyAction(str(path), what, "created"))
    if email.links is not None:
        # The key document links are signed with (adapters.email.links): 32 random bytes.
        path = _resolve_path(email.links.key, base_dir)
        what = f"{agency.id} document link key"
        if path is None:
            actions.append(KeyAction(f"${email.links.key.env}", what, "set env"))
        elif path.exists():
            actions.append(KeyAction(str(path), what, "exists"))
        else:
            _write_secret(path, secrets.token_hex(32))
            actions.append(KeyAction(str(path), what, "created"))
    for ca_file in {email.smtp.ca_file, email.imap.ca_file if email.imap else None} - {None}:
        assert ca_file is not None
        path = Path(ca_file) if Path(ca_file).is_absolute() else base_dir / ca_file
        what = f"{agency.id} sandbox server certificate (trust anchor)"
        if path.exists():
            actions.append(KeyAction(str(path), what, "exists"))
            continue
        cert, key = self_signed("agency-gateway sandbox", loopback=True)
        _write_secret(Path(f"{path}.key"), key)
        path.write_text(cert, encoding="utf-8")
        actions.append(KeyAction(str(path), what, "created"))
    return actions


def generate_sftp_keys(agency: SftpAgency, base_dir: Path) -> list[KeyAction]:
    """An SFTP agency's keys: our Ed25519 client key (OpenSSH format, public half in
    ``<file>.pub`` for the agency's authorized_keys) and, when ``host_keys_file`` is named
    but missing, a sandbox server key: its public line in the file (what we pin), its
    private half in ``<file>.sandbox``. A real agency's host key comes from the agency."""
    import asyncssh

    cfg = agency.sftp
    actions: list[KeyAction] = []
    wanted = [(cfg.client_key, f"{agency.id} SFTP client key (Ed25519, + .pub)", False)]
    if cfg.host_keys_file is not None:
        wanted.append((cfg.host_keys_file, f"{agency.id} sandbox SFTP host key (pinned)", True))
    for ref, what, host in wanted:
        path = _resolve_path(ref, base_dir)
        if path is None:
            actions.append(KeyAction(f"${ref.env}", what, "set env"))
            continue
        if path.exists():
            actions.append(KeyAction(str(path), what, "exists"))
            continue
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{agency.id} {what}")
        private = key.export_private_key().decode().strip()
        public = key.export_public_key().decode().strip()
        if host:
            _write_secret(Path(f"{path}.sandbox"), private)
            path.write_text(public + "\n", encoding="utf-8")
        else:
            _write_secret(path, private)
            Path(f"{path}.pub").write_text(public + "\n", encoding="utf-8")
        actions.append(KeyAction(str(path), what, "created"))
    return actions


def sandbox_sftp_keys(agency: SftpAgency, base_dir: Path) -> tuple[str, str]:
    """The sandbox server's side: (its private host key, the authorized_keys line of our
    client key), both OpenSSH text, as ``generate_sftp_keys`` wrote them."""
    cfg = agency.sftp
    host = _resolve_path(cfg.host_keys_file, base_dir) if cfg.host_keys_file else None
    client = _resolve_path(cfg.client_key, base_dir)
    if host is None or client is None:
        raise ConfigError(
            f"{agency.id}: the SFTP sandbox needs sftp.host_keys_file and sftp.client_key "
            "as files, not env vars"
        )
    paths = (Path(f"{host}.sandbox"), Path(f"{client}.pub"))
    for path in paths:
        if not path.exists():
            raise ConfigError(
                f"{agency.id}: {path} is missing; run `agency-gateway keys generate` to "
                "create sandbox keys"
            )
    return tuple(path.read_text(encoding="utf-8").strip() for path in paths)  # type: ignore[return-value]


def sandbox_keys(
    agency: WebhookAgency, base_dir: Path
) -> tuple[list[VerifyingKey], list[SigningKey]]:
    """The agency's side of the keys: what verifies our packets, what signs its events."""
    verify: list[VerifyingKey] = []
    for ref in agency.signing.keys:
        text = ref.resolve(base_dir)
        if agency.signing.scheme == "v1":
            verify.append(parse_hmac_secret(text))
        else:
            verify.append(parse_ed25519_private(text).public())
    sign: list[SigningKey] = []
    for ref in agency.inbound.keys:
        if agency.inbound.scheme == "v1":
            sign.append(parse_hmac_secret(ref.resolve(base_dir)))
        else:
            path = _resolve_path(ref, base_dir)
            if path is None:
                raise ConfigError(
                    f"{agency.id}: the sandbox needs inbound v1a keys in files, not env vars"
                )
            sandbox = Path(f"{path}.sandbox")
            if not sandbox.exists():
                raise ConfigError(
                    f"{agency.id}: {sandbox} is missing; run `agency-gateway keys generate` "
                    "to create sandbox keys"
                )
            sign.append(parse_ed25519_private(sandbox.read_text(encoding="utf-8").strip()))
    return verify, sign


__all__ = [
    "KeyAction",
    "generate_email_keys",
    "generate_lender_signing",
    "generate_missing",
    "generate_sftp_keys",
    "sandbox_keys",
    "sandbox_sftp_keys",
    "self_signed",
]
