"""The evaluation's gather step: read the store for one agency and period into ``Inputs``.

Each section comes from the part that owns it, through its API: the register
(``read_register``, ``standing``, ``read_history``), complaints (``complaint_counts``),
conduct (``violation_counts``), the scorecards (``stratified_scorecards`` for the agency
against its peers within strata, ``vintage_curves``); ``Inputs.sources`` names them.

The rest is read here with grouped queries, whatever the number of placements: the SLA
record (``ack`` / ``first_activity`` expectations), deletion confirmations
(``deletion`` expectations due in the period), data incidents (``data_incidents``, recorded by
ops with ``evaluation incident add``), attributed recovery and the commission on confirmed
statements.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.complaints import ComplaintTally, complaint_counts
from gateway.conduct import violation_counts
from gateway.config.agencies import AgencyConfig
from gateway.evaluation.model import Inputs, RegisterFacts, Stratum
from gateway.reconciliation.kinds import SEVERITY
from gateway.register.standing import standing
from gateway.register.store import read_history, read_register
from gateway.reporting.stratified import StratifiedReport, stratified_scorecards, vintage_curves
from gateway.store.evaluation_tables import DataIncident
from gateway.store.settlement_tables import Attribution
from gateway.store.statement_tables import SettlementStatement
from gateway.store.tables import Expectation, Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
STATEMENTS = SettlementStatement.__table__  # type: ignore[attr-defined]
INCIDENTS = DataIncident.__table__  # type: ignore[attr-defined]
P, A, X = PLACEMENTS.c, ATTRIBUTIONS.c, EXPECTATIONS.c

HIGH_KINDS = frozenset(k for k, s in SEVERITY.items() if s == "high")
COUNTED = ("active", "settled")
"""Attribution states that count as recovered (a disputed one is left out until decided)."""


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


async def performance(
    conn: AsyncConnection,
    *,
    start: date,
    end: date,
    agencies: Mapping[str, AgencyConfig] | None = None,
) -> StratifiedReport:
    """The scorecards' comparison within strata of the placements placed in ``[start, end)``
    (gateway.reporting.stratified), read once for every agency evaluated together."""
    return await stratified_scorecards(
        conn, start=midnight(start), end=midnight(end), agencies=agencies
    )


def strata_of(report: StratifiedReport, agency_id: str, currency: str) -> Sequence[Stratum]:
    """The agency's strata from the scorecards' comparison, as the report model keeps them."""
    out: list[Stratum] = []
    for comparison in report.of(agency_id):
        if comparison.currency != currency:
            continue
        for line in comparison.lines:
            out.append(
                Stratum(
                    bucket=line.stratum.bucket,
                    band=line.stratum.band,
                    vintage=line.stratum.vintage,
                    placements=line.agency.n,
                    placed_minor=line.agency.placed,
                    recovered_minor=line.agency.recovered,
                    peer_placements=line.peers.n,
                    peer_placed_minor=line.peers.placed,
                    peer_recovered_minor=line.peers.recovered,
                    comparable=line.comparable,
                )
            )
    return out


def ratio_interval(
    report: StratifiedReport, agency_id: str, currency: str
) -> tuple[int, int] | None:
    """The interval of the agency's recovery relative to its peers, in bps."""
    for comparison in report.of(agency_id):
        if comparison.currency == currency and comparison.ratio_interval is not None:
            i = comparison.ratio_interval
            return round(i.low * 10_000), round(i.high * 10_000)
    return None


async def curve(
    conn: AsyncConnection, agency_id: str, *, start: date, end: date, currency: str
) -> list[tuple[int, int]]:
    """The agency's vintage curve (gateway.reporting.stratified ``vintage_curves``) over its
    placements placed in ``[start, end)``: (months on book, recovered share in bps)."""
    found = await vintage_curves(
        conn,
        start=midnight(start),
        end=midnight(end),
        as_of=end - timedelta(days=1),
        agency_ids=[agency_id],
    )
    for c in found:
        if c.agency_id == agency_id and c.currency == currency:
            return [(int(m), round(share * 10_000)) for m, share, _placed in c.points]
    return []


async def _register(
    conn: AsyncConnection, agency_id: str, start: datetime, day: date
) -> tuple[RegisterFacts, str]:
    entry = (await read_register(conn, [agency_id])).get(agency_id)
    if entry is None:
        return RegisterFacts(), "gateway.register (no entry)"
    now = standing(entry, entry.qualifications, day)
    history = tuple(
        (c.at.date().isoformat(), c.action, c.reason or "")
        for c in reversed(await read_history(conn, agency_id))
        if c.at >= start
    )
    return (
        RegisterFacts(
            status=entry.status,
            status_reason=entry.status_reason,
            legal_name=entry.legal_name,
            registration_no=entry.registration_number,
            contract_start=entry.contract_start,
            contract_end=entry.contract_end,
            share_bps=entry.share_bps,
            allowed=now.allowed,
            standing_reasons=tuple(now.reasons),
            next_lapse=now.next_lapse,
            history=history,
        ),
        "gateway.register",
    )


