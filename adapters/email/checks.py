"""The firm's files, checked by ``check-config`` and before the gateway starts: every key,
certificate and template its mail needs is resolved and parsed, and each problem is reported
as ``file: key: reason``."""

from collections.abc import Callable, Mapping
from pathlib import Path

from adapters.email.links import MIN_KEY_BYTES
from adapters.email.reply_signature import openssl_missing
from adapters.email.smime import load_certificate, load_recipient, load_signer
from gateway.config.agencies import EmailAgency
from gateway.config.email import DEFAULT_TEMPLATE_NAMES, EmailSection
from gateway.config.secrets import SecretRef
from gateway.errors import ConfigError


def check_email_agency(
    agency: EmailAgency, base_dir: Path, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Every problem with the files a law firm's mail needs."""
    return email_problems(
        agency.source or agency.id,
        agency.email,
        base_dir,
        environ,
        expiry_warning=agency.expiry_warning,
    )


def email_problems(
    source: str,
    email: EmailSection,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    expiry_warning: bool = False,
) -> list[str]:
    """Resolve and parse every key, certificate and template a firm's mail needs (the
    ``placement.expiring`` letter only when the firm takes expiry warnings)."""
    problems: list[str] = []

    def resolve(key: str, ref: SecretRef) -> str | None:
        try:
            return ref.resolve(base_dir, environ)
        except ConfigError as exc:
            problems.append(f"{source}: email.{key} ({ref.describe()}): {exc}")
            return None

    cert = resolve("smime.sign_cert", email.smime.sign_cert)
    key = resolve("smime.sign_key", email.smime.sign_key)
    try:
        if cert is not None and key is not None:
            load_signer(cert, key, what="email.smime.sign_cert")
        if email.smime.encrypt_cert is not None:
            firm = resolve("smime.encrypt_cert", email.smime.encrypt_cert)
            if firm is not None:
                load_recipient(firm, what="email.smime.encrypt_cert")
    except ConfigError as exc:
        problems.append(f"{source}: {exc}")
    problems += _reply_problems(source, email, resolve)
    if email.smtp.password is not None:
        resolve("smtp.password", email.smtp.password)
    if email.imap is not None:
        resolve("imap.password", email.imap.password)
    if email.links is not None:
        link_key = resolve("links.key", email.links.key)
        if link_key is not None and len(link_key.encode()) < MIN_KEY_BYTES:
            problems.append(
                f"{source}: email.links.key: {len(link_key.encode())} bytes; a link key needs "
                f"at least {MIN_KEY_BYTES} (e.g. openssl rand -hex 32)"
            )
    for key_name, ca_file in (
        ("smtp.ca_file", email.smtp.ca_file),
        ("imap.ca_file", email.imap.ca_file if email.imap else None),
    ):
        if ca_file is None:
            continue
        path = Path(ca_file) if Path(ca_file).is_absolute() else base_dir / ca_file
        try:
            load_certificate(path.read_bytes(), what=f"email.{key_name}")
        except OSError as exc:
            problems.append(f"{source}: email.{key_name}: cannot read {path}: {exc.strerror}")
        except ConfigError as exc:
            problems.append(f"{source}: {exc}")
    templates = Path(email.templates_dir)
    templates = templates if templates.is_absolute() else base_dir / templates
    kinds = [
        k
        for k in DEFAULT_TEMPLATE_NAMES
        if (k != "batch" or email.mode == "per_batch")
        and (k != "placement.expiring" or expiry_warning)
    ]
    for kind in kinds:
        for part in ("subject", "body"):
            name = f"{email.language}/{email.template_name(kind)}.{part}.j2"
            if not (templates / name).is_file():
                why = (
                    " (expiry_warning = true: the firm takes placement.expiring letters; add "
                    "the template or set expiry_warning = false)"
                    if kind == "placement.expiring"
                    else ""
                )
                problems.append(
                    f"{source}: email.templates_dir: template {templates / name} is missing{why}"
                )
    return problems


def _reply_problems(
    source: str, email: EmailSection, resolve: Callable[[str, SecretRef], str | None]
) -> list[str]:
    """The firm's pinned signing certificates, when replies are read and must be signed."""
    smime = email.smime
    if email.imap is None or smime.reply_signature == "off":
        return []
    refs = smime.reply_cert_refs()
    if not refs:
        return [
            f"{source}: email.smime.reply_signature = {smime.reply_signature!r} needs the "
            "firm's signing certificate: set email.smime.reply_certs (or encrypt_cert), or "
            'reply_signature = "off" to read replies without checking who sent them'
        ]
    problems = []
    for n, ref in enumerate(smime.reply_certs):
        pem = resolve(f"smime.reply_certs[{n}]", ref)
        if pem is not None:
            try:
                load_certificate(pem, what=f"email.smime.reply_certs[{n}]")
            except ConfigError as exc:
                problems.append(f"{source}: {exc}")
    missing = openssl_missing()
    if missing is not None:
        problems.append(f"{source}: email.smime.reply_signature: {missing} (it verifies replies)")
    return problems


__all__ = ["check_email_agency", "email_problems"]
