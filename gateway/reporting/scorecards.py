"""Agency scorecards: how each agency served the placements it received in a period, for
the periodic evaluation of outsourced collection that regulators require and for the
allocation weights ops set.

A scorecard covers the placements *placed* in ``[start, end)`` and follows them to now:

* volume: placements, the balance placed and collected per currency (the lender-received
  money attributed to them, gateway.reporting.stratified; an ``agency_remits`` agency's
  reconciled collections), the recovery rate (collected / placed, in basis points) and how
  many were recalled;
* service: acknowledgements and first activity within the agency's SLA, promises to pay
  kept, and deletions of ended placements' personal data confirmed in time
  (gateway.privacy.deletion), each as met / breached (an expectation still open and not yet due
  counts in neither) and an on-time rate in basis points;
* conduct: contact-rule violations (and work after a recall), reporting breaks (what they
  reported disagrees with our record or the money) and mismatches still open.

``score`` is pure: it turns the store's grouped counts into ``Scorecard`` rows; ``scorecards``
reads those counts with three grouped queries, whatever the number of placements.
"""

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from gateway.reporting.stratified import recovered_per_placement, recovery, remitting_agencies
from gateway.store.database import Database
from gateway.store.tables import Expectation, Mismatch, Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
P, X, M = PLACEMENTS.c, EXPECTATIONS.c, MISMATCHES.c

SERVICE = {
    "ack": "ack",
    "first_activity": "first_activity",
    "promise_payment": "promises",
    "deletion": "deletions",
}
"""Expectation kind → scorecard service line."""
CONDUCT = frozenset(
    {
        "contact_rule_violation",
        "activity_after_recall",
        "third_party_contact",
        "contact_during_hold",
        "contact_during_dispute",
    }
)
"""Mismatch kinds that are the agency's conduct toward debtors."""
REPORTING = frozenset(
    {
        "ack_balance_differs",
        "amount_mismatch",
        "currency_mismatch",
        "date_out_of_window",
        "illegal_transition",
        "over_collection",
        "payment_not_received",
        "payment_not_reported",
        "remittance_short",
        "statement_balance_drift",
        "statement_orphan",
        "statement_phantom",
        "statement_status_disagreement",
        "status_conflict",
        "unmatched_reversal",
    }
)
"""Mismatch kinds where the agency's reports disagree with our record or the money."""
UNRESOLVED = ("open", "investigating")
DEFAULT_DAYS = 30
"""A period left open is the placements of the last 30 days up to today (UTC)."""


@dataclass
class Service:
    """Expectations of one kind: met in time, breached, and the rate (None before any)."""

    met: int = 0
    breached: int = 0

    @property
    def on_time_bps(self) -> int | None:
        decided = self.met + self.breached
        return None if decided == 0 else self.met * 10_000 // decided


@dataclass
class Scorecard:
    agency_id: str
    placements: int = 0
    recalled: int = 0
    placed_minor: dict[str, int] = field(default_factory=dict)
    collected_minor: dict[str, int] = field(default_factory=dict)
    ack: Service = field(default_factory=Service)
    first_activity: Service = field(default_factory=Service)
    promises: Service = field(default_factory=Service)
    deletions: Service = field(default_factory=Service)
    contact_violations: int = 0
    reporting_breaks: int = 0
    open_mismatches: int = 0

    @property
    def recovery_bps(self) -> dict[str, int]:
        """Collected / placed per currency, in basis points."""
        return {
            currency: self.collected_minor.get(currency, 0) * 10_000 // placed
            for currency, placed in self.placed_minor.items()
            if placed > 0
        }

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["recovery_bps"] = self.recovery_bps
        for name in SERVICE.values():
            out[name]["on_time_bps"] = getattr(self, name).on_time_bps
        return out


def score(
    agency_ids: Iterable[str],
    placements: Iterable[tuple[str, str, int, int, int, int]],
    expectations: Iterable[tuple[str, str, str, int]],
    mismatches: Iterable[tuple[str, str, str, int]],
) -> list[Scorecard]:
    """Scorecards from grouped counts (pure):

    * placements: (agency, currency, placements, placed minor, collected minor, recalled);
    * expectations: (agency, kind, state, count);
    * mismatches: (agency, kind, state, count).

    Every agency in ``agency_ids`` gets a card, also with nothing placed; agencies only
    the store knows (removed from the configuration) are kept too.
    """
    cards: dict[str, Scorecard] = {a: Scorecard(a) for a in agency_ids}

    def card(agency_id: str) -> Scorecard:
        return cards.setdefault(agency_id, Scorecard(agency_id))

    for agency_id, currency, count, placed, collected, recalled in placements:
        c = card(agency_id)
        c.placements += count
        c.recalled += recalled
        c.placed_minor[currency] = c.placed_minor.get(currency, 0) + placed
        c.collected_minor[currency] = c.collected_minor.get(currency, 0) + collected
    for agency_id, kind, state, count in expectations:
        line = SERVICE.get(kind)
        if line is None:
            continue
        service: Service = getattr(card(agency_id), line)
        if state == "met":
            service.met += count
        elif state == "breached":
            service.breached += count
    for agency_id, kind, state, count in mismatches:
        c = card(agency_id)
        if kind in CONDUCT:
            c.contact_violations += count
        elif kind in REPORTING:
            c.reporting_breaks += count
        if state in UNRESOLVED:
            c.open_mismatches += count
    return sorted(cards.values(), key=lambda c: c.agency_id)