async def _violations(
    conn: AsyncConnection, agency_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    per_agency = await violation_counts(conn, start=start, end=end)
    return dict(per_agency.get(agency_id, {}))


async def _complaints(
    conn: AsyncConnection, agency_id: str, start: datetime, end: datetime
) -> ComplaintTally:
    return (await complaint_counts(conn, start=start, end=end)).get(agency_id, ComplaintTally())


async def _service(
    conn: AsyncConnection, agency_id: str, start: datetime, end: datetime
) -> dict[tuple[str, str], int]:
    placed = sa.and_(P.placed_at >= start, P.placed_at < end)
    sla = await conn.execute(
        sa.select(X.kind, X.state, sa.func.count())
        .join(PLACEMENTS, P.id == X.placement_id)
        .where(placed, X.agency_id == agency_id, X.kind.in_(("ack", "first_activity")))
        .group_by(X.kind, X.state)
    )
    out = {(str(k), str(s)): int(n) for k, s, n in sla}
    deletion = await conn.execute(
        sa.select(X.state, sa.func.count())
        .where(X.agency_id == agency_id, X.kind == "deletion", X.due_at >= start, X.due_at < end)
        .group_by(X.state)
    )
    out.update({("deletion", str(s)): int(n) for s, n in deletion})
    return out


async def _money(
    conn: AsyncConnection, agency_id: str, start: date, end: date, currency: str
) -> tuple[int, int, int]:
    attributed = (
        await conn.execute(
            sa.select(sa.func.sum(A.amount_minor)).where(
                A.agency_id == agency_id,
                A.state.in_(COUNTED),
                A.currency == currency,
                A.paid_on >= start,
                A.paid_on < end,
            )
        )
    ).scalar_one()
    S = STATEMENTS.c
    paid, count = (
        await conn.execute(
            sa.select(sa.func.sum(S.total_minor), sa.func.count()).where(
                S.agency_id == agency_id,
                S.state == "confirmed",
                S.currency == currency,
                S.month >= f"{start:%Y-%m}",
                S.month < f"{end:%Y-%m}" if end.day == 1 else S.month <= f"{end:%Y-%m}",
            )
        )
    ).one()
    return int(attributed or 0), int(paid or 0), int(count or 0)


async def _incidents(
    conn: AsyncConnection, agency_id: str, start: date, end: date
) -> dict[str, int]:
    I = INCIDENTS.c  # noqa: E741
    rows = await conn.execute(
        sa.select(I.severity, sa.func.count())
        .where(I.agency_id == agency_id, I.occurred_on >= start, I.occurred_on < end)
        .group_by(I.severity)
    )
    return {str(s): int(n) for s, n in rows}


async def gather(
    conn: AsyncConnection,
    agency_id: str,
    *,
    start: date,
    end: date,
    currency: str = "CNY",
    peers: StratifiedReport | None = None,
) -> Inputs:
    """The evaluation's inputs for ``agency_id`` over ``[start, end)`` (UTC days).

    ``peers`` is ``performance(...)`` already read for the same period (when evaluating every
    agency at once); read here otherwise."""
    since, until = midnight(start), midnight(end)
    register, register_source = await _register(conn, agency_id, since, end)
    violations = await _violations(conn, agency_id, since, until)
    complaints = await _complaints(conn, agency_id, since, until)
    service = await _service(conn, agency_id, since, until)
    if peers is None:
        peers = await performance(conn, start=start, end=end)
    attributed, commission, confirmed = await _money(conn, agency_id, start, end, currency)
    return Inputs(
        agency_id=agency_id,
        period_start=start,
        period_end=end,
        currency=currency,
        register=register,
        violations=violations,
        high_kinds=frozenset(k for k in violations if k in HIGH_KINDS),
        complaints_received=complaints.received,
        complaints_upheld=complaints.upheld,
        complaints_overdue=complaints.overdue,
        complaints_open=complaints.open,
        deletions_met=service.get(("deletion", "met"), 0),
        deletions_breached=service.get(("deletion", "breached"), 0),
        incidents=await _incidents(conn, agency_id, start, end),
        strata=tuple(strata_of(peers, agency_id, currency)),
        ratio_interval_bps=ratio_interval(peers, agency_id, currency),
        curve=tuple(await curve(conn, agency_id, start=start, end=end, currency=currency)),
        ack_met=service.get(("ack", "met"), 0),
        ack_breached=service.get(("ack", "breached"), 0),
        activity_met=service.get(("first_activity", "met"), 0),
        activity_breached=service.get(("first_activity", "breached"), 0),
        attributed_minor=attributed,
        commission_paid_minor=commission,
        statements_confirmed=confirmed,
        sources={
            "register": register_source,
            "violations": "gateway.conduct.violation_counts",
            "complaints": "gateway.complaints.complaint_counts",
            "performance": "gateway.reporting.stratified",
            "incidents": "data_incidents",
        },
    )


__all__ = [
    "HIGH_KINDS",
    "curve",
    "gather",
    "midnight",
    "performance",
    "ratio_interval",
    "strata_of",
]
