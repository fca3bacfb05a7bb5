"""Complaints in the database: reading them, opening them in batches (the agency event on
arrival, in the inbound transaction), and counting them per agency.

Everything here works in the caller's transaction. Who a complaint is held against is
decided when it opens: the placement it names (an agency event always names one), else the
placement that held the case at the complained-of contact or at receipt
(gateway.complaints.states.holder_at); the collector is the one named, else the collector of
the agency's last ``contact.attempted`` on that placement before that moment, when the
agency reported one.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.complaints.states import (
    OPEN_STATES,
    Held,
    answer_days,
    deadline,
    holder_at,
    is_overdue,
)
from gateway.config.settings import ComplaintsSection
from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.store.complaint_tables import Complaint
from gateway.store.database import dialect_insert
from gateway.store.tables import AgencyEventRow, Case, Placement
from schemas.events import AgencyEvent, ComplaintReceived

COMPLAINTS = Complaint.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
K, P, E = COMPLAINTS.c, PLACEMENTS.c, EVENTS.c
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """``[complaints]`` deadlines in the lender's time zone."""

    answer_days: int = 15
    extension_days: int = 15
    by_channel: tuple[tuple[str, int], ...] = ()
    by_category: tuple[tuple[str, int], ...] = ()
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    @classmethod
    def of(cls, section: ComplaintsSection, zone: ZoneInfo) -> "DeadlinePolicy":
        return cls(
            section.answer_days,
            section.extension_days,
            tuple(sorted(section.by_channel.items())),
            tuple(sorted(section.by_category.items())),
            zone,
        )

    def deadline(self, received_at: datetime, channel: str, category: str) -> datetime:
        days = answer_days(
            channel,
            category,
            default=self.answer_days,
            by_channel=dict(self.by_channel),
            by_category=dict(self.by_category),
        )
        return deadline(received_at, days, self.zone)


DEFAULT_POLICY = DeadlinePolicy()
"""The statutory default (15 days, Shanghai), for tools that run without the lender's
settings; the gateway's channels pass ``[complaints]`` (gateway.reconciliation.recorder's
``ArrivalPolicy``)."""


@dataclass(frozen=True, slots=True)
class ComplaintRecord:
    """A complaint as stored (the summary stays sealed) and whether it is overdue now."""

    id: int
    source: str
    source_ref: str
    case_id: str
    placement_id: str | None
    agency_id: str | None
    collector_id: str | None
    event_id: int | None
    channel: str
    category: str
    contact_at: datetime | None
    received_at: datetime
    deadline_at: datetime
    extended: bool
    state: str
    outcome: str | None
    outcome_note: str | None
    owner: str | None
    hold_id: int | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopened: int
    revision: int
    updated_at: datetime
    updated_by: str
    overdue: bool = False
    has_summary: bool = False

    @property
    def ref(self) -> str:
        return f"C{self.id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "source_ref": self.source_ref,
            "case_id": self.case_id,
            "placement_id": self.placement_id,
            "agency_id": self.agency_id,
            "collector_id": self.collector_id,
            "event_id": self.event_id,
            "channel": self.channel,
            "category": self.category,
            "contact_at": self.contact_at,
            "received_at": self.received_at,
            "deadline_at": self.deadline_at,
            "extended": self.extended,
            "state": self.state,
            "outcome": self.outcome,
            "outcome_note": self.outcome_note,
            "owner": self.owner,
            "held": self.hold_id is not None,
            "resolved_at": self.resolved_at,
            "closed_at": self.closed_at,
            "reopened": self.reopened,
            "revision": self.revision,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "overdue": self.overdue,
        }


_FIELDS = [c.name for c in COMPLAINTS.columns if c.name not in ("summary_enc", "created_at")]


def record_of(row: Any, now: datetime) -> ComplaintRecord:
    values = {name: getattr(row, name) for name in _FIELDS}
    return ComplaintRecord(
        **values,
        overdue=is_overdue(row.state, row.deadline_at, now),
        has_summary=row.has_summary or row.event_id is not None,
    )


def select_complaints() -> sa.Select[Any]:
    return sa.select(
        *(K[name] for name in _FIELDS), K.summary_enc.is_not(None).label("has_summary")
    )


async def get_complaint(
    conn: AsyncConnection, complaint_id: int, *, now: datetime
) -> ComplaintRecord:
    row = (await conn.execute(select_complaints().where(K.id == complaint_id))).first()
    if row is None:
        raise NotFound(
            f"complaint {complaint_id} does not exist; see `complaints list` for the ids"
        )
    return record_of(row, now)


