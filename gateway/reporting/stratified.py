"""Fair scorecards from the store: recovery on the money the lender received, compared within
strata, champion against challenger, roll and cure rates, cost of collection, vintage curves.

What is measured (the statistics are in gateway.reporting.strata):

* **Recovered** of a placement: the lender receipts attributed to it (``attributions`` rows
  with rule ``held``, ``grace_old`` or ``grace_shared``, whatever their state: a disputed row
  is still money received, its commission is what is withheld), never the agency's own
  figure. An agency under ``settlement.money_model = "agency_remits"`` collects the money
  itself and remits it; there the measure is its reconciled ``collected_minor`` as before.
* **Strata**: currency, bucket at placement (the allocation decision's bucket, else the
  case's), balance band of the placed balance (``[scorecards] balance_bands_minor``) and
  vintage month (month of ``placed_at``, UTC).
* **Cured**: the placement ended ``closed`` with its case ``closed`` (paid in full or
  settled), or the money attributed to it reached its placed balance. **Rolled**: the case
  moved on: an approved escalation to the legal tier of this placement, or a later placement
  of the case on another tier.
* **Cost of collection**: commission on the statement lines of the placements (every
  statement revision but the superseded ones; before/without month floors, ceilings and
  adjustments) plus the legal fees the agency advanced on their cases, over recovered.

Each figure is one grouped SQLAlchemy Core query (SQLite and PostgreSQL alike); months and
bands are CASE expressions over bound UTC boundaries, so no dialect date function is used.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.config.settings import ScorecardsSection
from gateway.reporting.strata import (
    Cell,
    Comparison,
    Contrast,
    Curve,
    Stratum,
    band_labels,
    compare,
    contrast,
    curves,
    month_label,
)
from gateway.store.case_tables import AllocationDecision, Escalation
from gateway.store.database import Database
from gateway.store.settlement_tables import Attribution
from gateway.store.statement_tables import SettlementFee, SettlementLine, SettlementStatement
from gateway.store.tables import Case, Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
DECISIONS = AllocationDecision.__table__  # type: ignore[attr-defined]
ESCALATIONS = Escalation.__table__  # type: ignore[attr-defined]
ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
LINES = SettlementLine.__table__  # type: ignore[attr-defined]
STATEMENTS = SettlementStatement.__table__  # type: ignore[attr-defined]
FEES = SettlementFee.__table__  # type: ignore[attr-defined]
P, C, DE, A = PLACEMENTS.c, CASES.c, DECISIONS.c, ATTRIBUTIONS.c

ATTRIBUTED = ("held", "grace_old", "grace_shared", "moved")
"""Attribution rules that credit a placement (``unattributable`` credits none; ``moved`` is a
share the lender moved after a dispute, gateway.settlement.disputes)."""


@dataclass(frozen=True, slots=True)
class Flow:
    """Where an agency's placements went, and what collecting cost, in one currency."""

    agency_id: str
    currency: str
    placements: int
    cured: int
    rolled: int
    recovered_minor: int
    commission_minor: int = 0
    fees_minor: int = 0
    complaints: int | None = None
    """Complaints received in the period (all currencies: on the agency's first currency)."""
    complaints_per_10k: float | None = None

    @property
    def cure_bps(self) -> int | None:
        return None if self.placements == 0 else self.cured * 10_000 // self.placements

    @property
    def roll_bps(self) -> int | None:
        return None if self.placements == 0 else self.rolled * 10_000 // self.placements

    @property
    def cost_bps(self) -> int | None:
        """(commission + fees) / recovered, basis points; None with nothing recovered."""
        if self.recovered_minor <= 0:
            return None
        return (self.commission_minor + self.fees_minor) * 10_000 // self.recovered_minor

    def as_dict(self) -> dict[str, Any]:
        return {
            "agency_id": self.agency_id,
            "currency": self.currency,
            "placements": self.placements,
            "cured": self.cured,
            "rolled": self.rolled,
            "cure_bps": self.cure_bps,
            "roll_bps": self.roll_bps,
            "recovered_minor": self.recovered_minor,
            "commission_minor": self.commission_minor,
            "fees_minor": self.fees_minor,
            "cost_bps": self.cost_bps,
            "complaints": self.complaints,
            "complaints_per_10k": self.complaints_per_10k,
        }


