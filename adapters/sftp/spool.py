"""The local side of a file batch: its files rendered in the spool before upload.

``SpoolBatch`` is one batch's data file being written: rows are rendered by the layout's
``RecordWriter`` chunk by chunk and appended to disk while their SHA-256 runs along, so the
file is never held in memory; the documents its packets list are noted as rows are written
(adapters.sftp.documents). ``companion_files`` writes the manifest, the done marker (the
manifest's SHA-256) and the optional checksum sidecar next to it. Everything here is local
disk; the caller runs it in worker threads.
"""

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from adapters.sftp.batch_store import StagedFile
from adapters.sftp.batches import (
    FILE_TYPES,
    BatchNames,
    Manifest,
    ManifestDocument,
    ManifestFile,
    checksum_line,
    done_marker,
    remote_path,
    sha256_hex,
)
from adapters.sftp.documents import ListedDocument, documents_of
from adapters.sftp.layouts import RecordWriter
from gateway.config.sftp import SftpSection


def hash_file(path: Path) -> tuple[str, int]:
    """(SHA-256, size) of a local file, streamed."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass(slots=True)
class SpoolBatch:
    """One batch being written to the spool (new, or re-rendered to resume it)."""

    id: int
    packet_type: str
    names: BatchNames
    business_date: date
    seq: int
    created_at: datetime
    writer: RecordWriter
    folder: Path
    fh: BinaryIO
    resend_of: set[str] = field(default_factory=set)
    documents: list[ListedDocument] = field(default_factory=list)
    """The documents the written rows' packets list, in record order."""
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    size: int = 0
    records: int = 0
    """Packets written (the batch's members)."""
    rows: int = 0
    """Rows written: the records, except that a statement is its lines and summary."""

    @classmethod
    def create(
        cls,
        *,
        batch_id: int,
        packet_type: str,
        names: BatchNames,
        business_date: date,
        seq: int,
        created_at: datetime,
        writer: RecordWriter,
        folder: Path,
    ) -> "SpoolBatch":
        """A fresh folder with the data file opened and its header written."""
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        fh = (folder / names.data.removesuffix(".pgp")).open("wb")
        batch = cls(
            batch_id, packet_type, names, business_date, seq, created_at, writer, folder, fh
        )
        batch.write(writer.start())
        return batch

    @property
    def plain_path(self) -> Path:
        return self.folder / self.names.data.removesuffix(".pgp")

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)

    def append(
        self, payloads: Sequence[bytes]
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, str]]]:
        """Render and write; returns (input index, record no, line no) of written rows and
        (input index, reason) of rows left out."""
        before = self.writer.lines_written
        # Each packet is decoded once, for its row and for the documents it lists.
        records = [orjson.loads(p) for p in payloads]
        if self.writer.expands:
            return self._append_expanded(payloads, records)
        chunk, errors = self.writer.write_parsed(payloads, records)
        self.write(chunk)
        failed = {i for i, _ in errors}
        written = []
        for n, i in enumerate(i for i in range(len(payloads)) if i not in failed):
            written.append((i, self.records + n + 1, before + n + 1))
            record = records[i]
            # Most packets list no document (an empty list): skip the lookup.
            if type(record) is dict and type(data := record.get("data")) is dict:
                if data.get("documents"):
                    self.documents += documents_of(record)
        self.records += len(written)
        self.rows += len(written)
        return written, [(i, str(e)) for i, e in errors]

    def _append_expanded(
        self, payloads: Sequence[bytes], records: Sequence[Any]
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, str]]]:
        """``append`` for packets of several rows each (a settlement statement: its lines and
        summary): a member's line number is its first row's; ``rows`` counts every row."""
        written: list[tuple[int, int, int]] = []
        errors: list[tuple[int, str]] = []
        for i, (payload, record) in enumerate(zip(payloads, records, strict=True)):
            before = self.writer.lines_written
            chunk, refused = self.writer.write_parsed([payload], [record])
            if refused:
                errors.append((i, str(refused[0][1])))
                continue
            self.write(chunk)
            self.records += 1
            self.rows += self.writer.lines_written - before
            written.append((i, self.records, before + 1))
            self.documents += documents_of(record)
        return written, errors

    def close(self) -> str:
        """Write the trailer, close the file; returns the plaintext SHA-256."""
        self.write(self.writer.finish())
        self.fh.close()
        return self.digest.hexdigest()


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file of the batch: what is recorded, and where its bytes are on local disk (None
    when the server already holds them and nothing is uploaded again)."""

    staged: StagedFile
    path: Path | None


def companion_files(
    batch: SpoolBatch,
    data: StagedFile,
    *,
    section: SftpSection,
    receiver: str,
    resend_of: Sequence[str],
    documents: Sequence[ManifestDocument] = (),
) -> list[LocalFile]:
    """Render the manifest for ``data`` (and the batch's ``documents``), the done marker and
    the checksum sidecar, and write them next to the data file (in the order they are
    uploaded, marker last)."""
    naming, folders, layout = section.naming, section.folders, section.layout
    manifest = Manifest(
        batch_id=batch.names.base,
        sender=naming.sender,
        receiver=naming.receiver or receiver,
        file_type=FILE_TYPES[batch.packet_type],
        business_date=batch.business_date,
        seq=batch.seq,
        created_at=batch.created_at,
        files=(
            ManifestFile(
                name=batch.names.data,
                bytes=data.size,
                sha256=data.sha256,
                plaintext_sha256=data.plaintext_sha256 or "",
                record_count=batch.rows,
                layout=layout.format,
                encoding=layout.encoding,
                encryption="openpgp" if data.recipient_fpr else None,
                recipient_fpr=data.recipient_fpr,
            ),
        ),
        case_count=batch.records,
        totals=batch.writer.totals.amounts,
        resend_of=tuple(resend_of),
        documents=tuple(documents),
    ).render()
    bodies: list[tuple[str, str, bytes]] = []
    if batch.names.checksum is not None:
        bodies.append(
            ("checksum", batch.names.checksum, checksum_line(batch.names.data, data.sha256))
        )
    bodies += [
        ("manifest", batch.names.manifest, manifest),
        ("done", batch.names.done, done_marker(sha256_hex(manifest))),
    ]
    files = []
    for role, name, body in bodies:
        path = batch.folder / name
        path.write_bytes(body)
        staged = StagedFile(role, remote_path(folders.inbox, name), len(body), sha256_hex(body))
        files.append(LocalFile(staged, path))
    return files


__all__ = ["LocalFile", "SpoolBatch", "companion_files", "hash_file"]
