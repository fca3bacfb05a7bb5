"""C2SP signed notes and tlog checkpoints with Ed25519, pure (no I/O).

Byte-compatible with Go's ``golang.org/x/mod/sumdb/note`` (c2sp.org/signed-note,
c2sp.org/tlog-checkpoint):

* A note is UTF-8 text ending in a newline, then a blank line, then one or more lines
  ``— <key name> <base64(4-byte key hash || signature)>`` (U+2014 em dash). The signature
  covers the text including its final newline, not the blank line.
* Key hash = the first 4 bytes (big-endian uint32) of
  ``SHA-256(name || "\\n" || 0x01 || 32-byte Ed25519 public key)``; 0x01 is the Ed25519 type.
* Private key text: ``PRIVATE+KEY+<name>+<8 hex hash>+<base64(0x01 || 32-byte seed)>``.
  Verifier key text: ``<name>+<8 hex hash>+<base64(0x01 || 32-byte public key)>``.
* A checkpoint's text is ``<origin>\\n<tree size>\\n<base64(root hash)>\\n`` with optional
  non-empty extension lines after it.

Opening a note ignores signatures from unknown keys, rejects the whole note if a known key's
signature does not verify, and rejects it if no known key signed it.
"""

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import ConfigError, EvidenceError

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
MAX_SIGNATURES = 100

_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_SIZE = re.compile(r"0|[1-9][0-9]*")


def is_valid_name(name: str) -> bool:
    """A key name is non-empty and has no Unicode spaces and no '+'."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def key_hash(name: str, public_key: bytes) -> int:
    """The 32-bit key hash of an Ed25519 ``public_key`` (raw 32 bytes) under ``name``."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _parse_key_fields(name: str, hash_hex: str, key_b64: str, what: str) -> tuple[int, bytes]:
    if not is_valid_name(name):
        raise ConfigError(f"{what}: the key name must be non-empty, without spaces or '+'")
    if not _HEX8.fullmatch(hash_hex):
        raise ConfigError(f"{what}: the key hash must be 8 hex digits")
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what}: the key data is not valid base64") from None
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise ConfigError(f"{what}: the key data must be 0x01 followed by a 32-byte Ed25519 key")
    return int(hash_hex, 16), raw[1:]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted Ed25519 note key: a name, its key hash and the public key."""

    name: str
    key_hash: int
    public_key: Ed25519PublicKey = field(compare=False)

    @classmethod
    def from_text(cls, text: str) -> "NoteVerifier":
        """Parse ``<name>+<hash>+<base64 key>``; raise ConfigError if it is malformed."""
        # The base64 key may itself contain '+'; the name and the hash cannot.
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise ConfigError("note verifier key: expected <name>+<8 hex hash>+<base64 key>")
        name, hash_hex, key_b64 = parts
        expected, public = _parse_key_fields(name, hash_hex, key_b64, "note verifier key")
        if key_hash(name, public) != expected:
            raise ConfigError(f"note verifier key {name}: the key hash does not match the key")
        try:
            key = Ed25519PublicKey.from_public_bytes(public)
        except ValueError:
            raise ConfigError(f"note verifier key {name}: not an Ed25519 public key") from None
        return cls(name, expected, key)

    def to_text(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + _raw_public(self.public_key)).decode()
        return f"{self.name}+{self.key_hash:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class NoteSigner:
    """A private Ed25519 note key. Never logged: ``repr`` hides the key."""

    name: str
    key_hash: int
    private_key: Ed25519PrivateKey = field(compare=False)

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_hash={self.key_hash:08x}, <redacted>)"

    @classmethod
    def from_text(cls, text: str) -> "NoteSigner":
        """Parse ``PRIVATE+KEY+<name>+<hash>+<base64 seed>``; raise ConfigError if malformed."""
        parts = text.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise ConfigError(
                "note signer key: expected PRIVATE+KEY+<name>+<8 hex hash>+<base64 seed>"
            )
        name, hash_hex, key_b64 = parts[2:]
        expected, seed = _parse_key_fields(name, hash_hex, key_b64, "note signer key")
        private = Ed25519PrivateKey.from_private_bytes(seed)
        if key_hash(name, _raw_public(private.public_key())) != expected:
            raise ConfigError(f"note signer key {name}: the key hash does not match the key")
        return cls(name, expected, private)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_hash, self.private_key.public_key())


def generate_key(name: str) -> tuple[str, str]:
    """A new Ed25519 note key pair as ``(private key text, verifier key text)``."""
    if not is_valid_name(name):
        raise ConfigError("note key name must be non-empty, without spaces or '+'")
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = _raw_public(private.public_key())
    hash_hex = f"{key_hash(name, public):08x}"
    private_b64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
    public_b64 = base64.b64encode(bytes([ALG_ED25519]) + public).decode()
    return f"PRIVATE+KEY+{name}+{hash_hex}+{private_b64}", f"{name}+{hash_hex}+{public_b64}"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise EvidenceError("malformed note: the text must end with a newline")
    if any(ch < " " and ch != "\n" for ch in text):
        raise EvidenceError("malformed note: control characters other than newline")


def sign_note(text: str, signer: NoteSigner) -> str:
    """``text`` followed by a blank line and ``signer``'s signature line."""
    _check_text(text)
    signature = signer.sign(text.encode())
    encoded = base64.b64encode(struct.pack(">I", signer.key_hash) + signature).decode()
    return f"{text}\n{SIGNATURE_PREFIX}{signer.name} {encoded}\n"