@dataclass(frozen=True, slots=True)
class StratifiedReport:
    start: datetime
    end: datetime
    settings: ScorecardsSection
    comparisons: list[Comparison]
    contrasts: list[Contrast]
    flows: list[Flow]
    remitting: tuple[str, ...] = field(default_factory=tuple)
    """Agencies measured on their reconciled collections (``agency_remits``)."""

    def of(self, agency_id: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.agency_id == agency_id]

    def flows_of(self, agency_id: str) -> list[Flow]:
        return [f for f in self.flows if f.agency_id == agency_id]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": {"from": self.start.isoformat(), "to": self.end.isoformat()},
            "method": {
                "balance_bands": band_labels(self.settings.balance_bands_minor),
                "min_stratum_placements": self.settings.min_stratum_placements,
                "confidence": self.settings.confidence,
                "remitting_agencies": list(self.remitting),
            },
            "comparisons": [c.as_dict() for c in self.comparisons],
            "champion_challenger": [c.as_dict() for c in self.contrasts],
            "flows": [f.as_dict() for f in self.flows],
        }


def remitting_agencies(agencies: Mapping[str, AgencyConfig] | None) -> tuple[str, ...]:
    if not agencies:
        return ()
    return tuple(
        sorted(a for a, cfg in agencies.items() if cfg.settlement.money_model == "agency_remits")
    )


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def month_case(column: Any, first: int, last: int, *, timestamps: bool) -> sa.ColumnElement[int]:
    """The month index of ``column`` (year·12 + month - 1) for months ``first..last``, as a
    CASE over bound boundaries (a value before ``first`` is ``first``, after ``last`` is
    ``last``)."""
    whens = []
    for index in range(first, last):
        boundary = _month_start(index + 1)
        bound: date | datetime = (
            datetime.combine(boundary, time(0), tzinfo=UTC) if timestamps else boundary
        )
        whens.append((column < bound, sa.literal(index)))
    if not whens:
        return sa.literal(first)
    return sa.case(*whens, else_=sa.literal(last))


def band_case(column: Any, bands: list[int]) -> sa.ColumnElement[str]:
    labels = band_labels(bands)
    if not bands:
        return sa.literal(labels[0])
    whens = [(column < cut, sa.literal(label)) for cut, label in zip(bands, labels, strict=False)]
    return sa.case(*whens, else_=sa.literal(labels[-1]))


def recovered_per_placement(start: datetime, end: datetime) -> sa.Subquery:
    """Per placement placed in ``[start, end)``, the lender-received money attributed to it
    (``placement_id``, ``amount``): only those placements' attributions are summed."""
    own = PLACEMENTS.alias("attributed_to")
    return (
        sa.select(A.placement_id.label("placement_id"), sa.func.sum(A.amount_minor).label("amount"))
        .select_from(ATTRIBUTIONS.join(own, own.c.id == A.placement_id))
        .where(A.rule.in_(ATTRIBUTED), own.c.placed_at >= start, own.c.placed_at < end)
        .group_by(A.placement_id)
        .subquery("recovered")
    )


def recovery(recovered: sa.Subquery, remitting: tuple[str, ...]) -> sa.ColumnElement[int]:
    """A placement's recovered money: attributed, or its reconciled collections for the
    agencies in ``remitting`` (``agency_remits``)."""
    attributed = sa.func.coalesce(recovered.c.amount, 0)
    if not remitting:
        return attributed
    return sa.case((P.agency_id.in_(remitting), P.collected_minor), else_=attributed)


def _in_period(start: datetime, end: datetime, strategy: str | None) -> sa.ColumnElement[bool]:
    where = sa.and_(P.placed_at >= start, P.placed_at < end)
    if strategy is not None:
        where = sa.and_(where, P.strategy == strategy)
    return where


async def stratum_cells(
    conn: AsyncConnection,
    *,
    start: datetime,
    end: datetime,
    bands: list[int],
    remitting: tuple[str, ...] = (),
    strategy: str | None = None,
) -> list[tuple[str, str, Stratum, Cell]]:
    """(agency, strategy, stratum, cell) for the placements placed in ``[start, end)``: one
    grouped query."""
    recovered = recovered_per_placement(start, end)
    y = recovery(recovered, remitting)
    x = P.balance_minor
    xf, yf = sa.cast(x, sa.Float), sa.cast(y, sa.Float)
    bucket = sa.func.coalesce(DE.bucket, C.bucket)
    band = band_case(x, bands)
    first, last = _month_index(start.date()), _month_index(end.date())
    vintage = month_case(P.placed_at, first, last, timestamps=True)
    query = (
        sa.select(
            P.agency_id,
            P.strategy,
            P.currency,
            bucket.label("bucket"),
            band.label("band"),
            vintage.label("vintage"),
            sa.func.count(),
            sa.func.sum(x),
            sa.func.sum(y),
            sa.func.sum(xf * xf),
            sa.func.sum(yf * yf),
            sa.func.sum(xf * yf),
        )
        .select_from(
            PLACEMENTS.join(CASES, C.id == P.case_id)
            .outerjoin(DECISIONS, DE.id == P.decision_id)
            .outerjoin(recovered, recovered.c.placement_id == P.id)
        )
        .where(_in_period(start, end, strategy))
        .group_by(P.agency_id, P.strategy, P.currency, bucket, band, vintage)
    )
    out = []
    for agency, strat, currency, bkt, bnd, vint, n, sx, sy, sxx, syy, sxy in await conn.execute(
        query
    ):
        stratum = Stratum(str(currency), str(bkt), str(bnd), month_label(int(vint)))
        cell = Cell(
            int(n), int(sx or 0), int(sy or 0), float(sxx or 0), float(syy or 0), float(sxy or 0)
        )
        out.append((str(agency), str(strat), stratum, cell))
    return out


