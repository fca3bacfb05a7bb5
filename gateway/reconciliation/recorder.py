"""Reconciliation against the store: applies rule decisions, keeps expectations and raises
mismatches. The rules themselves are in gateway.reconciliation.event_rules; the SLA checks that
breach expectations past due are in gateway.reconciliation.sla; the effects of deliveries are in
gateway.dispatch.hooks. An event that ends a case's open placement moves the case too
(gateway.cases.outcomes), in the same transaction.
"""

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cases.outcomes import PlacementEnding, follow_outcomes, placement_ending
from gateway.complaints import store as complaint_store
from gateway.concessions import requests as concession_requests
from gateway.conduct import arrival as conduct_arrival
from gateway.config.settings import GatewaySettings
from gateway.reconciliation.contact_rules import ContactRules
from gateway.reconciliation.event_rules import assess, event_money, event_placement_id
from gateway.reconciliation.kinds import (
    RULE_VERSION,
    SEVERITY,
    MismatchDraft,
    NewExpectation,
    PlacementView,
)
from gateway.settlement import answers as settlement_answers, disputes as attribution_disputes
from gateway.store.database import dialect_insert
from gateway.store.driver_sql import execute_rows, insert_numbered
from gateway.store.tables import AgencyEventRow, Expectation, Mismatch, Placement
from gateway.store.types import UtcDateTime
from schemas.base import Money
from schemas.events import (
    AgencyEvent,
    PaymentReported,
    PaymentReversed,
    PromiseMade,
    StatementSubmitted,
)

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
P, E, X, M = PLACEMENTS.c, EVENTS.c, EXPECTATIONS.c, MISMATCHES.c

