"""A placement's document pack: what it lists, and each document's bytes, checked.

The pack of a placement is the documents generated for it (its authorisation letter, the
repayment history and the balance breakdown: ``case_documents`` rows with its
``placement_id``, the newest of each kind, since a renewal issues new ones) followed by its
case's own documents from the lender's store (rows with no placement, the newest version of
each file). Every channel lists and delivers the same pack
(the webhook packet's descriptors and fetch endpoint, the SFTP ``documents/`` folder, the
law firm's attachments), so an agency gets exactly what the evidence log attests.

Bytes are always checked against the recorded size and SHA-256 before they leave: generated
content is unsealed with the PII key ring the database carries (gateway.store.database), and
a store file is read from the store; a store file that changed since it was hashed raises
DocumentChanged naming the case and the file.
"""

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.documents.store import CHUNK, DocumentStore
from gateway.errors import DocumentChanged, DocumentError
from gateway.store.database import sealer_of
from gateway.store.document_tables import CaseDocument
from gateway.store.tables import Placement

DOCUMENTS = CaseDocument.__table__  # type: ignore[attr-defined]
D = DOCUMENTS.c
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]

_COLUMNS = (D.id, D.case_id, D.placement_id, D.kind, D.name, D.media_type, D.size, D.sha256)


@dataclass(frozen=True, slots=True)
class PackDocument:
    """One document of a pack, as listed to the agency (``placement_id`` is None for a store
    document: it belongs to the case, not to one placement)."""

    id: int
    case_id: str
    placement_id: str | None
    kind: str
    name: str
    media_type: str
    size: int
    sha256: str
    reference: str | None = None
    source: str | None = None

    @property
    def generated(self) -> bool:
        return self.placement_id is not None


def sealed_binding(case_id: str, sha256: str) -> str:
    """What a generated document's sealed content is bound to (it cannot be moved to
    another case or swapped for other bytes unnoticed)."""
    return f"document:{case_id}:{sha256}"


def _document(m: RowMapping) -> PackDocument:
    return PackDocument(
        id=int(m["id"]),
        case_id=str(m["case_id"]),
        placement_id=m["placement_id"],
        kind=str(m["kind"]),
        name=str(m["name"]),
        media_type=str(m["media_type"]),
        size=int(m["size"]),
        sha256=str(m["sha256"]),
        reference=m["reference"],
        source=m["source"],
    )


_KIND_ORDER = {
    "authorisation_letter": 0,
    "balance_breakdown": 1,
    "repayment_history": 2,
    "loan_contract": 3,
    "notarisation": 4,
    "preservation": 5,
}


async def pack_of(
    conn: AsyncConnection, placement_ids: Sequence[str]
) -> dict[str, list[PackDocument]]:
    """Each placement's pack (see the module docstring), letter first; placements without
    documents map to an empty list. Three queries whatever the number of placements."""
    packs: dict[str, list[PackDocument]] = {p: [] for p in placement_ids}
    if not packs:
        return packs
    placements = PLACEMENTS
    case_of: dict[str, str] = {}
    for start in range(0, len(placement_ids), 500):
        ids = list(placement_ids[start : start + 500])
        for pid, case_id in await conn.execute(
            sa.select(placements.c.id, placements.c.case_id).where(placements.c.id.in_(ids))
        ):
            case_of[str(pid)] = str(case_id)
        for row in await conn.execute(
            sa.select(*_COLUMNS, D.reference, D.source)
            .where(D.placement_id.in_(ids))
            .order_by(D.id)
        ):
            # Ordered by id: a renewal's newer letter or statement replaces the older one.
            docs = packs[str(row.placement_id)]
            doc = _document(row._mapping)
            docs[:] = [d for d in docs if d.kind != doc.kind]
            docs.append(doc)
    store_docs = await _store_documents(conn, sorted(set(case_of.values())))
    for pid, docs in packs.items():
        docs.extend(store_docs.get(case_of.get(pid, ""), []))
        docs.sort(key=lambda d: (_KIND_ORDER.get(d.kind, 9), d.name, d.id))
    return packs


