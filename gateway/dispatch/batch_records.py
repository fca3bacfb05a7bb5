"""Recording a delivered file batch in bulk: a few statements for every case in it.

The per-item path (``Dispatcher._record``) builds Python objects and parameter rows per
outcome; for a file of 100,000 cases that is most of the dispatch time. A delivered batch
(``gateway.ports.BatchDelivered``) is recorded set-based instead, in one transaction. The
items are the batch's members that this batch claim still holds: ``state = 'leased'`` and
``lease_owner`` = the claim's tag, which fences exactly as the lease token does (an item that
was reaped, or reaped and claimed again, no longer has this owner). Page by page (in record
order, one transaction each, so memory and the writer lock stay bounded), the page's held
members are read once (their outbox rows locked FOR UPDATE on PostgreSQL; SQLite's writer
lock holds them), and for each of them:

1. a delivery attempt each, one driver-level ``executemany``: outcome ``delivered``, the data
   file's SHA-256 as the response hash and ``<remote path> line <n>`` as the excerpt; the
   ids are numbered up front (after the largest, under SQLite's writer lock; from the
   table's sequence on PostgreSQL), so the receipts can name them without reading them back;
2. a receipt evidence leaf each, byte for byte what the per-item path writes for the same
   receipt (``gateway.evidence.leaf_template``), so verification checks both alike;
3. the delivery hooks' effects (``on_delivered_rows``: SLA expectations, INSERT … SELECT);
4. state ``delivered``, by primary key.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.dispatch.outbox import OUTBOX
from gateway.evidence.leaf_template import LeafTemplate, Slot
from gateway.evidence.log import append_bodies
from gateway.ports import BatchDelivered
from gateway.store.driver_sql import bulk_insert, execute_rows
from gateway.store.tables import DeliveryAttempt
from gateway.store.transfer_tables import FileBatchItem

ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
ITEMS = FileBatchItem.__table__  # type: ignore[attr-defined]
OC, A, M = OUTBOX.c, ATTEMPTS.c, ITEMS.c


class BatchHooks(Protocol):
    async def on_delivered_rows(
        self,
        conn: AsyncConnection,
        agency_id: str,
        delivered: sa.Select[tuple[str, str]],
        *,
        now: datetime,
    ) -> None: ...


def receipt_template(agency_id: str, delivered: BatchDelivered) -> LeafTemplate:
    """The receipt leaf of one member, as ``Dispatcher._record`` writes it for the
    member's ``BatchDelivered.receipt``."""
    return LeafTemplate(
        "receipt",
        Slot("ref", text=True),
        {
            "attempt_id": Slot("attempt_id"),
            "outbox_id": Slot("outbox_id"),
            "dedupe_key": Slot("dedupe_key", text=True),
            "agency_id": agency_id,
            "outcome": "delivered",
            "http_status": None,
            "response_sha256": delivered.sha256,
            "request_timestamp": delivered.request_timestamp,
            "details": {
                "remote_path": delivered.remote_path,
                "size": str(delivered.size),
                "sha256": delivered.sha256,
                "record": Slot("record", text=True),
                "line": Slot("line", text=True),
                "manifest": delivered.manifest_path,
            },
        },
    )


async def record_batch_delivery(
    conn: AsyncConnection,
    delivered: BatchDelivered,
    *,
    agency_id: str,
    owner: str,
    after_record: int,
    limit: int,
    started_at: datetime,
    duration_ms: int,
    hooks: BatchHooks,
    now: datetime,
) -> tuple[list[int], int | None]:
    """Record, in the caller's transaction, the delivery of the next ``limit`` members of
    ``delivered`` after record ``after_record`` that ``owner`` holds (see the module
    docstring). Returns their outbox ids and the last record number of the page, or None
    when no held member is left; page through a batch to keep memory and transactions
    bounded."""
    held = sa.and_(
        M.batch_id == delivered.batch_id,
        OC.id == M.outbox_id,
        OC.state == "leased",
        OC.lease_owner == owner,
    )
    members = (
        sa.select(
            OC.id, OC.dedupe_key, M.record_no, M.line_no, OC.agency_id, OC.attempts, OC.lease_token
        )
        .where(held, M.record_no > after_record)
        .order_by(M.record_no)
        .limit(limit)
    )
    if conn.dialect.name != "sqlite":
        members = members.with_for_update(of=OUTBOX)
    # The page is read once: the writer lock (SQLite) or the row locks (PostgreSQL) keep it
    # held until commit, so every statement below works from these rows.
    rows: Sequence[tuple[int, str, int, int, str, int, int]] = (await conn.execute(members)).all()
    if not rows:
        return [], None
    ids = [r[0] for r in rows]
    first, last = rows[0][2], rows[-1][2]
    excerpt = f"{delivered.remote_path} line "
    attempt_ids = await _numbered(conn, len(rows))
    await bulk_insert(
        conn,
        ATTEMPTS,
        ("id", "outbox_id", "agency_id", "attempt_no", "lease_token", "response_excerpt"),
        [
            (attempt_id, r[0], r[4], r[5], r[6], excerpt + str(r[3]))
            for attempt_id, r in zip(attempt_ids, rows, strict=True)
        ],
        constants={
            "outcome": "delivered",
            "started_at": started_at,
            "duration_ms": duration_ms,
            "request_timestamp": delivered.request_timestamp,
            "response_sha256": delivered.sha256,
        },
    )
    template = receipt_template(agency_id, delivered)
    assert template.slots == ("ref", "attempt_id", "outbox_id", "dedupe_key", "record", "line")
    bodies = []
    for attempt_id, (outbox_id, dedupe_key, record_no, line_no, *_) in zip(
        attempt_ids, rows, strict=True
    ):
        ref = f"attempt:{attempt_id}"
        body = template.body((ref, attempt_id, outbox_id, dedupe_key, str(record_no), str(line_no)))
        bodies.append(("receipt", ref, body))
    await append_bodies(conn, bodies, now=now)
    page = sa.and_(held, M.record_no.between(first, last))
    await hooks.on_delivered_rows(
        conn, agency_id, sa.select(OC.placement_id, OC.packet_type).where(page), now=now
    )
    # By primary key, row by row: a set-based UPDATE on SQLite walks the (state, lease)
    # index over every item still leased, once per page.
    await execute_rows(
        conn,
        OUTBOX.update()
        .where(OC.id == sa.bindparam("held_id"), OC.state == "leased", OC.lease_owner == owner)
        .values(
            state="delivered",
            delivered_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error=None,
        ),
        [{"held_id": i} for i in ids],
    )
    return ids, last


async def _numbered(conn: AsyncConnection, count: int) -> list[int]:
    """``count`` new delivery attempt ids, in order. SQLite: after the largest, which is safe
    under ``BEGIN IMMEDIATE`` (we hold the only writer lock, as
    gateway.store.driver_sql.insert_numbered relies on); PostgreSQL: from the table's
    sequence."""
    if conn.dialect.name == "sqlite":
        last = (await conn.execute(sa.select(sa.func.max(A.id)))).scalar()
        start = (last or 0) + 1
        return list(range(start, start + count))
    sequence = sa.func.pg_get_serial_sequence(ATTEMPTS.name, A.id.name)
    taken = await conn.execute(
        sa.select(sa.func.nextval(sequence)).select_from(sa.func.generate_series(1, count))
    )
    return sorted(int(i) for i in taken.scalars())


__all__ = ["BatchHooks", "receipt_template", "record_batch_delivery"]