async def flows(
    conn: AsyncConnection,
    *,
    start: datetime,
    end: datetime,
    remitting: tuple[str, ...] = (),
    strategy: str | None = None,
) -> list[Flow]:
    """Roll, cure and cost of collection per agency and currency (module docstring): one
    grouped query for the placements, one for commission, one for fees."""
    in_period = _in_period(start, end, strategy)
    recovered = recovered_per_placement(start, end)
    y = recovery(recovered, remitting)
    later = PLACEMENTS.alias("later")
    escalated = sa.exists().where(
        ESCALATIONS.c.placement_id == P.id, ESCALATIONS.c.state == "approved"
    )
    moved_on = sa.exists().where(
        later.c.case_id == P.case_id,
        later.c.placed_at > P.placed_at,
        sa.func.coalesce(later.c.tier, "") != sa.func.coalesce(P.tier, ""),
    )
    cured = sa.case(
        (sa.and_(P.state == "closed", C.status == "closed"), 1),
        (sa.and_(P.balance_minor > 0, y >= P.balance_minor), 1),
        else_=0,
    )
    rolled = sa.case((sa.or_(escalated, moved_on), 1), else_=0)
    rows = await conn.execute(
        sa.select(
            P.agency_id,
            P.currency,
            sa.func.count(),
            sa.func.sum(cured),
            sa.func.sum(rolled),
            sa.func.sum(y),
        )
        .select_from(
            PLACEMENTS.join(CASES, C.id == P.case_id).outerjoin(
                recovered, recovered.c.placement_id == P.id
            )
        )
        .where(in_period)
        .group_by(P.agency_id, P.currency)
    )
    base = {
        (str(a), str(cur)): (int(n), int(cu or 0), int(ro or 0), int(re or 0))
        for a, cur, n, cu, ro, re in rows
    }
    period_ids = sa.select(P.id).where(in_period)
    commission = {
        (str(a), str(cur)): int(total or 0)
        for a, cur, total in await conn.execute(
            sa.select(
                STATEMENTS.c.agency_id, LINES.c.currency, sa.func.sum(LINES.c.commission_minor)
            )
            .select_from(LINES.join(STATEMENTS, STATEMENTS.c.id == LINES.c.statement_id))
            .where(STATEMENTS.c.state != "superseded", LINES.c.placement_id.in_(period_ids))
            .group_by(STATEMENTS.c.agency_id, LINES.c.currency)
        )
    }
    fees = {
        (str(a), str(cur)): int(total or 0)
        for a, cur, total in await conn.execute(
            sa.select(FEES.c.agency_id, FEES.c.currency, sa.func.sum(FEES.c.advanced_minor))
            .where(
                sa.exists().where(
                    in_period, P.case_id == FEES.c.case_id, P.agency_id == FEES.c.agency_id
                )
            )
            .group_by(FEES.c.agency_id, FEES.c.currency)
        )
    }
    return [
        Flow(
            agency,
            currency,
            n,
            cu,
            ro,
            re,
            commission.get((agency, currency), 0),
            fees.get((agency, currency), 0),
        )
        for (agency, currency), (n, cu, ro, re) in sorted(base.items())
    ]


