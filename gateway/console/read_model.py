"""The read side of the ops console: what the dashboard, the mismatch queue, a mismatch and
an agency's page show (a case's timeline is in gateway.console.timeline). The HTML pages, the
JSON API and the CLI all read through here, so all three say the same thing.

Every function takes an open read-only connection and returns plain dicts and lists
(datetimes are serialised by the caller). Queries are set-based: a page costs a fixed number
of queries, whatever the number of rows behind it.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.console.timeline import Row, history, loads, rows
from gateway.dispatch.circuit import CircuitBreaker
from gateway.errors import NotFound
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.privacy import deletion as privacy
from gateway.resolutions.facts import load_facts
from gateway.resolutions.rules import MismatchFilter, available_actions
from gateway.store.console_tables import MismatchAssignment
from gateway.store.tables import (
    AgencyEventRow,
    AgencyStatus,
    DeliveryAttempt,
    Expectation,
    InboundMessage,
    Mismatch,
    OutboxItem,
    Placement,
)

MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]
ASSIGNMENTS = MismatchAssignment.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
M, P, OB, A, EX = MISMATCHES.c, PLACEMENTS.c, OUTBOX.c, ATTEMPTS.c, EXPECTATIONS.c

UNRESOLVED: Final = ("open", "investigating")
SLA_KINDS: Final = ("missing_ack", "missing_activity", "broken_promise", "deletion_unconfirmed")
SEVERITY_RANK: Final = {"high": 3, "medium": 2, "low": 1}
SORTS: Final[dict[str, sa.ColumnElement[Any]]] = {
    "id": M.id,
    "created": M.created_at,
    "updated": M.updated_at,
    "kind": M.kind,
    "severity": sa.case(SEVERITY_RANK, value=M.severity, else_=0),
    "agency": M.agency_id,
    "state": M.state,
    # No NULL in a sort key: both databases order alike and "next" is a plain keyset step.
    "delta": sa.func.coalesce(M.delta_minor, 0),
}
MAX_PAGE_SIZE: Final = 200

Circuits = Mapping[str, CircuitBreaker]


async def _tuples(conn: AsyncConnection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in (await conn.execute(query)).all()]


async def _pairs(conn: AsyncConnection, query: sa.Select[Any]) -> dict[Any, Any]:
    return {k: v for k, v in (await conn.execute(query)).all()}


def _circuit(circuits: Circuits | None, agency_id: str) -> Row:
    if circuits is None or agency_id not in circuits:
        return {"state": "unknown", "consecutive_failures": None}
    breaker = circuits[agency_id]
    return {"state": breaker.state, "consecutive_failures": breaker.consecutive_failures}


async def _agency_counts(conn: AsyncConnection) -> Row:
    """Per-agency counts shared by the dashboard and the agency pages."""
    return {
        "open_placements": await _pairs(
            conn,
            sa.select(P.agency_id, sa.func.count())
            .where(P.state.in_(OPEN_PLACEMENT_STATES))
            .group_by(P.agency_id),
        ),
        "mismatches": await _pairs(
            conn,
            sa.select(M.agency_id, sa.func.count())
            .where(M.state.in_(UNRESOLVED))
            .group_by(M.agency_id),
        ),
        "backlog": {
            (a, s): n
            for a, s, n in await _tuples(
                conn,
                sa.select(OB.agency_id, OB.state, sa.func.count())
                .where(OB.state != "delivered")
                .group_by(OB.agency_id, OB.state),
            )
        },
        "status": {r.agency_id: r for r in await conn.execute(sa.select(STATUS))},
    }


def _agency_row(agency: AgencyConfig, counts: Row, circuits: Circuits | None) -> Row:
    backlog, status = counts["backlog"], counts["status"].get(agency.id)
    return {
        "agency_id": agency.id,
        "name": agency.name,
        "channel": agency.channel,
        "enabled": agency.enabled,
        "open_placements": counts["open_placements"].get(agency.id, 0),
        "capacity": agency.capacity.max_open_placements,
        "open_mismatches": counts["mismatches"].get(agency.id, 0),
        "pending": backlog.get((agency.id, "pending"), 0) + backlog.get((agency.id, "leased"), 0),
        "dead": backlog.get((agency.id, "dead"), 0),
        "unknown": backlog.get((agency.id, "unknown"), 0),
        "endpoint_disabled": bool(status.endpoint_disabled) if status else False,
        "disabled_reason": status.disabled_reason if status else None,
        "circuit": _circuit(circuits, agency.id),
    }


async def agencies_overview(
    conn: AsyncConnection, agencies: Mapping[str, AgencyConfig], circuits: Circuits | None
) -> list[Row]:
    """Each agency: open placements against capacity, backlog, endpoint, circuit, mismatches."""
    counts = await _agency_counts(conn)
    return [_agency_row(a, counts, circuits) for a in agencies.values()]


def local_midnight(now: datetime, zone: tzinfo) -> datetime:
    """The start of ``now``'s day in ``zone`` (the lender's), as an aware time: at 23:30 UTC
    it is already tomorrow in Asia/Shanghai, so "today" began 30 minutes ago."""
    local = now.astimezone(zone)
    return datetime.combine(local.date(), time(0), tzinfo=zone).astimezone(UTC)


async def dashboard(
    conn: AsyncConnection,
    agencies: Mapping[str, AgencyConfig],
    circuits: Circuits | None,
    *,
    now: datetime,
    zone: tzinfo,
) -> Row:
    """Open mismatches by kind and agency, today's deliveries and failures (today: since
    midnight in ``zone``, the lender's time zone), dead and unknown items, and the endpoint
    and circuit state of each agency."""
    unresolved = M.state.in_(UNRESOLVED)
    by_kind_agency = await _tuples(
        conn,
        sa.select(M.kind, M.agency_id, sa.func.count())
        .where(unresolved)
        .group_by(M.kind, M.agency_id),
    )
    severity = await _pairs(
        conn, sa.select(M.severity, sa.func.count()).where(unresolved).group_by(M.severity)
    )
    midnight = local_midnight(now, zone)
    today = await _tuples(
        conn,
        sa.select(A.agency_id, A.outcome, sa.func.count())
        .where(A.started_at >= midnight)
        .group_by(A.agency_id, A.outcome),
    )
    kinds = sorted({kind for kind, _a, _n in by_kind_agency})
    overview = await agencies_overview(conn, agencies, circuits)
    for row in overview:
        agency_id = row["agency_id"]
        row["by_kind"] = {k: n for k, a, n in by_kind_agency if a == agency_id}
        row["delivered_today"] = sum(n for a, o, n in today if a == agency_id and o == "delivered")
        row["failed_today"] = sum(n for a, o, n in today if a == agency_id and o != "delivered")
    return {
        "as_of": now,
        "today_since": midnight,
        "open_mismatches": sum(n for _k, _a, n in by_kind_agency),
        "by_severity": {s: severity.get(s, 0) for s in SEVERITY_RANK},
        "kinds": kinds,
        "by_kind": {k: sum(n for kk, _a, n in by_kind_agency if kk == k) for k in kinds},
        "agencies": overview,
        "delivered_today": sum(r["delivered_today"] for r in overview),
        "failed_today": sum(r["failed_today"] for r in overview),
        "dead": sum(r["dead"] for r in overview),
        "unknown": sum(r["unknown"] for r in overview),
    }


def _queue_select() -> sa.Select[Any]:
    return (
        sa.select(
            M.id,
            M.kind,
            M.severity,
            M.state,
            M.agency_id,
            M.placement_id,
            M.delta_minor,
            M.detail,
            M.rule,
            M.rule_version,
            M.ours,
            M.theirs,
            M.created_at,
            M.updated_at,
            P.case_id,
            P.currency,
            ASSIGNMENTS.c.assignee,
        )
        .outerjoin(PLACEMENTS, P.id == M.placement_id)
        .outerjoin(ASSIGNMENTS, ASSIGNMENTS.c.mismatch_id == M.id)
    )


def queue_query(
    target: MismatchFilter, *, sort: str = "id", descending: bool = True
) -> sa.Select[Any]:
    """Every mismatch in ``target``, in the queue's order: what ``queue`` pages through and
    the export (gateway.console.list_exports) streams whole."""
    key = SORTS.get(sort, M.id)
    order = [key.desc(), M.id.desc()] if descending else [key.asc(), M.id.asc()]
    return _queue_select().where(*target.clauses()).order_by(*order)


async def queue(
    conn: AsyncConnection,
    target: MismatchFilter,
    *,
    sort: str = "id",
    descending: bool = True,
    page: int = 1,
    per_page: int = 50,
) -> Row:
    """One page of the mismatches in ``target``, with the total and the paging facts."""
    per_page = max(1, min(per_page, MAX_PAGE_SIZE))
    clauses = target.clauses()
    total, upto = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.max(M.id)).select_from(MISMATCHES).where(*clauses)
        )
    ).one()
    pages = max(1, -(-total // per_page))
    page = max(1, min(page, pages))
    sort = sort if sort in SORTS else "id"
    items = await rows(
        conn,
        queue_query(target, sort=sort, descending=descending)
        .limit(per_page)
        .offset((page - 1) * per_page),
    )
    for item in items:
        item["ours"], item["theirs"] = loads(item["ours"]), loads(item["theirs"])
    return {
        "total": total,
        "upto_id": upto,
        "page": page,
        "pages": pages,
        "per_page": per_page,
        "sort": sort,
        "descending": descending,
        "items": items,
    }


async def mismatch_detail(conn: AsyncConnection, mismatch_id: int) -> Row:
    """A mismatch with both sides, what it points at, its history and the actions open to it."""
    found = await rows(conn, sa.select(MISMATCHES).where(M.id == mismatch_id))
    if not found:
        raise NotFound(f"mismatch {mismatch_id} does not exist")
    row = found[0]
    facts = (await load_facts(conn, [mismatch_id]))[mismatch_id]
    placement = await rows(conn, sa.select(PLACEMENTS).where(P.id == row["placement_id"]))
    event = await rows(
        conn,
        sa.select(EVENTS, INBOUND.c.external_id, INBOUND.c.body_sha256, INBOUND.c.channel)
        .join(INBOUND, INBOUND.c.id == EVENTS.c.inbound_id)
        .where(EVENTS.c.id == row["event_id"]),
    )
    packet = await rows(
        conn,
        sa.select(*(c for c in OUTBOX.c if c.name != "payload")).where(OB.id == row["outbox_id"]),
    )
    return {
        **{k: v for k, v in row.items() if k not in ("ours", "theirs")},
        "ours": loads(row["ours"]),
        "theirs": loads(row["theirs"]),
        "case_id": facts.case_id,
        "assignee": facts.assignee,
        "placement": placement[0] if placement else None,
        "event": {**event[0], "data": loads(event[0]["data"])} if event else None,
        "packet": packet[0] if packet else None,
        "resendable_outbox_ids": list(facts.resendable),
        "actions_available": available_actions(facts),
        "history": await history(conn, [mismatch_id]),
    }


async def agency_page(
    conn: AsyncConnection,
    agency: AgencyConfig,
    circuits: Circuits | None,
    *,
    now: datetime,
    attempts_limit: int = 50,
) -> Row:
    """Health over the last 24 hours, backlog, recent attempts and SLA breaches of one agency."""
    [overview] = await agencies_overview(conn, {agency.id: agency}, circuits)
    day = await _tuples(
        conn,
        sa.select(A.outcome, sa.func.count(), sa.func.avg(A.duration_ms))
        .where(A.agency_id == agency.id, A.started_at >= now - timedelta(hours=24))
        .group_by(A.outcome),
    )
    attempts_24h = sum(n for _o, n, _d in day)
    delivered_24h = sum(n for o, n, _d in day if o == "delivered")
    delivered_ms = [d for o, _n, d in day if o == "delivered" and d is not None]
    last_delivery = (
        await conn.execute(
            sa.select(sa.func.max(A.started_at)).where(
                A.agency_id == agency.id, A.outcome == "delivered"
            )
        )
    ).scalar()
    recent = await rows(
        conn,
        sa.select(
            A.id, A.started_at, A.attempt_no, A.outcome, A.http_status, A.duration_ms, A.error,
            A.outbox_id, OB.placement_id, OB.packet_type,
        )
        .join(OUTBOX, OB.id == A.outbox_id)
        .where(A.agency_id == agency.id)
        .order_by(A.id.desc())
        .limit(attempts_limit),
    )  # fmt: skip
    sla = M.kind.in_(SLA_KINDS)
    breaches = await rows(
        conn, _queue_select().where(M.agency_id == agency.id, sla).order_by(M.id.desc()).limit(50)
    )
    open_breaches = await _pairs(
        conn,
        sa.select(M.kind, sa.func.count())
        .where(M.agency_id == agency.id, sla, M.state.in_(UNRESOLVED))
        .group_by(M.kind),
    )
    deletions = await _pairs(
        conn,
        sa.select(EX.state, sa.func.count())
        .where(EX.agency_id == agency.id, EX.kind == privacy.KIND)
        .group_by(EX.state),
    )
    return {
        **overview,
        "deletions": {state: deletions.get(state, 0) for state in ("open", "met", "breached")},
        "sla": {
            "ack_hours": agency.sla.ack_hours,
            "first_activity_hours": agency.sla.first_activity_hours,
        },
        "health": {
            "attempts_24h": attempts_24h,
            "delivered_24h": delivered_24h,
            "success_rate_24h": delivered_24h / attempts_24h if attempts_24h else None,
            "avg_delivery_ms_24h": round(float(delivered_ms[0])) if delivered_ms else None,
            "last_delivery_at": last_delivery,
            "by_outcome_24h": {o: n for o, n, _d in day},
        },
        "recent_attempts": recent,
        "sla_breaches_open": {k: open_breaches.get(k, 0) for k in SLA_KINDS},
        "sla_breaches": breaches,
    }


__all__ = [
    "MAX_PAGE_SIZE",
    "SLA_KINDS",
    "SORTS",
    "Circuits",
    "agencies_overview",
    "agency_page",
    "dashboard",
    "local_midnight",
    "mismatch_detail",
    "queue",
    "queue_query",
]
