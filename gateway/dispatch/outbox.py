"""Transactional outbox: enqueue with the business row, claim in batches, complete with fencing.

Rules
-----
* Enqueue happens in the caller's transaction, together with the placement and its evidence
  leaf; a duplicate ``dedupe_key`` is ignored (``ON CONFLICT DO NOTHING``), so re-running a
  command never queues a packet twice.
* A claim takes up to ``limit`` due ``pending`` items in ``(run_at, id)`` order, which is
  exactly the order of the partial index ``ix_outbox_due``; it increments ``lease_token`` and
  ``attempts`` and sets a lease expiry. On PostgreSQL the inner SELECT uses
  ``FOR UPDATE SKIP LOCKED`` so concurrent workers take disjoint batches; on SQLite the
  ``BEGIN IMMEDIATE`` writer lock does the same.
* Every completion says ``WHERE id = ? AND lease_token = ?``: a worker whose lease expired
  and was re-claimed cannot overwrite the newer worker's result (fencing).
* The reaper returns expired leases to ``pending``; the next claim bumps the token.
* Urgent packets (``URGENT_PACKET_TYPES``: a recall must stop the agency's work within
  seconds, whatever backlog it has) are queued due since ``URGENT_RUN_AT``, so the claim's
  ``(run_at, id)`` order takes them before every item queued earlier. A retry of one is
  scheduled like any other.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.dispatch.packets import RenderedPacket
from gateway.errors import GatewayError
from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import PayloadSealer, dialect_insert, sealer_of
from gateway.store.tables import OutboxItem

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
OC = OUTBOX.c
URGENT_PACKET_TYPES = frozenset({"placement.recalled"})
URGENT_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
"""When an urgent packet is due: before anything a clock could have scheduled."""


@dataclass(frozen=True, slots=True)
class NewItem:
    agency_id: str
    placement_id: str
    packet: RenderedPacket
    max_attempts: int


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    id: int
    dedupe_key: str
    agency_id: str
    placement_id: str
    packet_type: str
    packet_version: int
    payload: bytes
    attempts: int
    max_attempts: int
    lease_token: int


ITEM_COLUMNS = (
    OC.id,
    OC.dedupe_key,
    OC.agency_id,
    OC.placement_id,
    OC.packet_type,
    OC.packet_version,
    OC.attempts,
    OC.max_attempts,
)
"""The outbox columns a ``ClaimedItem`` holds besides its payload and lease token."""


def claimed_item(row: Any, payload: bytes, lease_token: int) -> ClaimedItem:
    """The ``ClaimedItem`` of a row that has ``ITEM_COLUMNS``."""
    return ClaimedItem(
        row.id,
        row.dedupe_key,
        row.agency_id,
        row.placement_id,
        row.packet_type,
        row.packet_version,
        payload,
        row.attempts,
        row.max_attempts,
        lease_token,
    )


async def enqueue(
    conn: AsyncConnection, items: Sequence[NewItem], *, now: datetime
) -> dict[str, int]:
    """Queue packets in the caller's transaction. Returns dedupe_key → id of newly queued items."""
    if not items:
        return {}
    sealer = sealer_of(conn)
    rows = [
        {
            "dedupe_key": i.packet.dedupe_key,
            "agency_id": i.agency_id,
            "placement_id": i.placement_id,
            "packet_type": i.packet.packet_type,
            "packet_version": i.packet.packet_version,
            "payload": _seal(sealer, i.packet.dedupe_key, i.packet.payload),
            "payload_sha256": i.packet.sha256,
            "state": "pending",
            "attempts": 0,
            "max_attempts": i.max_attempts,
            "run_at": URGENT_RUN_AT if i.packet.packet_type in URGENT_PACKET_TYPES else now,
            "lease_token": 0,
            "created_at": now,
        }
        for i in items
    ]
    stmt = (
        dialect_insert(conn, OUTBOX)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OC.id, OC.dedupe_key)
    )
    result = await conn.execute(stmt, rows)
    return {key: id_ for id_, key in result.all()}


