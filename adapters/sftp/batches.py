"""File batches: names, manifests, sequence numbers and remote paths (pure).

A batch is what one dispatch cycle drops for one agency and one file type::

    LENDERX_AGY_GAMMA_PLACEMENT_20260115_0003.csv[.pgp]   data file (the agency's layout)
    LENDERX_AGY_GAMMA_PLACEMENT_20260115_0003.manifest.json
    LENDERX_AGY_GAMMA_PLACEMENT_20260115_0003.documents/  the cases' documents, if any:
        PL-C1-1/01_authorisation_letter.pdf[.pgp]          one folder per placement
    LENDERX_AGY_GAMMA_PLACEMENT_20260115_0003.done        written last: the manifest's sha256

Each file is uploaded under a temporary name (``.NAME.part``) and renamed. The sequence
number is per (agency, type, UTC business date), starts at 1 and is never reused; a batch
that re-sends cases names the files it replaces in ``resend_of``. The manifest carries the
control totals (record count, outstanding amount per currency) and, per file, its size and
the SHA-256 of the bytes as transmitted (ciphertext when encrypted) and of the plaintext.

A ``SETTLEMENT`` batch carries monthly settlement statements: one row per statement line and
a summary row each (adapters.sftp.layouts ``statement_rows``); its documents folder holds each
statement's XLSX and signed PDF under ``statement-<id>/``.

Documents (the authorisation letter, the loan contract, statements: ``documents[]`` of the
packets) travel in the batch's documents folder under names made only of ``[A-Za-z0-9._-]``
(safe on every server and file system; the original name is in the manifest), one folder per
placement, and the manifest's ``documents[]`` lists each with its placement, kind, original
name, path (relative to the manifest's folder), size and SHA-256.
"""

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from fnmatch import fnmatchcase
from typing import Any

from gateway.config.sftp import NamingSection

MANIFEST_SCHEMA_VERSION = "1"
MANIFEST_SUFFIX = ".manifest.json"
CHECKSUM_SUFFIX = ".sha256"
DOCUMENTS_SUFFIX = ".documents"
"""The batch's documents folder is ``<base>.documents/``."""
TEMP_PATTERNS = (".part", ".tmp", ".filepart", ".writing", ".partial")
"""Suffixes that mean "still being written" in every common client."""

FILE_TYPES: dict[str, str] = {
    "placement.created": "PLACEMENT",
    "placement.amended": "AMENDMENT",
    "placement.expiring": "EXPIRING",
    "placement.recalled": "RECALL",
    "payment.direct": "PAYMENT",
    "payment.attributed": "ATTRIBUTED",
    "data.deletion_requested": "DELETION",
    "request.decided": "DECISION",
    "settlement.statement": "SETTLEMENT",
}
"""Packet type → the TYPE token of its file name."""

PACKET_TYPES: dict[str, str] = {v: k for k, v in FILE_TYPES.items()}


@dataclass(frozen=True, slots=True)
class BatchNames:
    """Every remote name of one batch (names only; folders are added by ``remote_path``)."""

    base: str
    data: str
    manifest: str
    done: str
    checksum: str | None

    def all(self) -> list[str]:
        names = [self.data, self.manifest, self.done]
        return names + ([self.checksum] if self.checksum else [])


