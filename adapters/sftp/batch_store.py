"""The record of file batches: sequence numbers, batch rows, membership, remote files.

Every function runs in the caller's transaction. Sequence numbers come from one upsert
(``INSERT ... ON CONFLICT DO UPDATE SET last_seq = last_seq + 1 RETURNING``), atomic on
SQLite and PostgreSQL alike, so two workers never get the same number and a number whose
batch failed is never handed out again.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.dispatch.outbox import open_payload
from gateway.store.database import dialect_insert
from gateway.store.driver_sql import bulk_insert
from gateway.store.tables import OutboxItem
from gateway.store.transfer_tables import (
    FileBatch,
    FileBatchItem,
    FileSequence,
    RemoteFile,
)

SEQUENCES = FileSequence.__table__  # type: ignore[attr-defined]
BATCHES = FileBatch.__table__  # type: ignore[attr-defined]
ITEMS = FileBatchItem.__table__  # type: ignore[attr-defined]
REMOTE_FILES = RemoteFile.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
B, BI, RF = BATCHES.c, ITEMS.c, REMOTE_FILES.c

OPEN_STATES = ("preparing", "staged", "delivered")
"""A member of a batch in one of these states is carried by it (resumed, never re-batched)."""


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: int
    agency_id: str
    file_type: str
    business_date: date
    seq: int
    base_name: str
    state: str
    record_count: int
    totals: dict[str, int]
    resend_of: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RemoteFileRow:
    id: int
    role: str
    remote_path: str
    size: int
    sha256: str
    plaintext_sha256: str | None
    record_count: int | None
    recipient_fpr: str | None
    state: str


@dataclass(frozen=True, slots=True)
class Membership:
    batch_id: int
    state: str
    base_name: str
    data_name: str | None


async def next_sequence(
    conn: AsyncConnection, *, agency_id: str, file_type: str, business_date: date, now: datetime
) -> int:
    """Take the next sequence number of (agency, type, date); it is never handed out again."""
    insert = dialect_insert(conn, SEQUENCES).values(
        agency_id=agency_id,
        file_type=file_type,
        business_date=business_date,
        last_seq=1,
        updated_at=now,
    )
    stmt = insert.on_conflict_do_update(
        index_elements=["agency_id", "file_type", "business_date"],
        set_={"last_seq": SEQUENCES.c.last_seq + 1, "updated_at": now},
    ).returning(SEQUENCES.c.last_seq)
    return int((await conn.execute(stmt)).scalar_one())


async def insert_batch(
    conn: AsyncConnection,
    *,
    agency_id: str,
    file_type: str,
    business_date: date,
    seq: int,
    base_name: str,
    resend_of: Sequence[str],
    now: datetime,
) -> int:
    stmt = BATCHES.insert().returning(B.id)
    values = {
        "agency_id": agency_id,
        "file_type": file_type,
        "business_date": business_date,
        "seq": seq,
        "base_name": base_name,
        "state": "preparing",
        "record_count": 0,
        "totals": "{}",
        "resend_of": json.dumps(sorted(resend_of)) if resend_of else None,
        "created_at": now,
        "updated_at": now,
    }
    return int((await conn.execute(stmt, values)).scalar_one())


async def add_members(
    conn: AsyncConnection, batch_id: int, rows: Sequence[tuple[int, int, int]]
) -> None:
    """(outbox id, record number, line number) of rows written to the batch's data file."""
    await bulk_insert(
        conn,
        ITEMS,
        ("outbox_id", "record_no", "line_no"),
        rows,
        constants={"batch_id": batch_id},
    )


