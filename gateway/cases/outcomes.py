"""The case follows its placement's outcome: when an agency event ends the open placement of
a case, the case moves on.

Theory of operation
-------------------
Reconciliation (gateway.reconciliation.recorder) applies an agency's events to placements.
For each event that takes an *open* placement to an end state (returned, closed, rejected),
``placement_ending`` (pure) names a ``PlacementEnding``; ``follow_outcomes`` then moves every
case that is still ``placed`` or ``legal`` in the same transaction, with one status read and
one ``move_cases`` call per batch, by this table (actor ``agency:ID``):

======================================  ============================================
agency event (reason)                   case event
======================================  ============================================
``placement.rejected``                  ``reject`` → returned
``case.returned`` deceased / bankrupt   an agency hold DECEASED / BANKRUPT / DISPUTE,
/ disputed                              then ``hold`` → held
``case.returned`` any other reason      ``return`` → returned
``case.closed`` paid_in_full / settled  ``close`` → closed
``case.closed`` written_off             ``write_off`` → written_off
``case.closed`` recalled                ``return`` → returned (we had not recalled it:
                                        the case is ours to place again)
======================================  ============================================

A placement we recalled first is not open, so its confirmation moves nothing: the case
already moved when we recalled it. Every ending also revokes the placement's authorisation
letter (gateway.letters, reason ``returned``, ``closed`` or ``rejected``), as a recall does.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cases.history import CaseMove, move_cases, statuses
from gateway.cases.holds import NewHold, add_holds, clip
from gateway.letters.service import revoke_letters
from gateway.lifecycle import OPEN_PLACEMENT_STATES, TERMINAL_PLACEMENT_STATES
from gateway.reconciliation.kinds import PlacementView
from schemas.events import AgencyEvent, CaseClosed, CaseReturned, PlacementRejected

RETURN_HOLDS: Final = {"deceased": "DECEASED", "bankrupt": "BANKRUPT", "disputed": "DISPUTE"}
"""Return reasons that put a hold on the case instead of sending it to the next agency."""
CLOSE_EVENTS: Final = {
    "paid_in_full": "close",
    "settled": "close",
    "written_off": "write_off",
    "recalled": "return",
}
_WITH_AGENCY: Final = frozenset({"placed", "legal"})


@dataclass(frozen=True, slots=True)
class PlacementEnding:
    """An agency event that ended the open placement of a case."""

    case_id: str
    placement_id: str
    agency_id: str
    event_type: str
    reason: str


def placement_ending(
    event: AgencyEvent, before: PlacementView | None, after: PlacementView
) -> PlacementEnding | None:
    """The ending ``event`` made, when it took an open placement to an end state (pure)."""
    if before is None or before.state not in OPEN_PLACEMENT_STATES:
        return None
    if after.state not in TERMINAL_PLACEMENT_STATES:
        return None
    if not isinstance(event, CaseReturned | CaseClosed | PlacementRejected):
        return None
    return PlacementEnding(after.case_id, after.id, after.agency_id, event.type, event.data.reason)


def case_step(ending: PlacementEnding) -> tuple[str, str | None]:
    """(case event, hold code or None) for an ending (the module's table)."""
    if ending.event_type == "placement.rejected":
        return "reject", None
    if ending.event_type == "case.returned":
        code = RETURN_HOLDS.get(ending.reason)
        return ("hold", code) if code else ("return", None)
    return CLOSE_EVENTS.get(ending.reason, "return"), None


_VERB: Final = {
    "placement.rejected": "rejected",
    "case.returned": "returned",
    "case.closed": "closed",
}


async def follow_outcomes(
    conn: AsyncConnection, endings: Sequence[PlacementEnding], *, now: datetime
) -> int:
    """Move the cases of ``endings`` in the caller's transaction; how many moved. Does no
    query when ``endings`` is empty."""
    if not endings:
        return 0
    # The agency no longer acts on these cases: their authorisation letters end now, whatever
    # the case does next (the collector verification page answers from the letter's status).
    ended: dict[str, list[str]] = {}
    for ending in endings:
        verb = _VERB.get(ending.event_type, ending.event_type)
        ended.setdefault(verb, []).append(ending.placement_id)
    for verb, placement_ids in ended.items():
        await revoke_letters(conn, placement_ids, reason=verb, now=now)
    current = await statuses(conn, [e.case_id for e in endings])
    moves: list[CaseMove] = []
    holds: list[NewHold] = []
    seen: set[str] = set()
    for ending in endings:
        if current.get(ending.case_id) not in _WITH_AGENCY or ending.case_id in seen:
            continue
        seen.add(ending.case_id)  # a case has one open placement: one ending per batch
        event, code = case_step(ending)
        actor = f"agency:{ending.agency_id}"
        reason = clip(f"{_VERB.get(ending.event_type, ending.event_type)}: {ending.reason}")
        if code is not None:
            holds.append(NewHold(ending.case_id, code, "agency", actor, reason))
        moves.append(CaseMove(ending.case_id, event, actor, reason, ending.placement_id))
    await add_holds(conn, holds, now=now)
    result = await move_cases(conn, moves, now=now, known=current)
    return len(result.moved)


__all__ = [
    "CLOSE_EVENTS",
    "RETURN_HOLDS",
    "PlacementEnding",
    "case_step",
    "follow_outcomes",
    "placement_ending",
]