def batch_names(
    naming: NamingSection,
    *,
    receiver: str,
    file_type: str,
    business_date: date,
    seq: int,
    extension: str,
    encrypted: bool,
) -> BatchNames:
    base = naming.pattern.format(
        sender=naming.sender,
        receiver=naming.receiver or receiver,
        type=file_type,
        date=business_date,
        seq=seq,
    )
    data = f"{base}.{extension}" + (".pgp" if encrypted else "")
    return BatchNames(
        base=base,
        data=data,
        manifest=base + MANIFEST_SUFFIX,
        done=base + naming.done_suffix,
        checksum=data + CHECKSUM_SUFFIX if naming.checksum_sidecar else None,
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(text: str, *, limit: int = 80) -> str:
    """``text`` as one path component every SFTP server and file system accepts: only
    ``[A-Za-z0-9._-]``, no leading dot, at most ``limit`` characters. A changed text gets a
    short hash of the original, so two different texts never share a component."""
    cleaned = _UNSAFE.sub("_", text).lstrip(".")[:limit] or "_"
    if cleaned == text:
        return cleaned
    return f"{cleaned[: limit - 9]}_{sha256_hex(text.encode())[:8]}"


def document_path(
    base: str, placement_id: str, ordinal: int, kind: str, name: str, *, encrypted: bool
) -> str:
    """Where a document goes, relative to the batch's folder:
    ``<base>.documents/<placement>/<nn>_<kind>.<ext>[.pgp]`` (the ordinal keeps two
    documents of one kind apart; the extension is the original name's, when safe)."""
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    suffix = f".{ext}" if ext and re.fullmatch(r"[a-z0-9]{1,8}", ext) else ""
    file_name = f"{ordinal:02d}_{safe_component(kind, limit=40)}{suffix}"
    file_name += ".pgp" if encrypted else ""
    return f"{base}{DOCUMENTS_SUFFIX}/{safe_component(placement_id)}/{file_name}"


def remote_path(folder: str, name: str) -> str:
    folder = folder.strip("/")
    return f"{folder}/{name}" if folder else name


def temp_name(naming: NamingSection, final_name: str) -> str:
    """The name a file is written under before its rename; pollers skip it."""
    return f"{naming.temp_prefix}{final_name}{naming.temp_suffix}"


def temp_path(naming: NamingSection, final_path: str) -> str:
    folder, _, name = final_path.rpartition("/")
    return remote_path(folder, temp_name(naming, name))


def is_temporary(name: str, naming: NamingSection) -> bool:
    """True for names a poller must never take: dot files and in-progress uploads."""
    if name.startswith(".") or (naming.temp_prefix and name.startswith(naming.temp_prefix)):
        return True
    return name.endswith(naming.temp_suffix) or name.endswith(TEMP_PATTERNS)


def base_of(name: str) -> str:
    """``X_0003.csv.pgp`` → ``X_0003``: names carry no dot before their extension."""
    return name.split(".", 1)[0]


def is_companion(name: str, naming: NamingSection) -> bool:
    """Manifests, done markers and checksum sidecars travel with a data file."""
    return (
        name.endswith(MANIFEST_SUFFIX)
        or name.endswith(naming.done_suffix)
        or name.endswith(CHECKSUM_SUFFIX)
    )


def classify(name: str, naming: NamingSection) -> str | None:
    """``statement``, ``result`` or None (not a file we pick up)."""
    if is_temporary(name, naming) or is_companion(name, naming):
        return None
    if fnmatchcase(name, naming.statement_glob):
        return "statement"
    if fnmatchcase(name, naming.result_glob):
        return "result"
    return None


def dated_folder(root: str, day: date) -> str:
    return remote_path(root, f"{day:%Y/%m/%d}")


def checksum_line(name: str, sha256: str) -> bytes:
    """GNU ``sha256sum`` format, so agencies can run ``sha256sum -c``."""
    return f"{sha256}  {name}\n".encode()


def done_marker(manifest_sha256: str) -> bytes:
    return f"{manifest_sha256}\n".encode()


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One data file in a manifest."""

    name: str
    bytes: int
    sha256: str
    plaintext_sha256: str
    record_count: int
    layout: str
    encoding: str
    encryption: str | None = None
    recipient_fpr: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "plaintext_sha256": self.plaintext_sha256,
            "record_count": self.record_count,
            "layout": self.layout,
            "encoding": self.encoding,
            "encryption": self.encryption,
            "recipient_fpr": self.recipient_fpr,
        }


@dataclass(frozen=True, slots=True)
class ManifestDocument:
    """One document in a manifest: ``bytes``/``sha256`` are of the file as transmitted,
    ``size``/``plaintext_sha256`` of the document itself (the packet's ``documents[]``)."""

    placement_id: str
    document_id: int
    kind: str
    name: str
    media_type: str
    path: str
    size: int
    plaintext_sha256: str
    bytes: int
    sha256: str
    reference: str | None = None
    encryption: str | None = None
    recipient_fpr: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "placement_id": self.placement_id,
            "document_id": self.document_id,
            "kind": self.kind,
            "name": self.name,
            "media_type": self.media_type,
            "path": self.path,
            "size": self.size,
            "plaintext_sha256": self.plaintext_sha256,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "reference": self.reference,
            "encryption": self.encryption,
            "recipient_fpr": self.recipient_fpr,
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a batch contains and its control totals (NACHA-style file control)."""

    batch_id: str
    sender: str
    receiver: str
    file_type: str
    business_date: date
    seq: int
    created_at: datetime
    files: tuple[ManifestFile, ...]
    case_count: int
    totals: Mapping[str, int] = field(default_factory=dict)
    resend_of: tuple[str, ...] = ()
    documents: tuple[ManifestDocument, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "batch_id": self.batch_id,
            "sender": self.sender,
            "receiver": self.receiver,
            "file_type": self.file_type,
            "business_date": self.business_date.isoformat(),
            "seq": self.seq,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "resend_of": list(self.resend_of) or None,
            "files": [f.to_json() for f in self.files],
            "control": {
                "case_count": self.case_count,
                "record_count": sum(f.record_count for f in self.files),
                "total_outstanding_minor": [
                    {"currency": c, "amount_minor": a} for c, a in sorted(self.totals.items())
                ],
            },
        }
        if self.documents:
            # Only when there are any: a batch without documents keeps its manifest unchanged.
            body["documents"] = [d.to_json() for d in self.documents]
            body["control"]["document_count"] = len(self.documents)
        return body

    def render(self) -> bytes:
        """Deterministic bytes: the same batch always renders the same manifest."""
        return (
            json.dumps(self.to_json(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        ).encode()


class ManifestInvalid(ValueError):
    """A manifest cannot be read."""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What an agency's manifest says about one of its files (only what we check)."""

    name: str
    bytes: int | None
    sha256: str | None
    record_count: int | None


def read_manifest(body: bytes) -> dict[str, ManifestEntry]:
    """The files a manifest lists, by name. Accepts ours and the agency's (same schema)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not JSON: {exc}") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, list):
        raise ManifestInvalid("manifest has no files[] list")
    entries: dict[str, ManifestEntry] = {}
    for n, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ManifestInvalid(f"files[{n}] has no name")
        size, sha, count = item.get("bytes"), item.get("sha256"), item.get("record_count")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise ManifestInvalid(f"files[{n}].sha256 is not 64 lower-case hex digits")
        entries[item["name"]] = ManifestEntry(
            item["name"],
            size if type(size) is int else None,
            sha,
            count if type(count) is int else None,
        )
    return entries


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "CHECKSUM_SUFFIX",
    "DOCUMENTS_SUFFIX",
    "FILE_TYPES",
    "MANIFEST_SCHEMA_VERSION",
    "MANIFEST_SUFFIX",
    "PACKET_TYPES",
    "TEMP_PATTERNS",
    "BatchNames",
    "Manifest",
    "ManifestDocument",
    "ManifestEntry",
    "ManifestFile",
    "ManifestInvalid",
    "base_of",
    "batch_names",
    "checksum_line",
    "classify",
    "dated_folder",
    "document_path",
    "done_marker",
    "is_companion",
    "is_temporary",
    "read_manifest",
    "remote_path",
    "safe_component",
    "sha256_hex",
    "temp_name",
    "temp_path",
]
