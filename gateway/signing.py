"""Standard Webhooks v1.0 signing and verification, pure (no I/O).

Rules (from the spec, see README "Inbound protocol"):

* The signed content is ``webhook-id + "." + webhook-timestamp + "." + raw body bytes``.
  Never re-serialise JSON before signing or verifying.
* ``v1`` is HMAC-SHA256 with a ``whsec_`` secret (base64 of 24-64 random bytes).
* ``v1a`` is Ed25519; ``whsk_`` is base64 of the 32-byte seed, optionally followed by the
  32-byte public key (both layouts exist in the wild), ``whpk_`` is base64 of the public key.
* ``webhook-signature`` is a space-separated list of ``<version>,<base64>``; a message verifies
  when any entry matches any trusted key, which is what makes key rotation seamless.
* The timestamp must be within the tolerance window, past or future.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import (
    ConfigError,
    MissingHeaders,
    SignatureInvalid,
    TimestampOutOfTolerance,
)


@dataclass(frozen=True, slots=True)
class HmacKey:
    """A ``v1`` shared secret."""

    secret: bytes

    def __repr__(self) -> str:
        return "HmacKey(<redacted>)"


@dataclass(frozen=True, slots=True)
class Ed25519SigningKey:
    """A ``v1a`` private key (ours when signing packets, an agency's in the sandbox)."""

    private: Ed25519PrivateKey

    def __repr__(self) -> str:
        return "Ed25519SigningKey(<redacted>)"

    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


SigningKey = HmacKey | Ed25519SigningKey
VerifyingKey = HmacKey | Ed25519PublicKey


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not valid base64") from None


def parse_hmac_secret(text: str) -> HmacKey:
    if not text.startswith("whsec_"):
        raise ConfigError("a v1 secret must start with whsec_ (not v1, which prefixes signatures)")
    raw = _b64decode(text.removeprefix("whsec_"), "whsec_ secret")
    if not 24 <= len(raw) <= 64:
        raise ConfigError(f"a v1 secret must decode to 24-64 bytes, got {len(raw)}")
    return HmacKey(raw)


def parse_ed25519_private(text: str) -> Ed25519SigningKey:
    if not text.startswith("whsk_"):
        raise ConfigError("a v1a signing key must start with whsk_")
    raw = _b64decode(text.removeprefix("whsk_"), "whsk_ key")
    if len(raw) not in (32, 64):
        raise ConfigError(f"a whsk_ key must decode to 32 or 64 bytes, got {len(raw)}")
    private = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and _public_bytes(private.public_key()) != raw[32:]:
        raise ConfigError("whsk_ key: the embedded public key does not match the seed")
    return Ed25519SigningKey(private)


def parse_ed25519_public(text: str) -> Ed25519PublicKey:
    if not text.startswith("whpk_"):
        raise ConfigError("a v1a verifying key must start with whpk_")
    raw = _b64decode(text.removeprefix("whpk_"), "whpk_ key")
    if len(raw) != 32:
        raise ConfigError(f"a whpk_ key must decode to 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def parse_signing_key(scheme: str, text: str) -> SigningKey:
    return parse_hmac_secret(text) if scheme == "v1" else parse_ed25519_private(text)


def parse_verifying_key(scheme: str, text: str) -> VerifyingKey:
    return parse_hmac_secret(text) if scheme == "v1" else parse_ed25519_public(text)


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_hmac_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def generate_ed25519_pair() -> tuple[str, str]:
    """Return (whsk_, whpk_) with whsk_ = base64(seed || public), the Svix layout."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = _public_bytes(private.public_key())
    return (
        "whsk_" + base64.b64encode(seed + public).decode(),
        "whpk_" + base64.b64encode(public).decode(),
    )


def public_key_text(key: Ed25519SigningKey) -> str:
    return "whpk_" + base64.b64encode(_public_bytes(key.public())).decode()


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(msg_id: str, timestamp: int, body: bytes, keys: Sequence[SigningKey]) -> str:
    """Return the ``webhook-signature`` header value: one entry per key, space-separated."""
    if "." in msg_id:
        raise ValueError("webhook-id must not contain '.'")
    content = signed_content(msg_id, timestamp, body)
    parts = []
    for key in keys:
        if isinstance(key, HmacKey):
            mac = hmac.digest(key.secret, content, hashlib.sha256)
            parts.append("v1," + base64.b64encode(mac).decode())
        else:
            parts.append("v1a," + base64.b64encode(key.private.sign(content)).decode())
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class WebhookHeaders:
    msg_id: str
    timestamp: int
    signature: str


def read_headers(headers: "Iterable[tuple[str, str]]") -> WebhookHeaders:
    """Pick the three webhook-* headers (case-insensitive); raise MissingHeaders naming any gap."""
    found = {k.lower(): v for k, v in headers if k.lower().startswith("webhook-")}
    missing = [
        h for h in ("webhook-id", "webhook-timestamp", "webhook-signature") if h not in found
    ]
    if missing:
        raise MissingHeaders(f"missing header(s): {', '.join(missing)}")
    msg_id = found["webhook-id"].strip()
    if not msg_id or len(msg_id) > 255 or "." in msg_id or not _printable_utf8(msg_id):
        raise MissingHeaders("webhook-id must be 1-255 printable UTF-8 characters without '.'")
    stamp = found["webhook-timestamp"].strip()
    # ASCII digits only: int() would also take signs, spaces, underscores and other scripts'
    # digits, so two readers of one header could disagree on the time it names.
    if not _TIMESTAMP.fullmatch(stamp):
        raise MissingHeaders("webhook-timestamp must be integer Unix seconds (ASCII digits)")
    return WebhookHeaders(msg_id, int(stamp), found["webhook-signature"])


_TIMESTAMP = re.compile(r"[0-9]{1,16}")


def _printable_utf8(text: str) -> bool:
    """No control characters, and no bytes that were not UTF-8 (aiohttp keeps those as lone
    surrogates, which cannot be signed or stored as text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return text.isprintable()


def verify(
    headers: WebhookHeaders,
    body: bytes,
    keys: Sequence[VerifyingKey],
    *,
    now: int,
    tolerance: int = 300,
) -> str:
    """Check timestamp and signature. Return the version that matched; raise otherwise."""
    if abs(now - headers.timestamp) > tolerance:
        raise TimestampOutOfTolerance(
            f"webhook-timestamp {headers.timestamp} is {now - headers.timestamp:+d} s from "
            f"server time; the window is ±{tolerance} s"
        )
    content = signed_content(headers.msg_id, headers.timestamp, body)
    hmac_macs: list[bytes] | None = None
    for entry in headers.signature.split():
        version, _, b64sig = entry.partition(",")
        try:
            sig = base64.b64decode(b64sig, validate=True)
        except (binascii.Error, ValueError):
            continue
        if version == "v1":
            if hmac_macs is None:
                hmac_macs = [
                    hmac.digest(k.secret, content, hashlib.sha256)
                    for k in keys
                    if isinstance(k, HmacKey)
                ]
            if any(hmac.compare_digest(mac, sig) for mac in hmac_macs):
                return "v1"
        elif version == "v1a":
            for key in keys:
                if isinstance(key, Ed25519PublicKey):
                    try:
                        key.verify(sig, content)
                    except InvalidSignature:
                        continue
                    return "v1a"
    raise SignatureInvalid()


__all__ = [
    "Ed25519SigningKey",
    "HmacKey",
    "SigningKey",
    "VerifyingKey",
    "WebhookHeaders",
    "generate_ed25519_pair",
    "generate_hmac_secret",
    "parse_ed25519_private",
    "parse_ed25519_public",
    "parse_hmac_secret",
    "parse_signing_key",
    "parse_verifying_key",
    "public_key_text",
    "read_headers",
    "sign",
    "signed_content",
    "verify",
]
