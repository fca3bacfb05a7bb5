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
from bisect import bisect_left
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.concessions.requests import REQUESTS, MismatchRow, R, term_mismatches, terms_of_row
from gateway.concessions.rules import Terms
from gateway.reconciliation.kinds import PlacementView
from gateway.reconciliation.sources import json_text
from gateway.store.tables import AgencyEventRow, Placement
from schemas.events import AGENCY_EVENT_ADAPTER, AgencyEvent

EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
E, P = EVENTS.c, PLACEMENTS.c
_MONEY = ("payment.reported", "payment.reversed")


def _event(row: Any) -> AgencyEvent:
    return AGENCY_EVENT_ADAPTER.validate_python(
        {"type": row.event_type, "timestamp": row.occurred_at, "data": json.loads(row.data)}
    )


async def term_breaks(
    conn: AsyncConnection, *, after_event_id: int, upto_event_id: int
) -> list[MismatchRow]:
    """The ``unapproved_terms`` and ``unapproved_waiver`` breaks of the applied events with
    ids in (``after_event_id``, ``upto_event_id``] (see the module docstring).

    Three reads, each a join on the range's candidate events rather than a list of ids (a
    run of a million events has tens of thousands): the candidates with their placements,
    the money reported on those placements up to the range's end, and the terms approved on
    them. The candidates are the closes as ``settled`` and the promises on placements with
    approved terms: with none, any promise keeps to the terms
    (gateway.concessions.rules.promise_within_terms), so it is not read at all."""
    # Terms that count against promises and closes: approved waivers and plans.
    in_force = (R.state == "approved", R.kind != "pause", R.decided_at.is_not(None))
    terms_approved = sa.select(R.id).where(R.placement_id == E.placement_id, *in_force).exists()
    in_range = (
        E.id > after_event_id,
        E.id <= upto_event_id,
        E.applied,
        sa.or_(
            sa.and_(E.event_type == "promise.made", terms_approved),
            sa.and_(
                E.event_type == "case.closed",
                json_text(E.data, "reason", conn.dialect.name) == "settled",
            ),
        ),
    )
    touched = sa.select(E.placement_id).where(*in_range)
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
                P.case_id,
                P.agency_id.label("placement_agency_id"),
                P.state,
                P.currency,
                P.balance_minor,
            )
            .join(PLACEMENTS, P.id == E.placement_id)
            .where(*in_range)
            .order_by(E.id)
        )
    ).all()
    if not candidates:
        return []
    # Per placement, the ids of its money events in order and the running total after each:
    # what the agency had reported collected before an event is one bisection away.
    money_ids: dict[str, list[int]] = defaultdict(list)
    running: dict[str, list[int]] = defaultdict(list)
    for pid, eid, event_type, amount in (
        await conn.execute(
            sa.select(E.placement_id, E.id, E.event_type, E.amount_minor)
            .where(
                E.placement_id.in_(touched),
                E.applied,
                E.event_type.in_(_MONEY),
                E.id <= upto_event_id,
            )
            .order_by(E.id)
        )
    ).all():
        sign = -1 if event_type == "payment.reversed" else 1
        totals = running[pid]
        money_ids[pid].append(eid)
        totals.append((totals[-1] if totals else 0) + sign * int(amount or 0))
    approved: dict[str, list[tuple[Terms, date | None, datetime]]] = defaultdict(list)
    for r in (
        await conn.execute(sa.select(REQUESTS).where(R.placement_id.in_(touched), *in_force))
    ).all():
        approved[r.placement_id].append((terms_of_row(r), r.valid_until, r.decided_at))
    found: list[MismatchRow] = []
    for row in candidates:
        pid = row.placement_id
        before = bisect_left(money_ids.get(pid, ()), row.id)
        view = PlacementView(
            pid,
            row.case_id,
            row.placement_agency_id,
            row.state,
            row.currency,
            row.balance_minor,
            running[pid][before - 1] if before else 0,
            None,
            None,
        )
        at_arrival = {
            pid: [(t, until) for t, until, at in approved.get(pid, ()) if at <= row.received_at]
        }
        found += term_mismatches([(row.agency_id, row.id, _event(row), view)], at_arrival)
    return found


__all__ = ["term_breaks"]
