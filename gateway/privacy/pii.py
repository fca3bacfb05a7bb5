"""Encryption of personal data at rest: AES-256-GCM under a key ring with rotation.

The key ring is text, one key per line: ``<key id>:<base64 of 32 bytes>``. The first line is
the current key (used to encrypt); the others still decrypt older rows (rotation adds a new
first line, so the last line is the oldest key). A blob is
``0x01 | len(kid) | kid | nonce(12) | ciphertext+tag``; the case id is bound in as associated
data, so a blob copied onto another case does not decrypt.

Two keyed hashes derive from the ring, each under its own label: ``mac`` (changed-row
detection) from the current key, so it changes at rotation, which only makes every intake row
look changed once; and ``debtor_key`` (the console's search by debtor id) from the OLDEST key,
so that rotation leaves it alone: links and saved filters carrying a debtor key keep working.
Retiring the oldest key changes it; gateway.privacy.debtor_keys notices and re-keys.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import ConfigError, GatewayError

_VERSION = 1


@dataclass(frozen=True)
class PiiKeyRing:
    """Current key first; older keys decrypt only."""

    keys: tuple[tuple[str, bytes], ...]
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)
    _mac_key: bytes = field(init=False, repr=False, compare=False)
    _debtor_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: constructing AESGCM and deriving the MAC key per row is measurable.
        object.__setattr__(self, "_ciphers", {kid: AESGCM(key) for kid, key in self.keys})
        object.__setattr__(
            self,
            "_mac_key",
            hashlib.sha256(b"agency-gateway/pii-mac\x00" + self.keys[0][1]).digest(),
        )
        object.__setattr__(
            self,
            "_debtor_key",
            hashlib.sha256(b"agency-gateway/debtor-key\x00" + self.keys[-1][1]).digest(),
        )

    def __repr__(self) -> str:
        return f"PiiKeyRing(ids={[kid for kid, _ in self.keys]})"

    @classmethod
    def parse(cls, text: str) -> "PiiKeyRing":
        keys: list[tuple[str, bytes]] = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kid, sep, b64 = line.partition(":")
            if not sep or not kid or len(kid) > 32:
                raise ConfigError(f"PII key ring line {n}: expected '<key id>:<base64 key>'")
            try:
                key = base64.b64decode(b64, validate=True)
            except binascii.Error:
                raise ConfigError(f"PII key ring line {n}: key is not base64") from None
            if len(key) != 32:
                raise ConfigError(f"PII key ring line {n}: key must be 32 bytes, got {len(key)}")
            keys.append((kid, key))
        if not keys:
            raise ConfigError("PII key ring is empty")
        return cls(tuple(keys))

    @staticmethod
    def generate_line(kid: str) -> str:
        return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"

    @property
    def current(self) -> tuple[str, bytes]:
        return self.keys[0]

    def encrypt(self, record: Mapping[str, object], *, bound_to: str) -> bytes:
        plaintext = json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
        return self.seal(plaintext, bound_to=bound_to)

    def decrypt(self, blob: bytes, *, bound_to: str) -> dict[str, object]:
        result: dict[str, object] = json.loads(self.unseal(blob, bound_to=bound_to))
        return result

    def seal(self, data: bytes, *, bound_to: str) -> bytes:
        """``data`` encrypted under the current key, ``bound_to`` as associated data."""
        kid, _key = self.current
        nonce = secrets.token_bytes(12)
        sealed = self._ciphers[kid].encrypt(nonce, data, bound_to.encode())
        kid_b = kid.encode()
        return bytes([_VERSION, len(kid_b)]) + kid_b + nonce + sealed

    @staticmethod
    def is_sealed(blob: bytes) -> bool:
        """Whether ``blob`` has the sealed format (JSON text never starts with this byte)."""
        return len(blob) > 0 and blob[0] == _VERSION

    def unseal(self, blob: bytes, *, bound_to: str) -> bytes:
        """The bytes ``seal`` sealed; GatewayError when the blob is damaged, bound to
        something else, or sealed under a key no longer in the ring."""
        if len(blob) < 2 or blob[0] != _VERSION:
            raise GatewayError("PII blob has an unknown format")
        kid_len = blob[1]
        if len(blob) < 2 + kid_len + 12 + 16:
            raise GatewayError("PII blob is truncated")
        kid = blob[2 : 2 + kid_len].decode(errors="replace")
        nonce = blob[2 + kid_len : 14 + kid_len]
        sealed = blob[14 + kid_len :]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise GatewayError(
                f"PII key {kid!r} is not in the key ring (was it removed too early?)"
            )
        try:
            return cipher.decrypt(nonce, sealed, bound_to.encode())
        except InvalidTag:
            raise GatewayError(f"PII blob for {bound_to} failed authentication") from None

    def mac(self, data: bytes) -> str:
        """A keyed hash: detects changed rows without a guessable hash of personal data."""
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()

    def debtor_key(self, debtor_id: str) -> str:
        """The keyed hash the console finds a debtor by (64 hex digits): what URLs, links and
        saved filters carry instead of the debtor id. Stable across rotation (see above);
        surrounding spaces are ignored, case is not (the lender's ids are exact)."""
        data = b"debtor\x00" + debtor_id.strip().encode()
        return hmac.new(self._debtor_key, data, hashlib.sha256).hexdigest()


__all__ = ["PiiKeyRing"]
