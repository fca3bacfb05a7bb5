"""A batch's documents: what its packets list, copied from the placements' packs into the spool.

Theory of operation
-------------------
The packets of a batch list their placement's documents (``data.documents[]`` of
``placement.created``, and of the ``placement.amended`` that renews a placement: the new
letter). ``listed_documents`` reads those references from the packet bytes as rows are
written to the data file (adapters.sftp.spool), so a batch re-rendered to resume it lists
the same documents in the same order.

``spool_documents`` looks the references up in the placements' packs (gateway.documents,
one query for the batch), and copies each document into the batch's spool folder under its
remote path (adapters.sftp.batches.document_path), streamed chunk by chunk while its size and
SHA-256 are checked against the pack's (a document that changed since it was recorded, or one
a packet lists that its pack no longer holds, stops the batch with a permanent error naming
the placement and the document). The caller encrypts, hashes and uploads the copies like the
data file.
"""

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.documents.pack import PackDocument, document_stream, pack_of
from gateway.documents.store import DocumentStore
from gateway.errors import DocumentError, SettlementError
from gateway.ports import DocumentSource
from gateway.settlement.packets import statement_document_rows


@dataclass(frozen=True, slots=True)
class ListedDocument:
    """A document a packet of the batch lists, by placement and ``case_documents`` id; or a
    settlement statement's document (``statement_id`` set, ``placement_id`` is
    ``statement:<id>``, the packet's ``kind`` and ``sha256``; ``document_id`` unused)."""

    placement_id: str
    document_id: int
    statement_id: int | None = None
    kind: str = ""
    sha256: str = ""


def listed_documents(payload: bytes) -> list[ListedDocument]:
    """The documents a packet lists (``data.documents[].document_id``); none when it lists
    none or is not a JSON packet (the layout already refused what it cannot read)."""
    try:
        record = json.loads(payload)
    except ValueError:
        return []
    return documents_of(record)


def documents_of(record: object) -> list[ListedDocument]:
    """``listed_documents`` of a packet already decoded."""
    if not isinstance(record, dict):
        return []
    data = record.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("documents"), list):
        return []
    if record.get("type") == "settlement.statement" and type(data.get("statement_id")) is int:
        sid = int(data["statement_id"])
        return [
            ListedDocument(f"statement:{sid}", 0, sid, str(d["kind"]), str(d["sha256"]))
            for d in data["documents"]
            if isinstance(d, dict) and isinstance(d.get("kind"), str)
        ]
    placement_id = data.get("placement_id")
    if not isinstance(placement_id, str):
        return []
    return [
        ListedDocument(placement_id, int(d["document_id"]))
        for d in data["documents"]
        if isinstance(d, dict) and type(d.get("document_id")) is int
    ]


async def find_documents(
    conn: AsyncConnection, listed: Sequence[ListedDocument]
) -> list[tuple[str, PackDocument]]:
    """(placement, document) for every reference, in order; DocumentError naming the
    placement and the document when its pack does not hold it."""
    packs = await pack_of(conn, sorted({ref.placement_id for ref in listed}))
    found: list[tuple[str, PackDocument]] = []
    for ref in listed:
        by_id = {doc.id: doc for doc in packs.get(ref.placement_id, [])}
        doc = by_id.get(ref.document_id)
        if doc is None:
            raise DocumentError(
                f"placement {ref.placement_id}: its packet lists document {ref.document_id}, "
                "which is not in its document pack; resend the placement"
            )
        found.append((ref.placement_id, doc))
    return found


STATEMENT_MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


@dataclass(frozen=True, slots=True)
class StatementFile:
    """A settlement statement's document, its bytes checked against its SHA-256."""

    statement_id: int
    document_id: int
    kind: str
    name: str
    sha256: str
    body: bytes

    @property
    def media_type(self) -> str:
        return STATEMENT_MEDIA_TYPES.get(self.kind, "application/octet-stream")


async def find_statement_files(
    conn: AsyncConnection, agency_id: str, listed: Sequence[ListedDocument]
) -> list[StatementFile]:
    """The statement documents ``listed`` (the agency's own statements only), in order;
    DocumentError naming the statement when one is missing or its bytes or SHA-256 are not
    what the packet lists (a statement re-issued since: its new packet carries the new
    documents)."""
    by_statement: dict[int, dict[str, tuple[int, str, str, bytes]]] = {}
    for sid in sorted({ref.statement_id for ref in listed if ref.statement_id is not None}):
        try:
            rows = await statement_document_rows(conn, agency_id, sid)
        except SettlementError as exc:
            raise DocumentError(str(exc)) from exc
        by_statement[sid] = {
            kind: (doc_id, name, sha, body) for doc_id, kind, name, sha, body in rows
        }
    found: list[StatementFile] = []
    for ref in listed:
        assert ref.statement_id is not None
        row = by_statement.get(ref.statement_id, {}).get(ref.kind)
        if row is None or row[2] != ref.sha256:
            raise DocumentError(
                f"statement {ref.statement_id}: its packet lists a {ref.kind} document "
                f"(SHA-256 {ref.sha256[:12]}…) that is not the statement's; it was not sent"
            )
        doc_id, name, sha, body = row
        found.append(StatementFile(ref.statement_id, doc_id, ref.kind, name, sha, body))
    return found


async def copy_document(
    conn: AsyncConnection, doc: PackDocument, target: Path, *, store: DocumentSource
) -> None:
    """Stream ``doc`` into ``target`` (its size and SHA-256 checked on the way by
    gateway.documents; DocumentChanged when they differ, and ``target`` is removed)."""
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    fh = await asyncio.to_thread(target.open, "wb")
    digest, size = hashlib.sha256(), 0
    try:
        # The composition root hands gateway.documents' store; the port names only the
        # part the channels use.
        chunks = await document_stream(conn, doc, store=cast("DocumentStore", store))
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(fh.write, chunk)
    except BaseException:
        await asyncio.to_thread(fh.close)
        await asyncio.to_thread(target.unlink, True)
        raise
    await asyncio.to_thread(fh.close)
    if (size, digest.hexdigest()) != (doc.size, doc.sha256):
        # document_stream checks too; this guards the copy itself.
        await asyncio.to_thread(target.unlink, True)
        raise DocumentError(
            f"case {doc.case_id}: document {doc.name} copied as {size} bytes with another "
            "SHA-256 than recorded; it was not sent"
        )


__all__ = [
    "STATEMENT_MEDIA_TYPES",
    "ListedDocument",
    "StatementFile",
    "copy_document",
    "documents_of",
    "find_documents",
    "find_statement_files",
    "listed_documents",
]
