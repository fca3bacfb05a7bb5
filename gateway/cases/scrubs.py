"""Scrubs: what the lender's intake file says about a case beyond its figures — the holds it
lists, and whether the account is still overdue at all.

Theory of operation
-------------------
The intake writer hands over only the rows that can need a step (``ScrubRow``): new or
changed rows that list holds or are no longer overdue, and changed rows of cases that are
held, closed or written off (the only statuses a standing hold leaves a case in). ``plan``
is pure; ``apply_scrubs`` reads the standing holds and the case statuses (rows locked), and
writes the plan in the batch's transaction with batched statements.

Per row:

* **Holds.** The case's *intake* holds become exactly the file's list: codes not yet standing
  are added (source ``intake``), intake holds the file no longer lists are released. Ops and
  agency holds are never touched. The step follows ``gateway.cases.holds.hold_step``: a new
  hold recalls a placed case (``placement.recalled`` with the hold's code), holds an open,
  returned or recalled one; the last hold released makes a held case open again.
* **Paid off or cured** (balance 0 or 0 days past due): a placed case is recalled
  (``PAID_OFF`` or ``CURED``, event ``close``); any other open case is closed. It is never
  placed again unless a later file shows it overdue.
* **Overdue again**: a closed case whose previous row was paid off or cured, and whose new row
  is overdue, is reopened (then held if a hold still stands). A case an agency closed
  (settled, paid in full) is not reopened by the lender's lagging figures.

Every step is attested: moves by the case's leaf, recalls by theirs, hold changes that move
nothing by ``hold`` leaves.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.placements import PlacementService
from gateway.cases.history import CaseMove, move_cases
from gateway.cases.holds import (
    ActiveHold,
    NewHold,
    active_holds,
    add_holds,
    hold_leaf,
    hold_step,
    release_holds,
)
from gateway.evidence.log import LeafInput, append_leaves
from gateway.lifecycle import next_case_status
from gateway.store.tables import Case

CASES = Case.__table__  # type: ignore[attr-defined]
C = CASES.c

ACTOR = "intake"
HOLD_BEARING_STATES = frozenset({"held", "closed", "written_off"})
"""The statuses a case with a standing hold can be in: changed rows of these cases are
scrubbed even when the file lists no hold (its intake holds may have to go)."""

PAID_OFF = ("PAID_OFF", "paid off at the lender")
CURED = ("CURED", "cured: 0 days past due")
_WITH_AGENCY = frozenset({"placed", "legal"})
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ScrubRow:
    """One intake row that may need a step."""

    case_id: str
    codes: tuple[str, ...]
    """The file's hold codes for the account."""
    balance_minor: int
    dpd: int
    was_overdue: bool
    """The previous import showed it overdue (True for a new case)."""
    new: bool = False


@dataclass(frozen=True, slots=True)
class ScrubCounts:
    held: int = 0
    """Holds added."""
    released: int = 0
    """Holds released."""
    closed: int = 0
    """Cases closed or recalled as paid off or cured."""
    reopened: int = 0
    recalled: int = 0
    """Placements recalled (by a hold or because the account was paid off or cured)."""


@dataclass(slots=True)
class ScrubPlan:
    add: list[NewHold] = field(default_factory=list)
    release: list[ActiveHold] = field(default_factory=list)
    moves: list[CaseMove] = field(default_factory=list)
    recalls: list[tuple[str, str, str]] = field(default_factory=list)
    """(case id, reason code, case event) to recall through PlacementService.recall_in."""
    leaves: list[LeafInput] = field(default_factory=list)
    closed: int = 0
    reopened: int = 0


def is_overdue(balance_minor: int, dpd: int) -> bool:
    return balance_minor > 0 and dpd > 0


