"""Statements against the store: which statements a run reconciles, against which of our
placements, what it records, and which statement expectations they meet. The comparison
itself is pure (gateway.reconciliation.statements)."""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.reconciliation.event_audit import Break
from gateway.reconciliation.kinds import NewExpectation
from gateway.reconciliation.match_inputs import Tolerance
from gateway.reconciliation.recorder import EXPECTATIONS
from gateway.reconciliation.runs import canonical, digest
from gateway.reconciliation.sources import held_placements, pending_statements
from gateway.reconciliation.statements import HeldPlacement, Statement, compare, statement_periods
from gateway.store.recon_tables import StatementRecord
from gateway.store.row_stream import all_rows

STATEMENTS = StatementRecord.__table__  # type: ignore[attr-defined]
X = EXPECTATIONS.c


@dataclass(slots=True)
class StatementOutcome:
    breaks: list[tuple[str, Break]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    """What each statement was, for the run's inputs: id, agency, period, SHA-256."""
    counts: list[Mapping[str, int]] = field(default_factory=list)


async def reconcile_statements(
    conn: AsyncConnection,
    agency_ids: list[str],
    *,
    upto_event_id: int,
    run_id: int,
    tolerance: Tolerance,
    now: datetime,
) -> StatementOutcome:
    """Compare every statement received and not yet reconciled (no writes)."""
    out = StatementOutcome()
    held: dict[str, dict[str, HeldPlacement]] = {}
    pending = await all_rows(conn, pending_statements(agency_ids, upto=upto_event_id))
    for event_id, agency_id, data in pending:
        statement = Statement.from_data(agency_id, json.loads(data))
        if agency_id not in held:
            held[agency_id] = {
                pid: HeldPlacement(pid, state, cur, out_, _day(placed_s), _maybe_day(rec_s))
                for pid, state, cur, out_, placed_s, rec_s in await all_rows(
                    conn, held_placements(conn.dialect.name, agency_id)
                )
            }
        result = compare(statement, held[agency_id], tolerance)
        out.breaks.extend(
            (b.dedupe_key, Break(event_id, agency_id, b.draft)) for b in result.breaks
        )
        sha = digest(data)
        out.inputs.append(
            {
                "event_id": event_id,
                "agency_id": agency_id,
                "statement_id": statement.statement_id,
                "period": [str(statement.period_start), str(statement.period_end)],
                "sha256": sha,
            }
        )
        out.records.append(
            {
                "event_id": event_id,
                "agency_id": agency_id,
                "statement_id": statement.statement_id,
                "period_start": statement.period_start,
                "period_end": statement.period_end,
                "items": len(statement.lines),
                "sha256": sha,
                "run_id": run_id,
                "counts": canonical(result.counts),
                "reconciled_at": now,
            }
        )
        out.counts.append(result.counts)
    return out


async def record(conn: AsyncConnection, outcome: StatementOutcome) -> None:
    if outcome.records:
        await conn.execute(STATEMENTS.insert(), outcome.records)


def statements_due(
    agencies: Iterable[AgencyConfig], today: date
) -> list[tuple[str, str, NewExpectation]]:
    """The statement each agency owes for its last complete period, as expectations:
    (placement id "", agency id, expectation), due ``statement_due_days`` after the period."""
    due = []
    for agency in agencies:
        terms = agency.settlement
        for key, start, end in statement_periods(terms.statement_period, today):
            due.append(
                (
                    "",
                    agency.id,
                    NewExpectation(
                        "statement",
                        f"{agency.id}:{key}",
                        datetime.combine(end, time(), UTC)
                        + timedelta(days=1 + terms.statement_due_days),
                        None,
                        window_start=datetime.combine(start, time(), UTC),
                    ),
                )
            )
    return due


async def meet_statement_expectations(
    conn: AsyncConnection, also: Iterable[Mapping[str, Any]] = ()
) -> None:
    """A statement expectation is met by any statement reconciled whose period contains the
    period's start: those stored, and ``also`` (a dry run's, which are not)."""
    open_ = (
        await conn.execute(
            sa.select(X.id, X.agency_id, X.window_start).where(
                X.kind == "statement", X.state.in_(["open", "breached"])
            )
        )
    ).all()
    if not open_:
        return
    S = STATEMENTS.c
    covered = [
        (a, start, end)
        for a, start, end in (
            await conn.execute(
                sa.select(S.agency_id, S.period_start, S.period_end).where(
                    S.agency_id.in_(sorted({r.agency_id for r in open_}))
                )
            )
        ).all()
    ]
    covered += [
        (s["agency_id"], date.fromisoformat(s["period"][0]), date.fromisoformat(s["period"][1]))
        for s in also
    ]
    met = [
        r.id
        for r in open_
        if r.window_start is not None
        and any(
            a == r.agency_id and start <= r.window_start.date() <= end for a, start, end in covered
        )
    ]
    if met:
        await conn.execute(EXPECTATIONS.update().where(X.id.in_(met)).values(state="met"))


def _day(seconds: int) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()


def _maybe_day(seconds: int | None) -> date | None:
    return None if seconds is None else _day(seconds)


__all__ = [
    "StatementOutcome",
    "meet_statement_expectations",
    "reconcile_statements",
    "record",
    "statements_due",
]
