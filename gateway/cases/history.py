"""Moving cases through their life: one checked, recorded step per event.

Theory of operation: ``move_cases`` is the only writer of ``cases.status``. For each move it
looks the current status up, finds the next one in ``gateway.lifecycle.CASE_TRANSITIONS``
and, in the caller's transaction, updates the case and appends a ``case_history`` row saying
what happened, who or what did it and why. Moves the table does not allow are returned as
refusals (or raise, with ``strict``), never written. Events that no placement packet already
attests (holds, releases, closes, write-offs, reopenings, expiry, escalation) also append a
``case`` evidence leaf, so the case's life is provable from the log alone.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.lifecycle import next_case_status
from gateway.store.case_tables import CaseHistory
from gateway.store.tables import Case

CASES = Case.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
C, H = CASES.c, HISTORY.c

ATTESTED_BY_PACKETS = frozenset({"place", "place_legal", "recall", "return", "reject"})
"""Events whose evidence is the placement's own leaf (created, recalled, the agency's event)."""

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class CaseMove:
    """One lifecycle event for one case.

    ``actor`` says who or what moved it: ``intake``, ``allocation``, ``expiry``,
    ``escalation``, ``agency:ID`` or ``ops:NAME``.
    """

    case_id: str
    event: str
    actor: str
    reason: str | None = None
    placement_id: str | None = None


@dataclass(slots=True)
class MoveResult:
    moved: dict[str, str] = field(default_factory=dict)
    """case id → its status after the moves."""
    refused: list[tuple[CaseMove, str]] = field(default_factory=list)
    """Moves the lifecycle does not allow, with the status the case was in."""
    missing: list[str] = field(default_factory=list)


async def statuses(conn: AsyncConnection, case_ids: Sequence[str]) -> dict[str, str]:
    """case id → status, for the ids that exist."""
    found: dict[str, str] = {}
    ids = list(dict.fromkeys(case_ids))
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            sa.select(C.id, C.status).where(C.id.in_(ids[start : start + _CHUNK]))
        )
        found.update({str(i): str(s) for i, s in rows})
    return found


async def move_cases(
    conn: AsyncConnection,
    moves: Sequence[CaseMove],
    *,
    now: datetime,
    strict: bool = False,
    known: dict[str, str] | None = None,
) -> MoveResult:
    """Apply ``moves`` in order in the caller's transaction.

    Args:
        moves: the events; several for one case apply one after the other.
        strict: raise GatewayError (NotFound for an unknown case) on the first move the
            lifecycle refuses, instead of returning it in ``refused``.
        known: the current status of cases the caller has just read (skips the lookup).
    """
    result = MoveResult()
    if not moves:
        return result
    current = dict(known or {})
    wanted = [m.case_id for m in moves if m.case_id not in current]
    if wanted:
        current.update(await statuses(conn, wanted))
    history: list[dict[str, object]] = []
    leaves: list[LeafInput] = []
    for move in moves:
        status = current.get(move.case_id)
        if status is None:
            if strict:
                raise NotFound(f"case {move.case_id} does not exist")
            result.missing.append(move.case_id)
            continue
        after = next_case_status(status, move.event)
        if after is None:
            if strict:
                raise GatewayError(
                    f"case {move.case_id} is {status}: it cannot take the event {move.event!r}"
                )
            result.refused.append((move, status))
            continue
        current[move.case_id] = after
        result.moved[move.case_id] = after
        history.append(
            {
                "case_id": move.case_id,
                "from_status": status,
                "to_status": after,
                "event": move.event,
                "actor": move.actor,
                "reason": move.reason,
                "placement_id": move.placement_id,
                "at": now,
            }
        )
        if move.event not in ATTESTED_BY_PACKETS:
            leaves.append(
                LeafInput(
                    kind="case",
                    ref=f"case:{move.case_id}",
                    fields={
                        "event": move.event,
                        "from": status,
                        "to": after,
                        "actor": move.actor,
                        "reason": move.reason or "",
                    },
                )
            )
    if history:
        await conn.execute(HISTORY.insert(), history)
        await conn.execute(
            CASES.update()
            .where(C.id == sa.bindparam("b_id"))
            .values(status=sa.bindparam("b_status"), updated_at=now),
            [{"b_id": case_id, "b_status": status} for case_id, status in result.moved.items()],
        )
    if leaves:
        await append_leaves(conn, leaves, now=now)
    return result


async def case_history(conn: AsyncConnection, case_id: str) -> list[dict[str, object]]:
    """The case's status changes, oldest first."""
    rows = await conn.execute(
        sa.select(H.at, H.from_status, H.to_status, H.event, H.actor, H.reason, H.placement_id)
        .where(H.case_id == case_id)
        .order_by(H.id)
    )
    return [dict(r) for r in rows.mappings()]


__all__ = [
    "ATTESTED_BY_PACKETS",
    "CaseMove",
    "MoveResult",
    "case_history",
    "move_cases",
    "statuses",
]