async def _complaints(conn: AsyncConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Complaints received per agency in the period (gateway.complaints)."""
    from gateway.complaints import complaint_counts  # a sibling core; imported late

    tallies = await complaint_counts(conn, start=start, end=end)
    return {str(a): int(t.received) for a, t in tallies.items()}


def _with_complaints(found: list[Flow], complaints: Mapping[str, int] | None) -> list[Flow]:
    if complaints is None:
        return found
    placements: dict[str, int] = {}
    first: dict[str, Flow] = {}
    for f in found:
        placements[f.agency_id] = placements.get(f.agency_id, 0) + f.placements
        first.setdefault(f.agency_id, f)
    out = []
    for f in found:
        if first[f.agency_id] is f:
            count = complaints.get(f.agency_id, 0)
            total = placements[f.agency_id]
            per_10k = count * 10_000 / total if total else None
            f = Flow(**{**_fields(f), "complaints": count, "complaints_per_10k": per_10k})
        out.append(f)
    return out


def _fields(f: Flow) -> dict[str, Any]:
    return {name: getattr(f, name) for name in Flow.__dataclass_fields__}


async def _on(db_or_conn: Database | AsyncConnection, work: Any) -> Any:
    if isinstance(db_or_conn, Database):
        async with db_or_conn.snapshot() as conn:
            return await work(conn)
    return await work(db_or_conn)


async def stratified_scorecards(
    db_or_conn: Database | AsyncConnection,
    *,
    start: datetime,
    end: datetime,
    agencies: Mapping[str, AgencyConfig] | None = None,
    settings: ScorecardsSection | None = None,
    strategy: str | None = None,
) -> StratifiedReport:
    """The fair scorecards of the placements placed in ``[start, end)`` (module docstring):
    each agency against its peers within strata, champion against challenger, flows.
    ``agencies`` names who is under ``agency_remits``; ``strategy`` keeps one strategy's
    placements only (the C/C contrast is then empty on one side)."""
    cfg = settings or ScorecardsSection()
    remitting = remitting_agencies(agencies)

    async def work(conn: AsyncConnection) -> StratifiedReport:
        rows = await stratum_cells(
            conn,
            start=start,
            end=end,
            bands=cfg.balance_bands_minor,
            remitting=remitting,
            strategy=strategy,
        )
        found = await flows(conn, start=start, end=end, remitting=remitting, strategy=strategy)
        complaints = await _complaints(conn, start, end)
        return StratifiedReport(
            start,
            end,
            cfg,
            compare(
                _sum_by(((a, s), c) for a, _st, s, c in rows),
                min_n=cfg.min_stratum_placements,
                confidence=cfg.confidence,
            ),
            contrast(
                _sum_by(((st, s), c) for _a, st, s, c in rows),
                min_n=cfg.min_stratum_placements,
                confidence=cfg.confidence,
            ),
            _with_complaints(found, complaints),
            remitting,
        )

    report: StratifiedReport = await _on(db_or_conn, work)
    return report


def _sum_by(items: Iterable[tuple[tuple[str, Stratum], Cell]]) -> dict[tuple[str, Stratum], Cell]:
    out: dict[tuple[str, Stratum], Cell] = {}
    for key, cell in items:
        out[key] = out.get(key, Cell()) + cell
    return out


async def vintage_curves(
    db_or_conn: Database | AsyncConnection,
    *,
    start: datetime,
    end: datetime,
    as_of: date,
    agency_ids: Iterable[str] | None = None,
) -> list[Curve]:
    """Each agency's cumulative recovered share by months on book for the placements placed
    in ``[start, end)``, on the attributed money paid up to ``as_of`` (see
    gateway.reporting.strata; two grouped queries). Agencies under ``agency_remits`` have no
    dated attributed money: their curves stay at zero, so leave them out with
    ``agency_ids``."""
    first, last_vintage = _month_index(start.date()), _month_index(end.date())
    last = max(_month_index(as_of), first)
    in_period = sa.and_(P.placed_at >= start, P.placed_at < end)
    if agency_ids is not None:
        in_period = sa.and_(in_period, P.agency_id.in_(list(agency_ids)))
    vintage = month_case(P.placed_at, first, last_vintage, timestamps=True)
    paid = month_case(A.paid_on, first, last, timestamps=False)

    async def work(conn: AsyncConnection) -> list[Curve]:
        placed = [
            (str(a), str(cur), int(v), int(total or 0))
            for a, cur, v, total in await conn.execute(
                sa.select(P.agency_id, P.currency, vintage, sa.func.sum(P.balance_minor))
                .where(in_period)
                .group_by(P.agency_id, P.currency, vintage)
            )
        ]
        got = [
            (str(a), str(cur), int(v), int(m), int(total or 0))
            for a, cur, v, m, total in await conn.execute(
                sa.select(P.agency_id, P.currency, vintage, paid, sa.func.sum(A.amount_minor))
                .select_from(ATTRIBUTIONS.join(PLACEMENTS, P.id == A.placement_id))
                .where(in_period, A.rule.in_(ATTRIBUTED), A.paid_on <= as_of)
                .group_by(P.agency_id, P.currency, vintage, paid)
            )
        ]
        return curves(placed, got, last_month=last)

    found: list[Curve] = await _on(db_or_conn, work)
    return found


__all__ = [
    "ATTRIBUTED",
    "Flow",
    "StratifiedReport",
    "flows",
    "recovered_per_placement",
    "recovery",
    "remitting_agencies",
    "stratified_scorecards",
    "stratum_cells",
    "vintage_curves",
]