async def member_line(conn: AsyncConnection, batch_id: int, outbox_id: int) -> tuple[int, int]:
    """(record number, line number) of one member of a batch."""
    row = (
        await conn.execute(
            sa.select(BI.record_no, BI.line_no).where(
                BI.batch_id == batch_id, BI.outbox_id == outbox_id
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def memberships(
    conn: AsyncConnection, outbox_ids: Sequence[int]
) -> dict[int, list[Membership]]:
    """Every batch each outbox item was ever carried by, newest first."""
    if not outbox_ids:
        return {}
    data = sa.select(RF.remote_path).where(RF.batch_id == B.id, RF.role == "data").limit(1)
    rows = await conn.execute(
        sa.select(BI.outbox_id, B.id, B.state, B.base_name, data.scalar_subquery())
        .join(BATCHES, B.id == BI.batch_id)
        .where(BI.outbox_id.in_(list(outbox_ids)))
        .order_by(B.id.desc())
    )
    found: dict[int, list[Membership]] = {}
    for outbox_id, batch_id, state, base_name, data_path in rows.all():
        name = data_path.rpartition("/")[2] if data_path else None
        found.setdefault(outbox_id, []).append(Membership(batch_id, state, base_name, name))
    return found


async def load_batch(conn: AsyncConnection, batch_id: int) -> BatchRow:
    r = (await conn.execute(sa.select(BATCHES).where(B.id == batch_id))).one()
    return BatchRow(
        id=r.id,
        agency_id=r.agency_id,
        file_type=r.file_type,
        business_date=r.business_date,
        seq=r.seq,
        base_name=r.base_name,
        state=r.state,
        record_count=r.record_count,
        totals={str(k): int(v) for k, v in json.loads(r.totals or "{}").items()},
        resend_of=tuple(json.loads(r.resend_of)) if r.resend_of else (),
        created_at=r.created_at,
    )


async def remote_files(conn: AsyncConnection, batch_id: int) -> dict[str, RemoteFileRow]:
    rows = await conn.execute(sa.select(REMOTE_FILES).where(RF.batch_id == batch_id))
    return {
        r.role: RemoteFileRow(
            r.id,
            r.role,
            r.remote_path,
            r.size,
            r.sha256,
            r.plaintext_sha256,
            r.record_count,
            r.recipient_fpr,
            r.state,
        )
        for r in rows.all()
    }


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A file of a batch as rendered locally: what will be (or was) put on the server."""

    role: str
    remote_path: str
    size: int
    sha256: str
    plaintext_sha256: str | None = None
    record_count: int | None = None
    recipient_fpr: str | None = None


async def stage(
    conn: AsyncConnection,
    *,
    batch_id: int,
    agency_id: str,
    record_count: int,
    totals: Mapping[str, int],
    files: Sequence[StagedFile],
    resend_of: Sequence[str] = (),
    now: datetime,
) -> None:
    """Record the batch's files (replacing a previous rendering that never reached the
    server) and move the batch to ``staged``."""
    await conn.execute(REMOTE_FILES.delete().where(RF.batch_id == batch_id, RF.state == "staged"))
    await conn.execute(
        REMOTE_FILES.insert(),
        [
            {
                "batch_id": batch_id,
                "agency_id": agency_id,
                "role": f.role,
                "remote_path": f.remote_path,
                "size": f.size,
                "sha256": f.sha256,
                "plaintext_sha256": f.plaintext_sha256,
                "record_count": f.record_count,
                "recipient_fpr": f.recipient_fpr,
                "state": "staged",
            }
            for f in files
        ],
    )
    await conn.execute(
        BATCHES.update()
        .where(B.id == batch_id)
        .values(
            state="staged",
            record_count=record_count,
            totals=json.dumps(dict(sorted(totals.items()))),
            resend_of=json.dumps(sorted(resend_of)) if resend_of else None,
            updated_at=now,
        )
    )


async def mark_files(conn: AsyncConnection, states: Mapping[int, str], *, now: datetime) -> None:
    """Remote file id → ``uploaded`` or ``present``."""
    for file_id, state in states.items():
        await conn.execute(
            REMOTE_FILES.update().where(RF.id == file_id).values(state=state, uploaded_at=now)
        )


async def set_state(
    conn: AsyncConnection, batch_id: int, state: str, *, now: datetime, error: str | None = None
) -> None:
    values: dict[str, object] = {"state": state, "updated_at": now, "error": error}
    if state == "delivered":
        values["delivered_at"] = now
    await conn.execute(BATCHES.update().where(B.id == batch_id).values(**values))


async def member_page(
    conn: AsyncConnection, batch_id: int, *, after_record: int, limit: int, with_payload: bool
) -> list[tuple[int, int, int, bytes]]:
    """(outbox id, record no, line no, payload or b"") of a batch in record order, paged."""
    columns = [BI.outbox_id, BI.record_no, BI.line_no]
    if with_payload:
        query = sa.select(*columns, OUTBOX.c.dedupe_key, OUTBOX.c.payload).join(
            OUTBOX, OUTBOX.c.id == BI.outbox_id
        )
    else:
        query = sa.select(*columns, sa.literal(""), sa.literal(b""))
    rows = await conn.execute(
        query.where(BI.batch_id == batch_id, BI.record_no > after_record)
        .order_by(BI.record_no)
        .limit(limit)
    )
    return [
        (r[0], r[1], r[2], (open_payload(conn, r[3], r[4]) or b"") if with_payload else b"")
        for r in rows.all()
    ]


__all__ = [
    "OPEN_STATES",
    "BatchRow",
    "Membership",
    "RemoteFileRow",
    "StagedFile",
    "add_members",
    "insert_batch",
    "load_batch",
    "mark_files",
    "member_line",
    "member_page",
    "memberships",
    "next_sequence",
    "remote_files",
    "set_state",
    "stage",
]