def plan(
    rows: Sequence[ScrubRow],
    statuses: Mapping[str, str],
    standing: Mapping[str, Sequence[ActiveHold]],
) -> ScrubPlan:
    """The holds to add and release, the moves, recalls and leaves for ``rows`` (pure).

    ``statuses`` are the cases' current statuses (a row without one is skipped);
    ``standing`` their standing holds of every source.
    """
    out = ScrubPlan()
    for row in rows:
        status = statuses.get(row.case_id)
        if status is None:
            continue
        holds = standing.get(row.case_id, ())
        intake = {h.code for h in holds if h.source == ACTOR}
        added = sorted(set(row.codes) - intake)
        released = [h for h in holds if h.source == ACTOR and h.code not in row.codes]
        after = {h.code for h in holds if h not in released} | set(added)
        out.add.extend(NewHold(row.case_id, code, ACTOR, ACTOR) for code in added)
        out.release.extend(released)
        step: str | None = None
        if not is_overdue(row.balance_minor, row.dpd):
            code, reason = PAID_OFF if row.balance_minor == 0 else CURED
            if status in _WITH_AGENCY:
                out.recalls.append((row.case_id, code, "close"))
                status, out.closed = "closed", out.closed + 1
            elif status != "closed" and next_case_status(status, "close"):
                out.moves.append(CaseMove(row.case_id, "close", ACTOR, reason))
                status, out.closed = "closed", out.closed + 1
        else:
            if status == "closed" and not row.was_overdue:
                out.moves.append(
                    CaseMove(row.case_id, "reopen", ACTOR, f"overdue again: {row.dpd} days")
                )
                status, out.reopened = "open", out.reopened + 1
            step = hold_step(status, added=bool(added), standing=bool(after))
            if step == "recall":
                out.recalls.append((row.case_id, added[0], "hold"))
            elif step == "hold":
                codes = ";".join(sorted(after))
                out.moves.append(CaseMove(row.case_id, "hold", ACTOR, f"lender's file: {codes}"))
            elif step == "release":
                gone = ";".join(sorted(h.code for h in released))
                reason = f"no longer in the lender's file: {gone}"
                out.moves.append(CaseMove(row.case_id, "release", ACTOR, reason))
            status = {"recall": "held", "hold": "held", "release": "open"}.get(step or "", status)
        if step is None:
            # Nothing moved for the holds themselves: each change gets its own leaf.
            changes = [("add", code) for code in added] + [("release", h.code) for h in released]
            out.leaves.extend(
                hold_leaf(
                    row.case_id,
                    action=action,
                    code=code,
                    source=ACTOR,
                    actor=ACTOR,
                    status=status,
                    note=None,
                )
                for action, code in changes
            )
    return out


async def _locked_statuses(conn: AsyncConnection, case_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(case_ids), _CHUNK):
        rows = await conn.execute(
            sa.select(C.id, C.status)
            .where(C.id.in_(case_ids[start : start + _CHUNK]))
            .with_for_update()
        )
        found.update({str(i): str(s) for i, s in rows})
    return found


async def apply_scrubs(
    conn: AsyncConnection,
    rows: Sequence[ScrubRow],
    *,
    placements: PlacementService,
    now: datetime,
) -> ScrubCounts:
    """Plan and write the steps of ``rows`` in the caller's transaction."""
    if not rows:
        return ScrubCounts()
    ids = list(dict.fromkeys(r.case_id for r in rows))
    statuses = await _locked_statuses(conn, ids)
    standing = await active_holds(conn, [r.case_id for r in rows if not r.new])
    steps = plan(rows, statuses, standing)
    await add_holds(conn, steps.add, now=now)
    await release_holds(
        conn,
        [h.id for h in steps.release],
        by=ACTOR,
        now=now,
        note="no longer in the lender's file",
    )
    await move_cases(conn, steps.moves, now=now, strict=True, known=statuses)
    for case_id, code, event in steps.recalls:
        # One at a time: a recall is a packet, an outbox row and a leaf, and rare here.
        await placements.recall_in(conn, case_id, code, now=now, event=event, actor=ACTOR)
    if steps.leaves:
        await append_leaves(conn, steps.leaves, now=now)
    return ScrubCounts(
        held=len(steps.add),
        released=len(steps.release),
        closed=steps.closed,
        reopened=steps.reopened,
        recalled=len(steps.recalls),
    )


__all__ = [
    "CURED",
    "HOLD_BEARING_STATES",
    "PAID_OFF",
    "ScrubCounts",
    "ScrubPlan",
    "ScrubRow",
    "apply_scrubs",
    "is_overdue",
    "plan",
]