def open_note(note: str, verifiers: Sequence[NoteVerifier]) -> tuple[str, list[str]]:
    """Verify ``note`` against trusted ``verifiers``; return its text and the names whose
    signatures verified. Raise EvidenceError if the note is malformed, a trusted key's
    signature is wrong, or no trusted key signed it."""
    known: dict[tuple[str, int], NoteVerifier] = {}
    for trusted in verifiers:
        key = (trusted.name, trusted.key_hash)
        other = known.setdefault(key, trusted)
        if _raw_public(other.public_key) != _raw_public(trusted.public_key):
            raise ConfigError(f"two different note keys are named {trusted.name}+{key[1]:08x}")
    _check_text(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise EvidenceError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise EvidenceError("malformed note: no signature lines")
    message = text.encode()
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise EvidenceError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    verified: list[str] = []
    for line in lines:
        name, signature = _parse_signature_line(line)
        signer_hash = int.from_bytes(signature[:4], "big")
        verifier = known.get((name, signer_hash))
        if verifier is None:
            continue
        if not verifier.verify(message, signature[4:]):
            raise EvidenceError(f"invalid signature for key {name}+{signer_hash:08x}")
        if name not in verified:
            verified.append(name)
    if not verified:
        raise EvidenceError("note has no signature from a trusted key")
    return text, verified


def _parse_signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise EvidenceError("malformed note: a signature line must start with an em dash")
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError(f"malformed note: the signature by {name!r} is not base64") from None
    if not is_valid_name(name) or len(signature) < 5:
        raise EvidenceError("malformed note: bad signature line")
    return name, signature


def checkpoint_text(origin: str, size: int, root_hash: bytes) -> str:
    """The tlog-checkpoint note text for a tree of ``size`` leaves with root ``root_hash``."""
    if not origin or "\n" in origin:
        raise EvidenceError("checkpoint origin must be one non-empty line")
    if size < 0:
        raise EvidenceError("checkpoint tree size cannot be negative")
    if len(root_hash) != 32:
        raise EvidenceError("checkpoint root hash must be 32 bytes")
    return f"{origin}\n{size}\n{base64.b64encode(root_hash).decode()}\n"


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    """``(origin, tree size, root hash)`` from checkpoint note text (extension lines are
    allowed and ignored); raise EvidenceError if it is malformed."""
    if not text.endswith("\n"):
        raise EvidenceError("malformed checkpoint: the text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise EvidenceError("malformed checkpoint: expected origin, size and root hash lines")
    origin, size_text, root_text = lines[:3]
    if not _SIZE.fullmatch(size_text):
        raise EvidenceError(f"malformed checkpoint: tree size {size_text!r} is not a number")
    try:
        root_hash = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError("malformed checkpoint: the root hash is not base64") from None
    if len(root_hash) != 32:
        raise EvidenceError("malformed checkpoint: the root hash is not 32 bytes")
    return origin, int(size_text), root_hash


__all__ = [
    "ALG_ED25519",
    "NoteSigner",
    "NoteVerifier",
    "checkpoint_text",
    "generate_key",
    "is_valid_name",
    "key_hash",
    "open_note",
    "parse_checkpoint",
    "sign_note",
]