@dataclass(frozen=True, slots=True)
class ComplaintFilter:
    state: str | None = None
    """A state, ``waiting`` (open or investigating) or None for all."""
    agency_id: str | None = None
    case_id: str | None = None
    overdue: bool = False
    limit: int = 200


async def list_complaints(
    conn: AsyncConnection, where: ComplaintFilter, *, now: datetime
) -> list[ComplaintRecord]:
    """The complaints ``where`` selects, the nearest deadline first."""
    query = select_complaints()
    if where.state == "waiting" or where.overdue:
        query = query.where(K.state.in_(sorted(OPEN_STATES)))
    elif where.state:
        query = query.where(K.state == where.state)
    if where.overdue:
        query = query.where(K.deadline_at < now)
    if where.agency_id:
        query = query.where(K.agency_id == where.agency_id)
    if where.case_id:
        query = query.where(K.case_id == where.case_id)
    rows = await conn.execute(query.order_by(K.deadline_at, K.id).limit(where.limit))
    return [record_of(r, now) for r in rows]


async def overdue_count(conn: AsyncConnection, *, now: datetime) -> int:
    """Complaints waiting for an answer past their deadline (the metric)."""
    found = await conn.execute(
        sa.select(sa.func.count())
        .select_from(COMPLAINTS)
        .where(K.state.in_(sorted(OPEN_STATES)), K.deadline_at < now)
    )
    return int(found.scalar() or 0)


def complaint_leaf(record: ComplaintRecord, event: str, actor: str, **extra: object) -> LeafInput:
    """The ``complaint`` evidence leaf of one change (never the summary: personal data)."""
    return LeafInput(
        kind="complaint",
        ref=f"complaint:{record.id}",
        fields={
            "event": event,
            "source": record.source,
            "source_ref": record.source_ref,
            "case_id": record.case_id,
            "placement_id": record.placement_id or "",
            "agency_id": record.agency_id or "",
            "collector_id": record.collector_id or "",
            "state": record.state,
            "outcome": record.outcome or "",
            "owner": record.owner or "",
            "deadline_at": record.deadline_at.isoformat(),
            "revision": record.revision,
            "actor": actor,
            **extra,
        },
    )


# -- opening ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewComplaint:
    """A complaint to open. ``placement_id`` (or failing it ``case_id``) names the case; the
    rest of the attribution is decided on opening (see the module docstring)."""

    source: str
    source_ref: str
    channel: str
    category: str
    received_at: datetime
    case_id: str | None = None
    placement_id: str | None = None
    agency_id: str | None = None
    collector_id: str | None = None
    contact_at: datetime | None = None
    event_id: int | None = None
    summary_enc: bytes | None = None

    @property
    def at(self) -> datetime:
        return self.contact_at or self.received_at


async def attribute(conn: AsyncConnection, items: Sequence[NewComplaint]) -> list[NewComplaint]:
    """``items`` with case, placement, agency and collector filled in. Raises NotFound naming
    an unknown case or placement, GatewayError when a case contradicts its placement."""
    found = []
    for item in await attribute_each(conn, items):
        if isinstance(item, GatewayError):
            raise item
        found.append(item)
    return found