def placement_totals(
    where: sa.ColumnElement[bool],
) -> sa.Select[Any]:
    """Per (agency, currency) of the placements ``where`` selects: count, balance placed,
    collected, recalled (scorecards; allocation's performance factors)."""
    recalled = sa.func.sum(sa.case((P.recalled_at.is_not(None), 1), else_=0))
    return (
        sa.select(
            P.agency_id,
            P.currency,
            sa.func.count(),
            sa.func.sum(P.balance_minor),
            sa.func.sum(P.collected_minor),
            recalled,
        )
        .where(where)
        .group_by(P.agency_id, P.currency)
    )


async def scorecards(
    db: Database,
    agency_ids: Iterable[str],
    *,
    start: datetime,
    end: datetime,
    strategy: str | None = None,
) -> list[Scorecard]:
    """The scorecards of the placements placed in ``[start, end)`` (see module), only those
    allocation drew by ``strategy`` (champion or challenger) when one is given. Collected is
    the lender-received money attributed to the placements; with ``agency_ids`` a mapping of
    configurations, an ``agency_remits`` agency's is its reconciled ``collected_minor``."""
    in_period = sa.and_(P.placed_at >= start, P.placed_at < end)
    if strategy is not None:
        in_period = sa.and_(in_period, P.strategy == strategy)
    remitting = remitting_agencies(agency_ids if isinstance(agency_ids, Mapping) else None)
    received = recovered_per_placement(start, end)
    recalled = sa.func.sum(sa.case((P.recalled_at.is_not(None), 1), else_=0))
    async with db.snapshot() as conn:
        placed = (
            await conn.execute(
                sa.select(
                    P.agency_id,
                    P.currency,
                    sa.func.count(),
                    sa.func.sum(P.balance_minor),
                    sa.func.sum(recovery(received, remitting)),
                    recalled,
                )
                .select_from(PLACEMENTS.outerjoin(received, received.c.placement_id == P.id))
                .where(in_period)
                .group_by(P.agency_id, P.currency)
            )
        ).all()
        expected = (
            await conn.execute(
                sa.select(X.agency_id, X.kind, X.state, sa.func.count())
                .join(PLACEMENTS, P.id == X.placement_id)
                .where(in_period, X.agency_id == P.agency_id)
                .group_by(X.agency_id, X.kind, X.state)
            )
        ).all()
        found = (
            await conn.execute(
                sa.select(M.agency_id, M.kind, M.state, sa.func.count())
                .join(PLACEMENTS, P.id == M.placement_id)
                .where(in_period)
                .group_by(M.agency_id, M.kind, M.state)
            )
        ).all()
    return score(
        agency_ids,
        [
            (a, cur, int(n), int(pl or 0), int(co or 0), int(rc or 0))
            for a, cur, n, pl, co, rc in placed
        ],
        [(a, k, s, int(n)) for a, k, s, n in expected],
        [(a, k, s, int(n)) for a, k, s, n in found],
    )


def period(start: date | None, end: date | None, *, today: date) -> tuple[datetime, datetime]:
    """``[start, end)`` as UTC midnights: ``end`` defaults to tomorrow (today counts) and
    ``start`` to ``DEFAULT_DAYS`` before ``end``. ``ValueError`` when ``start`` is not before
    ``end``."""
    until = _midnight(end if end is not None else today + timedelta(days=1))
    since = _midnight(start) if start is not None else until - timedelta(days=DEFAULT_DAYS)
    if since >= until:
        raise ValueError(
            f"the period starts ({since:%Y-%m-%d}) on or after it ends ({until:%Y-%m-%d})"
        )
    return since, until


def report(cards: Iterable[Scorecard], start: datetime, end: datetime) -> dict[str, Any]:
    """The scorecards of a period as JSON (``agencies scorecard --json`` and the API)."""
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "agencies": [c.as_dict() for c in cards],
    }


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def rate(bps: int | None) -> str:
    """``12.34%`` from basis points; ``-`` when there is nothing to rate yet."""
    return "-" if bps is None else f"{bps / 100:.2f}%"


__all__ = [
    "CONDUCT",
    "DEFAULT_DAYS",
    "REPORTING",
    "Scorecard",
    "Service",
    "period",
    "rate",
    "report",
    "score",
    "scorecards",
]
