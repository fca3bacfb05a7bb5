"""Hashing the lender's store documents of imported cases into ``case_documents`` and the
evidence log.

Theory of operation: for each case of an import that has a folder in the store, every file
is streamed through SHA-256 in a worker thread (never loaded whole) and compared with the
newest recorded version of the same file. A file seen for the first time, or whose bytes,
kind or reference changed, becomes a new ``case_documents`` row (``placement_id`` empty,
``source`` its path in the store) and one ``document`` evidence leaf, in one transaction per
batch of cases; the older row stays for the record (packs list the newest). An unchanged
file writes nothing, so importing the same file and store again writes nothing. Files the
store refuses (symbolic links) are skipped, logged and counted.
"""

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.documents.pack import DOCUMENTS, D
from gateway.documents.store import DocumentStore, Refused, StoreFile, hash_file
from gateway.errors import DocumentError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.store.database import Database
from gateway.store.tables import Case

log = logging.getLogger(__name__)

CASES = Case.__table__  # type: ignore[attr-defined]
BATCH = 200


@dataclass(slots=True)
class DocumentCounts:
    """What hashing the store did: documents recorded for the first time, new versions of
    changed ones, unchanged ones, and files refused (with why)."""

    recorded: int = 0
    changed: int = 0
    unchanged: int = 0
    refused: list[Refused] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Hashed:
    file: StoreFile
    size: int
    sha256: str


def _hash_cases(
    store: DocumentStore, case_ids: Sequence[str]
) -> tuple[list[_Hashed], list[Refused]]:
    """List and hash the cases' files (blocking; runs in a worker thread)."""
    hashed: list[_Hashed] = []
    refused: list[Refused] = []
    for case_id in case_ids:
        try:
            files, skipped = store.case_files(case_id)
        except DocumentError as exc:
            refused.append(Refused(case_id, "", str(exc)))
            continue
        refused.extend(skipped)
        for f in files:
            try:
                size, sha256 = hash_file(store, f.source)
            except DocumentError as exc:
                refused.append(Refused(case_id, f.name, str(exc)))
                continue
            hashed.append(_Hashed(f, size, sha256))
    return hashed, refused


async def _newest(
    conn: AsyncConnection, case_ids: Sequence[str]
) -> dict[str, tuple[str, str, str | None]]:
    """source → (sha256, kind, reference) of the newest recorded version of each file."""
    newest = (
        sa.select(sa.func.max(D.id))
        .where(D.case_id.in_(list(case_ids)), D.placement_id.is_(None))
        .group_by(D.case_id, D.source)
    )
    rows = await conn.execute(
        sa.select(D.source, D.sha256, D.kind, D.reference).where(D.id.in_(newest))
    )
    return {str(s): (str(h), str(k), r) for s, h, k, r in rows}


async def _write(
    conn: AsyncConnection, hashed: Sequence[_Hashed], counts: DocumentCounts, now: datetime
) -> None:
    known = await _newest(conn, sorted({h.file.case_id for h in hashed}))
    rows: list[dict[str, object]] = []
    leaves: list[LeafInput] = []
    for h in hashed:
        f = h.file
        before = known.get(f.source)
        if before == (h.sha256, f.kind, f.reference):
            counts.unchanged += 1
            continue
        if before is None:
            counts.recorded += 1
        else:
            counts.changed += 1
            log.warning(
                "document store: case %s: %s changed (was SHA-256 %s...); recorded anew",
                f.case_id,
                f.name,
                before[0][:12],
            )
        rows.append(
            {
                "case_id": f.case_id,
                "placement_id": None,
                "kind": f.kind,
                "name": f.name,
                "media_type": f.media_type,
                "size": h.size,
                "sha256": h.sha256,
                "content": None,
                "source": f.source,
                "reference": f.reference,
                "created_at": now,
            }
        )
        fields: dict[str, object] = {
            "case_id": f.case_id,
            "name": f.name,
            "document_kind": f.kind,
            "source": f.source,
            "size": h.size,
            "sha256": h.sha256,
        }
        if f.reference:
            fields["reference"] = f.reference
        if before is not None:
            fields["previous_sha256"] = before[0]
        leaves.append(
            LeafInput(kind="document", ref=f"document:{f.case_id}:{h.sha256}", fields=fields)
        )
    if rows:
        await conn.execute(DOCUMENTS.insert(), rows)
        await append_leaves(conn, leaves, now=now)


async def _known_cases(db: Database, case_ids: Sequence[str]) -> list[str]:
    async with db.snapshot() as conn:
        found = await conn.execute(sa.select(CASES.c.id).where(CASES.c.id.in_(list(case_ids))))
        return sorted(str(c) for (c,) in found)


async def hash_store_documents(
    db: Database,
    store: DocumentStore,
    case_ids: Iterable[str],
    *,
    now: datetime,
    batch: int = BATCH,
) -> DocumentCounts:
    """Record the store documents of ``case_ids`` (cases the gateway does not hold are
    skipped): see the module docstring. One transaction per ``batch`` cases."""
    counts = DocumentCounts()
    in_store = await asyncio.to_thread(store.case_ids)
    ids = sorted(in_store.intersection(case_ids))
    for start in range(0, len(ids), batch):
        known = await _known_cases(db, ids[start : start + batch])
        hashed, refused = await asyncio.to_thread(_hash_cases, store, known)
        for r in refused:
            log.warning(
                "document store: case %s: %s refused: %s", r.case_id, r.name or "(folder)", r.reason
            )
        counts.refused.extend(refused)
        if hashed:
            async with db.transaction() as conn:
                await _write(conn, hashed, counts, now)
    return counts


__all__ = ["DocumentCounts", "hash_store_documents"]