async def attribute_each(
    conn: AsyncConnection, items: Sequence[NewComplaint]
) -> list[NewComplaint | GatewayError]:
    """Each of ``items`` attributed, or the error that says why it cannot be (in input order;
    three queries for the lot, plus one for collectors)."""
    named = sorted({i.placement_id for i in items if i.placement_id})
    placements: dict[str, tuple[str, str]] = {}
    for start in range(0, len(named), _CHUNK):
        rows = await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id).where(P.id.in_(named[start : start + _CHUNK]))
        )
        placements.update({pid: (case_id, agency) for pid, case_id, agency in rows})
    done: list[NewComplaint | GatewayError] = []
    for item in items:
        if item.placement_id is None:
            done.append(item)
        elif item.placement_id not in placements:
            done.append(NotFound(f"complaint {item.source_ref}: no placement {item.placement_id}"))
        elif item.case_id is not None and item.case_id != placements[item.placement_id][0]:
            done.append(
                GatewayError(
                    f"complaint {item.source_ref}: case {item.case_id} is not the case of "
                    f"placement {item.placement_id} ({placements[item.placement_id][0]})"
                )
            )
        else:
            case_id, agency = placements[item.placement_id]
            done.append(replace(item, case_id=case_id, agency_id=agency))
    unplaced = sorted(
        {
            i.case_id
            for i in done
            if isinstance(i, NewComplaint) and i.placement_id is None and i.case_id
        }
    )
    history: dict[str, list[Held]] = {}
    known_cases: set[str] = set()
    for start in range(0, len(unplaced), _CHUNK):
        chunk = unplaced[start : start + _CHUNK]
        known_cases.update(
            (await conn.execute(sa.select(CASES.c.id).where(CASES.c.id.in_(chunk)))).scalars()
        )
        rows = await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id, P.placed_at, P.recalled_at).where(
                P.case_id.in_(chunk)
            )
        )
        for pid, case_id, agency, placed_at, recalled_at in rows:
            history.setdefault(case_id, []).append(Held(pid, agency, placed_at, recalled_at))
    found: list[NewComplaint | GatewayError] = []
    for entry in done:
        if not isinstance(entry, NewComplaint) or entry.placement_id is not None:
            found.append(entry)
        elif entry.case_id not in known_cases:
            found.append(
                NotFound(
                    f"complaint {entry.source_ref}: no case {entry.case_id}; check the id "
                    "(cases list --search)"
                )
            )
        elif (held := holder_at(history.get(entry.case_id or "", []), entry.at)) is not None:
            found.append(replace(entry, placement_id=held.placement_id, agency_id=held.agency_id))
        else:
            found.append(entry)
    good = await _with_collectors(conn, [i for i in found if isinstance(i, NewComplaint)])
    filled = iter(good)
    return [next(filled) if isinstance(i, NewComplaint) else i for i in found]


async def _with_collectors(
    conn: AsyncConnection, items: Sequence[NewComplaint]
) -> list[NewComplaint]:
    wanted = sorted({i.placement_id for i in items if i.placement_id and not i.collector_id})
    if not wanted:
        return list(items)
    contacts: dict[str, list[tuple[datetime, str]]] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = await conn.execute(
            sa.select(E.placement_id, E.occurred_at, E.data).where(
                E.placement_id.in_(wanted[start : start + _CHUNK]),
                E.event_type == "contact.attempted",
            )
        )
        for pid, occurred_at, data in rows:
            collector = json.loads(data).get("collector_id") if data else None
            if isinstance(collector, str) and collector:
                contacts.setdefault(pid, []).append((occurred_at, collector))
    found = []
    for item in items:
        if item.placement_id and not item.collector_id:
            before = [c for c in contacts.get(item.placement_id, []) if c[0] <= item.at]
            if before:
                item = replace(item, collector_id=max(before)[1][:64])
        found.append(item)
    return found


async def insert_complaints(
    conn: AsyncConnection,
    items: Sequence[NewComplaint],
    *,
    policy: DeadlinePolicy,
    actor: str,
    now: datetime,
) -> list[tuple[ComplaintRecord, bool]]:
    """Open ``items`` (already attributed): one (record, created) per item in order; an item
    whose (source, source_ref) is known returns the complaint it opened before, unchanged.
    New ones get their ``complaint`` leaf."""
    if not items:
        return []
    rows = [
        {
            "source": i.source,
            "source_ref": i.source_ref[:128],
            "case_id": i.case_id,
            "placement_id": i.placement_id,
            "agency_id": i.agency_id,
            "collector_id": i.collector_id,
            "event_id": i.event_id,
            "channel": i.channel[:32],
            "category": i.category,
            "summary_enc": i.summary_enc,
            "contact_at": i.contact_at,
            "received_at": i.received_at,
            "deadline_at": policy.deadline(i.received_at, i.channel, i.category),
            "extended": False,
            "state": "open",
            "reopened": 0,
            "revision": 1,
            "created_at": now,
            "updated_at": now,
            "updated_by": actor[:64],
        }
        for i in items
    ]
    keys = {(r["source"], r["source_ref"]) for r in rows}
    before = await _by_keys(conn, keys, now)
    fresh = [r for r in rows if (r["source"], r["source_ref"]) not in before]
    if fresh:
        await conn.execute(
            dialect_insert(conn, COMPLAINTS).on_conflict_do_nothing(
                index_elements=["source", "source_ref"]
            ),
            fresh,
        )
    after = await _by_keys(conn, keys, now)
    made = {k: v for k, v in after.items() if k not in before}
    await append_leaves(
        conn,
        [
            complaint_leaf(r, "open", actor, channel=r.channel, category=r.category)
            for r in made.values()
        ],
        now=now,
    )
    result = []
    seen: set[tuple[str, str]] = set()
    for r in rows:
        key = (str(r["source"]), str(r["source_ref"]))
        result.append((after[key], key in made and key not in seen))
        seen.add(key)
    return result


