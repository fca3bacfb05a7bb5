"""Recording a delivered file batch in bulk: a few statements for every case in it.

The per-item path (``Dispatcher._record``) builds Python objects and parameter rows per
outcome; for a file of 100,000 cases that is most of the dispatch time. A delivered batch
(``gateway.ports.BatchDelivered``) is recorded set-based instead, in one transaction. The
items are the batch's members that this batch claim still holds: ``state = 'leased'`` and
``lease_owner`` = the claim's tag, which fences exactly as the lease token does (an item that
was reaped, or reaped and claimed again, no longer has this owner). Page by page (in record
order, one transaction each, so memory and the writer lock stay bounded), for each of them:

1. a delivery attempt each (INSERT … SELECT): outcome ``delivered``, the data file's SHA-256
   as the response hash and ``<remote path> line <n>`` as the excerpt;
2. a receipt evidence leaf each, byte for byte what the per-item path writes for the same
   receipt (``gateway.evidence.leaf_template``), so verification checks both alike;
3. the delivery hooks' effects (``on_delivered_rows``: SLA expectations);
4. state ``delivered``, returning the ids that were held.
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
        sa.select(OC.id, OC.dedupe_key, M.record_no, M.line_no)
        .where(held, M.record_no > after_record)
        .order_by(M.record_no)
        .limit(limit)
    )
    if conn.dialect.name != "sqlite":
        members = members.with_for_update(of=OUTBOX)
    rows: Sequence[tuple[int, str, int, int]] = (await conn.execute(members)).all()
    if not rows:
        return [], None
    first, last = rows[0][2], rows[-1][2]
    page = sa.and_(held, M.record_no.between(first, last))
    excerpt = sa.literal(f"{delivered.remote_path} line ") + sa.cast(M.line_no, sa.String)
    attempts = (
        ATTEMPTS.insert()
        .from_select(
            [
                "outbox_id",
                "agency_id",
                "attempt_no",
                "lease_token",
                "outcome",
                "started_at",
                "duration_ms",
                "request_timestamp",
                "response_sha256",
                "response_excerpt",
            ],
            sa.select(
                OC.id,
                OC.agency_id,
                OC.attempts,
                OC.lease_token,
                sa.literal("delivered", A.outcome.type),
                sa.literal(started_at, A.started_at.type),
                sa.literal(duration_ms, A.duration_ms.type),
                sa.literal(delivered.request_timestamp, A.request_timestamp.type),
                sa.literal(delivered.sha256, A.response_sha256.type),
                excerpt,
            )
            .where(page)
            .order_by(M.record_no),
        )
        .returning(A.outbox_id, A.id)
    )
    attempt_of = {outbox_id: id_ for outbox_id, id_ in await conn.execute(attempts)}
    template = receipt_template(agency_id, delivered)
    assert template.slots == ("ref", "attempt_id", "outbox_id", "dedupe_key", "record", "line")
    bodies = []
    for outbox_id, dedupe_key, record_no, line_no in rows:
        attempt_id = attempt_of[outbox_id]
        ref = f"attempt:{attempt_id}"
        body = template.body((ref, attempt_id, outbox_id, dedupe_key, str(record_no), str(line_no)))
        bodies.append(("receipt", ref, body))
    await append_bodies(conn, bodies, now=now)
    await hooks.on_delivered_rows(
        conn, agency_id, sa.select(OC.placement_id, OC.packet_type).where(page), now=now
    )
    in_page = sa.select(M.outbox_id).where(
        M.batch_id == delivered.batch_id, M.record_no.between(first, last)
    )
    done = (
        OUTBOX.update()
        .where(OC.id.in_(in_page), OC.state == "leased", OC.lease_owner == owner)
        .values(
            state="delivered",
            delivered_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error=None,
        )
        .returning(OC.id)
    )
    return list((await conn.execute(done)).scalars().all()), last


__all__ = ["BatchHooks", "receipt_template", "record_batch_delivery"]