async def claim(
    conn: AsyncConnection,
    *,
    worker: str,
    limit: int,
    lease_seconds: float,
    now: datetime,
    exclude_agencies: Iterable[str] = (),
) -> list[ClaimedItem]:
    """Lease up to ``limit`` due items (see module rules)."""
    stmt = claim_statement(
        conn.dialect.name,
        worker=worker,
        limit=limit,
        lease_seconds=lease_seconds,
        now=now,
        exclude_agencies=exclude_agencies,
    ).returning(*ITEM_COLUMNS, OC.payload, OC.lease_token)
    result = await conn.execute(stmt)
    sealer = sealer_of(conn)
    items = [
        claimed_item(r, open_stored(sealer, r.dedupe_key, r.payload), r.lease_token)
        for r in result.all()
    ]
    items.sort(key=lambda i: i.id)
    return items


def claim_statement(
    dialect: str,
    *,
    worker: str,
    limit: int,
    lease_seconds: float,
    now: datetime,
    exclude_agencies: Iterable[str] = (),
) -> sa.Update:
    """The UPDATE of a claim (see module rules), for the caller to say what it returns."""
    excluded = list(exclude_agencies)
    due: sa.ScalarSelect[int] | sa.TextualSelect
    if dialect == "sqlite":
        due = _sqlite_due(now=now, limit=limit, excluded=excluded)
    else:
        # The literal state lets the planner prove the partial index's condition.
        select = (
            sa.select(OC.id)
            .where(OC.state == sa.literal_column("'pending'"), OC.run_at <= now)
            .order_by(OC.run_at, OC.id)
            .limit(limit)
        )
        if excluded:
            select = select.where(OC.agency_id.not_in(excluded))
        due = select.with_for_update(skip_locked=True).scalar_subquery()
    update: sa.Update = (
        OUTBOX.update()
        .where(OC.id.in_(due))
        .values(
            state="leased",
            lease_owner=worker,
            lease_token=OC.lease_token + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=OC.attempts + 1,
        )
    )
    return update


def _seal(sealer: PayloadSealer | None, dedupe_key: str, payload: bytes) -> bytes:
    return payload if sealer is None else sealer.seal(payload, bound_to=f"outbox:{dedupe_key}")


def open_stored(sealer: PayloadSealer | None, dedupe_key: str, stored: bytes) -> bytes:
    """A stored payload opened with ``sealer`` (b"" once purged; GatewayError when sealed
    bytes do not open)."""
    stored = bytes(stored)
    if not PiiKeyRing.is_sealed(stored):  # purged, or stored before sealing existed
        return stored
    if sealer is None:
        raise GatewayError(
            f"packet {dedupe_key} is sealed, and this database was opened without the PII "
            "key ring (secrets.pii_keys)"
        )
    return sealer.unseal(stored, bound_to=f"outbox:{dedupe_key}")


def open_payload(conn: AsyncConnection, dedupe_key: str, stored: bytes) -> bytes | None:
    """A stored packet's exact bytes (sealed at rest under the PII key ring, bound to the
    packet), or None once purged after its retention (``purge_payloads``)."""
    return open_stored(sealer_of(conn), dedupe_key, stored) or None


async def purge_payloads(
    conn: AsyncConnection, *, delivered_before: datetime, now: datetime
) -> int:
    """Drop the bytes of packets delivered before ``delivered_before``, keeping their SHA-256
    (``payload_sha256``, and the evidence leaf), and when they were purged. Returns how many."""
    result = await conn.execute(
        OUTBOX.update()
        .where(
            OC.state == "delivered",
            OC.delivered_at < delivered_before,
            OC.payload_purged_at.is_(None),
        )
        .values(payload=b"", payload_purged_at=now)
    )
    return int(result.rowcount or 0)


def _sqlite_due(*, now: datetime, limit: int, excluded: Sequence[str]) -> sa.TextualSelect:
    """The due items of a claim on SQLite. Its planner picks the (state, lease) index over
    the partial due index and then reads and sorts every pending item on every claim;
    ``INDEXED BY`` (which SQLAlchemy cannot express) makes each claim read only what it
    takes, in ``(run_at, id)`` order."""
    sql = (
        "SELECT id FROM outbox INDEXED BY ix_outbox_due WHERE state = 'pending' AND run_at <= :now"
    )
    if excluded:
        sql += " AND agency_id NOT IN :excluded"
    text = sa.text(sql + " ORDER BY run_at, id LIMIT :limit").bindparams(
        sa.bindparam("now", now, type_=OC.run_at.type), sa.bindparam("limit", limit)
    )
    if excluded:
        text = text.bindparams(sa.bindparam("excluded", list(excluded), expanding=True))
    return text.columns(OC.id)