async def _by_keys(
    conn: AsyncConnection, keys: Iterable[tuple[object, object]], now: datetime
) -> dict[tuple[str, str], ComplaintRecord]:
    found: dict[tuple[str, str], ComplaintRecord] = {}
    wanted = sorted({(str(s), str(r)) for s, r in keys})
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = await conn.execute(
            select_complaints().where(sa.tuple_(K.source, K.source_ref).in_(chunk))
        )
        for row in rows:
            found[(row.source, row.source_ref)] = record_of(row, now)
    return found


async def on_arrival(
    conn: AsyncConnection,
    items: Sequence[tuple[str, int, AgencyEvent, bool]],
    *,
    policy: DeadlinePolicy = DEFAULT_POLICY,
    now: datetime,
) -> list[tuple[ComplaintRecord, bool]]:
    """Open a complaint for each applied ``complaint.received`` among (agency id, event id,
    event, applied), in the inbound transaction, due as ``policy`` (``[complaints]``) says;
    other events cost nothing. The source
    reference is the agency and its event id, so a repeated delivery (which inbound already
    answers as a duplicate) never opens a second one."""
    news = [
        NewComplaint(
            source="agency",
            source_ref=f"{agency_id}:{event_id}",
            channel=event.data.channel,
            category="other",
            received_at=event.timestamp,
            placement_id=event.data.placement_id,
            agency_id=agency_id,
            event_id=event_id,
        )
        for agency_id, event_id, event, applied in items
        if applied and isinstance(event, ComplaintReceived)
    ]
    if not news:
        return []
    return await insert_complaints(
        conn,
        await attribute(conn, news),
        policy=policy,
        actor="inbound",
        now=now,
    )


# -- counting ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComplaintTally:
    """One agency's complaints received in a period: how many, how many upheld (fully or in
    part), how many are overdue (waiting past their deadline now, or answered after it) and
    how many are still waiting for an answer."""

    received: int = 0
    upheld: int = 0
    overdue: int = 0
    open: int = 0

    def per_10k(self, placements: int) -> float | None:
        """Complaints received per 10,000 placements (None without placements)."""
        return None if placements <= 0 else self.received * 10_000 / placements

    def upheld_per_10k(self, placements: int) -> float | None:
        return None if placements <= 0 else self.upheld * 10_000 / placements


async def complaint_counts(
    conn: AsyncConnection, *, start: datetime, end: datetime, now: datetime | None = None
) -> dict[str, ComplaintTally]:
    """Per agency, the complaints received in ``[start, end)`` (one grouped query).
    ``now`` (default: ``end``) decides which waiting ones are past their deadline.
    Complaints held against no agency are left out."""
    at = now or end
    waiting = K.state.in_(sorted(OPEN_STATES))
    late = sa.or_(
        sa.and_(waiting, K.deadline_at < at),
        sa.and_(K.resolved_at.is_not(None), K.resolved_at > K.deadline_at),
    )
    rows = await conn.execute(
        sa.select(
            K.agency_id,
            sa.func.count(),
            sa.func.sum(sa.case((K.outcome.in_(["upheld", "partly_upheld"]), 1), else_=0)),
            sa.func.sum(sa.case((late, 1), else_=0)),
            sa.func.sum(sa.case((waiting, 1), else_=0)),
        )
        .where(K.received_at >= start, K.received_at < end, K.agency_id.is_not(None))
        .group_by(K.agency_id)
    )
    return {
        str(agency): ComplaintTally(int(n), int(up or 0), int(od or 0), int(op or 0))
        for agency, n, up, od, op in rows
    }


__all__ = [
    "DEFAULT_POLICY",
    "ComplaintFilter",
    "ComplaintRecord",
    "ComplaintTally",
    "DeadlinePolicy",
    "NewComplaint",
    "attribute",
    "attribute_each",
    "complaint_counts",
    "complaint_leaf",
    "get_complaint",
    "insert_complaints",
    "list_complaints",
    "on_arrival",
    "overdue_count",
    "record_of",
    "select_complaints",
]