async def _store_documents(
    conn: AsyncConnection, case_ids: Sequence[str]
) -> dict[str, list[PackDocument]]:
    """The newest version of each store file of the cases."""
    found: dict[str, list[PackDocument]] = {}
    for start in range(0, len(case_ids), 500):
        ids = list(case_ids[start : start + 500])
        newest = (
            sa.select(sa.func.max(D.id))
            .where(D.case_id.in_(ids), D.placement_id.is_(None))
            .group_by(D.case_id, D.source)
        )
        for row in await conn.execute(
            sa.select(*_COLUMNS, D.reference, D.source).where(D.id.in_(newest)).order_by(D.id)
        ):
            found.setdefault(str(row.case_id), []).append(_document(row._mapping))
    return found


async def document_of(conn: AsyncConnection, document_id: int) -> PackDocument | None:
    row = (
        await conn.execute(sa.select(*_COLUMNS, D.reference, D.source).where(D.id == document_id))
    ).first()
    return None if row is None else _document(row._mapping)


def _check(doc: PackDocument, size: int, sha256: str, where: str) -> None:
    if size != doc.size or sha256 != doc.sha256:
        raise DocumentChanged(
            f"case {doc.case_id}: document {doc.name} ({where}) changed since it was hashed: "
            f"{size} bytes, SHA-256 {sha256[:12]}..., recorded {doc.size} bytes, "
            f"{doc.sha256[:12]}...; restore it, or import the case again to record the new "
            "version"
        )


async def _generated_bytes(conn: AsyncConnection, doc: PackDocument) -> bytes:
    blob = (await conn.execute(sa.select(D.content).where(D.id == doc.id))).scalar_one_or_none()
    if blob is None:
        raise DocumentError(f"case {doc.case_id}: document {doc.name} has no stored content")
    sealer = sealer_of(conn)
    if sealer is None:
        raise DocumentError(
            f"case {doc.case_id}: document {doc.name} is sealed and this database has no key ring"
        )
    data = sealer.unseal(bytes(blob), bound_to=sealed_binding(doc.case_id, doc.sha256))
    _check(doc, len(data), hashlib.sha256(data).hexdigest(), f"document {doc.id}")
    return data


def _read_checked(store: DocumentStore, doc: PackDocument) -> bytes:
    assert doc.source is not None
    with store.open(doc.source) as fh:
        data = fh.read(doc.size + 1)
    _check(doc, len(data), hashlib.sha256(data).hexdigest(), store.describe(doc.source))
    return data


async def document_bytes(
    conn: AsyncConnection, doc: PackDocument, *, store: DocumentStore
) -> bytes:
    """The document's bytes, checked against its recorded size and SHA-256 (the whole file
    in memory: for attachments and small files; the fetch endpoint streams with
    ``document_stream``). DocumentChanged when they differ."""
    if doc.generated or doc.source is None:
        return await _generated_bytes(conn, doc)
    return await asyncio.to_thread(_read_checked, store, doc)


def _verify_open(store: DocumentStore, doc: PackDocument) -> BinaryIO:
    """Open the store file, check its size and hash in one streamed pass, and rewind."""
    assert doc.source is not None
    fh = store.open(doc.source)
    try:
        digest = hashlib.sha256()
        size = 0
        while block := fh.read(CHUNK):
            digest.update(block)
            size += len(block)
        _check(doc, size, digest.hexdigest(), store.describe(doc.source))
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    return fh


async def document_stream(
    conn: AsyncConnection, doc: PackDocument, *, store: DocumentStore
) -> AsyncGenerator[bytes, None]:
    """The document's bytes in chunks, never the whole of a large file in memory. A store
    file is checked in a first streamed pass before any byte is yielded (so a changed file
    raises DocumentChanged before anything is sent) and hashed again while it is sent; a
    change between the passes raises DocumentChanged at the end (the sender must then
    abort the transfer)."""
    if doc.generated or doc.source is None:
        data = await _generated_bytes(conn, doc)

        async def generated() -> AsyncGenerator[bytes, None]:
            for start in range(0, len(data), CHUNK):
                yield data[start : start + CHUNK]

        return generated()
    fh = await asyncio.to_thread(_verify_open, store, doc)

    async def stored() -> AsyncGenerator[bytes, None]:
        assert doc.source is not None
        digest = hashlib.sha256()
        size = 0
        try:
            while block := await asyncio.to_thread(fh.read, CHUNK):
                digest.update(block)
                size += len(block)
                yield block
        finally:
            fh.close()
        _check(doc, size, digest.hexdigest(), store.describe(doc.source))

    return stored()


__all__ = [
    "DOCUMENTS",
    "PackDocument",
    "document_bytes",
    "document_of",
    "document_stream",
    "pack_of",
    "sealed_binding",
]