_MARK_DELIVERED = (
    OUTBOX.update()
    .where(
        # The plain id list lets SQLite use the primary key; a row-value IN alone scans the
        # whole outbox on every batch.
        OC.id.in_(sa.bindparam("ids", expanding=True)),
        sa.tuple_(OC.id, OC.lease_token).in_(sa.bindparam("leases", expanding=True)),
        OC.state == "leased",
    )
    .values(
        state="delivered",
        delivered_at=sa.bindparam("now", type_=OC.delivered_at.type),
        lease_owner=None,
        lease_expires_at=None,
        last_error=None,
    )
    .returning(OC.id)
)
"""Built once: the group commit runs it every few milliseconds, and building it (an IN of
row values coerced one by one) cost more than running it."""


async def mark_delivered(
    conn: AsyncConnection, leases: Sequence[tuple[int, int]], *, now: datetime
) -> set[int]:
    """Complete (id, lease_token) pairs; return the ids whose lease still held."""
    if not leases:
        return set()
    params = {"ids": [item_id for item_id, _ in leases], "leases": list(leases), "now": now}
    return set((await conn.execute(_MARK_DELIVERED, params)).scalars().all())


async def mark_failed(
    conn: AsyncConnection,
    *,
    item_id: int,
    lease_token: int,
    state: str,
    error: str,
    run_at: datetime | None = None,
) -> bool:
    """Move a leased item to ``pending`` (with ``run_at``), ``dead`` or ``unknown``."""
    values: dict[str, object] = {
        "state": state,
        "last_error": error[:2000],
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if run_at is not None:
        values["run_at"] = run_at
    stmt = (
        OUTBOX.update()
        .where(OC.id == item_id, OC.lease_token == lease_token, OC.state == "leased")
        .values(**values)
    )
    return (await conn.execute(stmt)).rowcount == 1


async def reap(conn: AsyncConnection, *, now: datetime) -> int:
    """Return expired leases to ``pending``; return how many."""
    stmt = (
        OUTBOX.update()
        .where(OC.state == "leased", OC.lease_expires_at < now)
        .values(state="pending", lease_owner=None, lease_expires_at=None, run_at=now)
    )
    return (await conn.execute(stmt)).rowcount


async def requeue(conn: AsyncConnection, item_ids: Sequence[int], *, now: datetime) -> int:
    """Ops resend: put ``dead`` or ``unknown`` items back to ``pending`` (same dedupe key)."""
    stmt = (
        OUTBOX.update()
        .where(OC.id.in_(list(item_ids)), OC.state.in_(["dead", "unknown"]))
        .values(state="pending", run_at=now, attempts=0, last_error=None)
    )
    return (await conn.execute(stmt)).rowcount


async def next_due(conn: AsyncConnection) -> datetime | None:
    return (
        await conn.execute(sa.select(sa.func.min(OC.run_at)).where(OC.state == "pending"))
    ).scalar_one_or_none()


async def due_count(conn: AsyncConnection, *, now: datetime) -> int:
    """Pending items due at ``now`` (what a drain would try to send)."""
    query = sa.select(sa.func.count()).where(OC.state == "pending", OC.run_at <= now)
    return int((await conn.execute(query)).scalar_one())


async def counts_by_state(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(sa.select(OC.state, sa.func.count()).group_by(OC.state))
    return {state: n for state, n in rows.all()}


__all__ = [
    "ITEM_COLUMNS",
    "OUTBOX",
    "URGENT_PACKET_TYPES",
    "URGENT_RUN_AT",
    "ClaimedItem",
    "NewItem",
    "claim",
    "claim_statement",
    "claimed_item",
    "counts_by_state",
    "due_count",
    "enqueue",
    "mark_delivered",
    "mark_failed",
    "next_due",
    "open_payload",
    "open_stored",
    "purge_payloads",
    "reap",
    "requeue",
]
