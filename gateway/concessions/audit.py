"""The batch re-check of promises and settled closes against approved terms: the small pass
a reconciliation run makes after its events pass (gateway.reconciliation.engine).

Arrival checks each ``promise.made`` and ``case.closed`` (reason ``settled``) as it comes
(gateway.concessions.requests.on_arrival). A run re-derives the same judgements for the
events of its range from the stored facts: the placement's balance, what its agency had
reported collected before the event (applied payments less reversals with smaller ids) and
the terms approved on it by the time the event was received. The breaks carry the arrival's
dedupe keys (``unapproved_terms:event:<id>``, ``unapproved_waiver:event:<id>``), so a run
never raises what arrival already raised; it raises what arrival could not (an event stored
before this check existed, or while the database refused the mismatch). The DuckDB events
pass (gateway.reconciliation.columnar) is left as it is: these two rules need the approved
terms, which live in ``concession_requests``, and touch only promises and closes, a small
share of the events.
"""

import json
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.concessions.requests import REQUESTS, MismatchRow, R, term_mismatches, terms_of_row
from gateway.concessions.rules import Terms
from gateway.reconciliation.kinds import PlacementView
from gateway.store.tables import AgencyEventRow, Placement
from schemas.events import AGENCY_EVENT_ADAPTER, AgencyEvent

EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
E, P = EVENTS.c, PLACEMENTS.c
_CHECKED = ("promise.made", "case.closed")
_MONEY = ("payment.reported", "payment.reversed")


def _event(row: Any) -> AgencyEvent:
    return AGENCY_EVENT_ADAPTER.validate_python(
        {"type": row.event_type, "timestamp": row.occurred_at, "data": json.loads(row.data)}
    )


async def term_breaks(
    conn: AsyncConnection, *, after_event_id: int, upto_event_id: int
) -> list[MismatchRow]:
    """The ``unapproved_terms`` and ``unapproved_waiver`` breaks of the applied events with
    ids in (``after_event_id``, ``upto_event_id``] (see the module docstring)."""
    candidates = (
        await conn.execute(
            sa.select(
                E.id,
                E.agency_id,
                E.placement_id,
                E.event_type,
                E.occurred_at,
                E.data,
                E.received_at,
            )
            .where(
                E.id > after_event_id,
                E.id <= upto_event_id,
                E.applied,
                E.event_type.in_(_CHECKED),
            )
            .order_by(E.id)
        )
    ).all()
    events = [(row, _event(row)) for row in candidates]
    events = [
        (row, ev)
        for row, ev in events
        if ev.type == "promise.made" or getattr(ev.data, "reason", "") == "settled"
    ]
    if not events:
        return []
    pids = sorted({row.placement_id for row, _ in events})
    placements = {
        r.id: r
        for r in await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id, P.state, P.currency, P.balance_minor).where(
                P.id.in_(pids)
            )
        )
    }
    payments: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in await conn.execute(
        sa.select(E.placement_id, E.id, E.event_type, E.amount_minor)
        .where(
            E.placement_id.in_(pids),
            E.applied,
            E.event_type.in_(_MONEY),
            E.id <= upto_event_id,
        )
        .order_by(E.id)
    ):
        sign = -1 if r.event_type == "payment.reversed" else 1
        payments[r.placement_id].append((r.id, sign * int(r.amount_minor or 0)))
    approved: dict[str, list[tuple[Terms, date | None, datetime]]] = defaultdict(list)
    for r in await conn.execute(
        sa.select(REQUESTS).where(R.placement_id.in_(pids), R.state == "approved")
    ):
        if r.kind != "pause" and r.decided_at is not None:
            approved[r.placement_id].append((terms_of_row(r), r.valid_until, r.decided_at))
    found: list[MismatchRow] = []
    for row, event in events:
        placement = placements.get(row.placement_id)
        if placement is None:
            continue
        collected = sum(a for eid, a in payments[row.placement_id] if eid < row.id)
        before = PlacementView(
            placement.id,
            placement.case_id,
            placement.agency_id,
            placement.state,
            placement.currency,
            placement.balance_minor,
            collected,
            None,
            None,
        )
        standing = {
            row.placement_id: [
                (t, until) for t, until, at in approved[row.placement_id] if at <= row.received_at
            ]
        }
        found += term_mismatches([(row.agency_id, row.id, event, before)], standing)
    return found


__all__ = ["term_breaks"]