# The statements of every group commit, built once: building the expressions (operators,
# coercions, cache keys) cost more than SQLite's work on them.
_VIEWS_SQL = sa.select(
    P.id,
    P.case_id,
    P.agency_id,
    P.state,
    P.currency,
    P.balance_minor,
    P.collected_minor,
    P.acked_balance_minor,
    P.agency_case_ref,
    P.placed_at,
).where(P.id.in_(sa.bindparam("ids", expanding=True)))
_PAYMENTS_SQL = (
    sa.select(E.placement_id, E.event_type, E.ref, E.amount_minor)
    .where(
        E.placement_id.in_(sa.bindparam("ids", expanding=True)),
        E.applied,
        E.event_type.in_(["payment.reported", "payment.reversed"]),
    )
    .order_by(E.id)
)
_UPDATE_PLACEMENT_SQL = (
    PLACEMENTS.update()
    .where(P.id == sa.bindparam("pid"))
    .values(
        state=sa.bindparam("st"),
        collected_minor=sa.bindparam("col"),
        acked_balance_minor=sa.bindparam("ack"),
        agency_case_ref=sa.bindparam("ref"),
        updated_at=sa.bindparam("now", type_=UtcDateTime()),
    )
)
_MEET_SQL = (
    EXPECTATIONS.update()
    .where(
        X.placement_id == sa.bindparam("b_pid"),
        X.kind == sa.bindparam("b_kind"),
        sa.or_(X.state == "open", X.state == "breached"),
        # Bounds: one payment meets a promise on its own only when it is large enough and
        # inside the window; partial payments are summed by the SLA check.
        sa.or_(
            X.amount_lower_minor.is_(None),
            X.amount_lower_minor <= sa.bindparam("b_amount", type_=sa.BigInteger()),
        ),
        sa.or_(
            X.window_start.is_(None),
            X.window_start <= sa.bindparam("b_at", type_=UtcDateTime()),
        ),
    )
    .values(state="met", met_by_event_id=sa.bindparam("b_eid"))
)
_INSERT_EXPECTATIONS = {
    dialect: insert(EXPECTATIONS).on_conflict_do_nothing(
        index_elements=["placement_id", "kind", "ref"]
    )
    for dialect, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    agency_id: str
    inbound_id: int
    event: AgencyEvent
    received_at: datetime


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


async def insert_mismatches(
    conn: AsyncConnection,
    drafts: Iterable[tuple[str, MismatchDraft, str, int | None, int | None]],
    *,
    now: datetime,
) -> int:
    """Insert (dedupe key, draft, agency, event id, outbox id); a known dedupe key is skipped.
    Returns how many were new."""
    return sum((await insert_mismatches_by_kind(conn, drafts, now=now)).values())


async def insert_mismatches_by_kind(
    conn: AsyncConnection,
    drafts: Iterable[tuple[str, MismatchDraft, str, int | None, int | None]],
    *,
    now: datetime,
    batch: int = 5_000,
) -> Counter[str]:
    """``insert_mismatches``, counting the new ones by kind."""
    if conn.dialect.name == "sqlite":
        # A plain executemany of tuples costs a fraction of RETURNING every row through
        # SQLAlchemy. We hold SQLite's only write lock (BEGIN IMMEDIATE), so the new rows
        # are exactly those numbered past the highest id before, in input order as before.
        stamp = MISMATCHES.c.created_at.type.dialect_impl(conn.dialect).bind_processor(
            conn.dialect
        )(now)
        values = [
            (
                key[:128],
                d.kind,
                d.severity,
                "open",
                agency_id,
                d.placement_id,
                event_id,
                outbox_id,
                d.kind,
                RULE_VERSION,
                _dumps(d.ours),
                _dumps(d.theirs),
                d.delta_minor,
                d.detail[:1000],
                stamp,
                stamp,
            )
            for key, d, agency_id, event_id, outbox_id in drafts
        ]
        if not values:
            return Counter()
        before = (await conn.execute(sa.select(sa.func.max(M.id)))).scalar() or 0
        await conn.exec_driver_sql(
            "INSERT INTO mismatches (dedupe_key, kind, severity, state, agency_id, "
            "placement_id, event_id, outbox_id, rule, rule_version, ours, theirs, delta_minor, "
            "detail, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
            values,
        )
        added = await conn.execute(
            sa.select(M.kind, sa.func.count()).where(M.id > before).group_by(M.kind)
        )
        return Counter({kind: n for kind, n in added.all()})
    rows = [
        {
            "dedupe_key": key[:128],
            "kind": d.kind,
            "severity": d.severity,
            "state": "open",
            "agency_id": agency_id,
            "placement_id": d.placement_id,
            "event_id": event_id,
            "outbox_id": outbox_id,
            "rule": d.kind,
            "rule_version": RULE_VERSION,
            "ours": _dumps(d.ours),
            "theirs": _dumps(d.theirs),
            "delta_minor": d.delta_minor,
            "detail": d.detail[:1000],
            "created_at": now,
            "updated_at": now,
        }
        for key, d, agency_id, event_id, outbox_id in drafts
    ]
    new: Counter[str] = Counter()
    stmt = dialect_insert(conn, MISMATCHES).on_conflict_do_nothing(index_elements=["dedupe_key"])
    for start in range(0, len(rows), batch):
        result = await conn.execute(stmt.returning(M.kind), rows[start : start + batch])
        new.update(result.scalars().all())
    return new


async def load_views(
    conn: AsyncConnection, placement_ids: Iterable[str]
) -> dict[str, PlacementView]:
    ids = sorted(set(placement_ids))
    if not ids:
        return {}
    rows = (await conn.execute(_VIEWS_SQL, {"ids": ids})).all()
    payments: dict[str, dict[str, int]] = {}
    pay_rows = await conn.execute(_PAYMENTS_SQL, {"ids": ids})
    for pid, etype, ref, amount in pay_rows.all():
        book = payments.setdefault(pid, {})
        if etype == "payment.reported":
            book[ref] = amount
        elif book.get(ref, 0) > amount:
            book[ref] -= amount  # a partial reversal
        else:
            book.pop(ref, None)
    return {
        r.id: PlacementView(
            id=r.id,
            case_id=r.case_id,
            agency_id=r.agency_id,
            state=r.state,
            currency=r.currency,
            balance_minor=r.balance_minor,
            collected_minor=r.collected_minor,
            acked_balance_minor=r.acked_balance_minor,
            agency_case_ref=r.agency_case_ref,
            payments=tuple(payments.get(r.id, {}).items()),
            placed_at=r.placed_at,
        )
        for r in rows
    }


def _ref(event: AgencyEvent) -> str | None:
    if isinstance(event, PaymentReported | PaymentReversed):
        return event.data.payment_id
    if isinstance(event, PromiseMade):
        return event.data.promise_id
    if isinstance(event, StatementSubmitted):
        return event.data.statement_id
    return None


def _meets_at(event: AgencyEvent) -> datetime:
    return event.data.paid_at if isinstance(event, PaymentReported) else event.timestamp


@dataclass(frozen=True, slots=True)
class ArrivalPolicy:
    """The lender's rules judged as events arrive, on every channel: quiet hours and caps
    (``contact_rules``; None leaves them to the batch run) and complaint deadlines."""

    contact_rules: ContactRules | None = None
    complaints: complaint_store.DeadlinePolicy = field(
        default_factory=lambda: complaint_store.DEFAULT_POLICY
    )

    @classmethod
    def of(cls, settings: GatewaySettings) -> "ArrivalPolicy":
        """``[reconciliation]``'s contact rules and ``[complaints]``' deadlines."""
        zone = ZoneInfo(settings.reconciliation.timezone)
        return cls(
            ContactRules.from_settings(settings.reconciliation),
            complaint_store.DeadlinePolicy.of(settings.complaints, zone),
        )


DEFAULT_ARRIVAL = ArrivalPolicy()
"""Without the lender's settings (tools replaying stored files): caps and quiet hours are
left to the batch run and complaints get the statutory 15 days in Shanghai time."""


async def apply_events(
    conn: AsyncConnection,
    incoming: Sequence[IncomingEvent],
    *,
    now: datetime,
    policy: ArrivalPolicy | None = None,
    views: Mapping[str, PlacementView] | None = None,
) -> list[int]:
    """Reconcile events in order and write everything in the caller's transaction.

    Contact attempts are judged for conduct as they arrive (gateway.conduct.arrival); with
    ``policy.contact_rules`` also for quiet hours and caps, else those are left to the batch
    run. A ``complaint.received`` opens a complaint with ``policy.complaints``' deadline.
    ``views`` are the placements as ``load_views`` read them in this transaction, when the
    caller already did (at least every placement the events name); None reads them here.
    Returns the new agency event ids, in input order.
    """
    policy = policy or DEFAULT_ARRIVAL
    if views is None:
        views = await load_views(
            conn, (pid for i in incoming if (pid := event_placement_id(i.event)) is not None)
        )
    original = dict(views)
    views = dict(views)
    event_rows = []
    decisions = []
    befores = []
    named: list[tuple[str | None, Money | None]] = []  # (placement id, money) per event
    endings: list[PlacementEnding] = []
    for item in incoming:
        pid = event_placement_id(item.event)
        money = event_money(item.event)
        named.append((pid, money))
        before = views.get(pid) if pid else None
        befores.append(before)
        decision = assess(item.event, item.agency_id, before)
        if decision.applied and decision.placement is not None:
            views[decision.placement.id] = decision.placement
            if (ending := placement_ending(item.event, before, decision.placement)) is not None:
                endings.append(ending)
        decisions.append(decision)
        event_rows.append(
            {
                "inbound_id": item.inbound_id,
                "agency_id": item.agency_id,
                "placement_id": pid,
                "event_type": item.event.type,
                "occurred_at": item.event.timestamp,
                "ref": _ref(item.event),
                "amount_minor": money.amount_minor if money else None,
                "currency": money.currency if money else None,
                "data": item.event.data.model_dump_json(),
                "applied": decision.applied,
                "received_at": item.received_at,
            }
        )
    event_ids = await insert_numbered(conn, EVENTS, event_rows)

    changed = [v for pid, v in views.items() if original.get(pid) != v]
    if changed:
        await execute_rows(
            conn,
            _UPDATE_PLACEMENT_SQL,
            [
                {
                    "pid": v.id,
                    "st": v.state,
                    "col": v.collected_minor,
                    "ack": v.acked_balance_minor,
                    "ref": v.agency_case_ref,
                    "now": now,
                }
                for v in changed
            ],
        )
    await follow_outcomes(conn, endings, now=now)
    meets = []
    new_expectations = []
    mismatches: list[concession_requests.MismatchRow] = []
    for item, decision, event_id, (pid, money) in zip(
        incoming, decisions, event_ids, named, strict=True
    ):
        for kind in decision.meets:
            meets.append(
                {
                    "b_pid": pid,
                    "b_kind": kind,
                    "b_eid": event_id,
                    "b_amount": money.amount_minor if money else None,
                    "b_at": _meets_at(item.event),
                }
            )
        for exp in decision.new_expectations:
            new_expectations.append(expectation_row(pid or "", item.agency_id, exp, now))
        for draft in decision.mismatches:
            mismatches.append(
                (f"{draft.kind}:event:{event_id}", draft, item.agency_id, event_id, None)
            )
    if meets:
        await execute_rows(conn, _MEET_SQL, meets)
    await insert_expectation_rows(conn, new_expectations)
    mismatches += await concession_requests.on_arrival(
        conn,
        [
            (i.agency_id, eid, i.event, b, d.applied)
            for i, eid, b, d in zip(incoming, event_ids, befores, decisions, strict=True)
        ],
        now=now,
    )
    mismatches += await attribution_disputes.on_arrival(
        conn,
        [
            (i.agency_id, eid, i.event, d.applied)
            for i, eid, d in zip(incoming, event_ids, decisions, strict=True)
        ],
        now=now,
    )
    mismatches += await settlement_answers.on_arrival(
        conn,
        [
            (i.agency_id, eid, i.event, d.applied)
            for i, eid, d in zip(incoming, event_ids, decisions, strict=True)
        ],
        now=now,
    )
    contacts = [
        (i.agency_id, eid, i.event, b, d.applied)
        for i, eid, b, d in zip(incoming, event_ids, befores, decisions, strict=True)
        if i.event.type == "contact.attempted"
    ]
    if contacts:
        mismatches += await conduct_arrival.on_arrival(
            conn, contacts, rules=policy.contact_rules, now=now
        )
    await complaint_store.on_arrival(
        conn,
        [
            (i.agency_id, eid, i.event, d.applied)
            for i, eid, d in zip(incoming, event_ids, decisions, strict=True)
        ],
        policy=policy.complaints,
        now=now,
    )
    await insert_mismatches(conn, mismatches, now=now)
    return event_ids


def expectation_row(
    placement_id: str, agency_id: str, exp: NewExpectation, now: datetime
) -> dict[str, object]:
    return {
        "placement_id": placement_id,
        "agency_id": agency_id,
        "kind": exp.kind,
        "ref": exp.ref,
        "due_at": exp.due_at,
        "amount_minor": exp.amount_minor,
        "amount_lower_minor": exp.amount_lower_minor,
        "amount_upper_minor": exp.amount_upper_minor,
        "currency": exp.currency,
        "window_start": exp.window_start,
        "state": "open",
        "created_at": now,
    }


async def insert_expectations(
    conn: AsyncConnection, rows: Sequence[tuple[str, str, NewExpectation]], *, now: datetime
) -> None:
    """Insert (placement id, agency id, expectation); an existing (placement, kind, ref)
    is left alone."""
    await insert_expectation_rows(
        conn, [expectation_row(pid, agency, exp, now) for pid, agency, exp in rows]
    )


async def insert_expectation_rows(
    conn: AsyncConnection, rows: Sequence[Mapping[str, object]]
) -> None:
    """Insert rows of ``expectation_row``'s shape; an existing (placement, kind, ref) is
    left alone."""
    dialect = "sqlite" if conn.dialect.name == "sqlite" else "postgresql"  # dialect_insert's
    await execute_rows(conn, _INSERT_EXPECTATIONS[dialect], rows)


__all__ = [
    "DEFAULT_ARRIVAL",
    "SEVERITY",
    "ArrivalPolicy",
    "IncomingEvent",
    "apply_events",
    "expectation_row",
    "insert_expectation_rows",
    "insert_expectations",
    "insert_mismatches",
    "insert_mismatches_by_kind",
    "load_views",
]
