"""Key material: generate what the config points at, and find the sandbox's side of it.

``agency-gateway keys generate`` writes every missing key file named in the config (mode
0600), in the format its place needs:

* ``secrets.pii_keys``: a PII key ring line ``k<date>:<base64 32 bytes>``;
* ``secrets.evidence_signing_key``: a C2SP note signing key (``PRIVATE+KEY+...``), with the
  verifier key beside it as ``<file>.pub`` to hand to auditors;
* an agency's ``signing.keys``: ``whsec_`` (v1) or ``whsk_`` (v1a, with ``<file>.pub``
  holding the ``whpk_`` to give the agency);
* an agency's ``inbound.keys``: ``whsec_`` (v1, the secret shared with the agency) or, for
  v1a, the ``whpk_`` public key. In production the agency sends us that public key; for the
  sandbox we generate the pair and keep the agency's private half in ``<file>.sandbox``.

Keys referenced by environment variable are not generated: the command says which to set.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.agency_config import AgencyConfig, WebhookAgency
from gateway.errors import ConfigError
from gateway.pii import PiiKeyRing
from gateway.secret_refs import SecretRef
from gateway.settings import GatewaySettings
from gateway.signed_note import generate_key
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
    for agency in agencies.values():
        if not isinstance(agency, WebhookAgency):
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


__all__ = ["KeyAction", "generate_missing", "sandbox_keys"]
