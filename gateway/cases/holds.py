"""Holds: reasons a case must not be worked (deceased, bankrupt, dispute, ...), and the ops
actions on them (hold, release, reopen).

Theory of operation
-------------------
A hold is a ``case_holds`` row; it stands while ``released_at`` is empty. Its *source* says
who may end it by routine: ``intake`` holds follow the lender's file (gateway.cases.scrubs),
``agency`` holds come from an agency's return (gateway.cases.outcomes), ``ops`` holds from a
person. A person may release any of them.

What a hold change does to the case is one small table, ``hold_step``:

====================================  ===========================================
case status, holds after the change   step
====================================  ===========================================
placed / legal, a hold was added      ``recall``: the placement is recalled with the
                                      hold's code, the case moves ``hold`` → held
open / returned / recalled, any hold  ``hold`` → held
held, no hold left                    ``release`` → open
anything else                         nothing moves
====================================  ===========================================

A change that moves the case is attested by the case's own leaf (gateway.cases.history) or
the recall's; one that moves nothing (a second hold on a held case, a release that leaves
others standing) appends a ``hold`` leaf, so every hold is provable from the log alone.
A held case is never allocatable (gateway.lifecycle.ALLOCATABLE_CASE_STATES).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.placements import PlacementService
from gateway.cases.history import CaseMove, move_cases
from gateway.clock import to_datetime
from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.lifecycle import next_case_status
from gateway.ports import Clock
from gateway.store.case_tables import CaseHold
from gateway.store.database import Database
from gateway.store.tables import Case
from schemas.account import HOLD_CODE_PATTERN, KNOWN_HOLD_CODES, is_hold_code

HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
HC, C = HOLDS.c, CASES.c

HOLD_SOURCES = ("intake", "ops", "agency")
_WITH_AGENCY = frozenset({"placed", "legal"})
_HOLDABLE = frozenset({"open", "returned", "recalled"})
_CHUNK = 500
_TEXT = 500


@dataclass(frozen=True, slots=True)
class ActiveHold:
    id: int
    case_id: str
    code: str
    source: str


@dataclass(frozen=True, slots=True)
class NewHold:
    case_id: str
    code: str
    source: str
    placed_by: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """What a hold or release did.

    ``status`` is the case's status afterwards; ``recalled_placement_id`` the placement a new
    hold recalled; ``changed`` is False when the hold already stood; ``holds`` the codes still
    standing afterwards.
    """

    case_id: str
    code: str
    status: str
    recalled_placement_id: str | None
    changed: bool
    holds: tuple[str, ...] = ()


def hold_step(status: str, *, added: bool, standing: bool) -> str | None:
    """The step a hold change takes the case through (see the module's table): ``recall``,
    ``hold``, ``release`` or None. ``standing`` says whether any hold stands afterwards."""
    if added and status in _WITH_AGENCY:
        return "recall"
    if standing and status in _HOLDABLE:
        return "hold"
    if not standing and status == "held":
        return "release"
    return None


def checked_code(code: str) -> str:
    """``code`` trimmed and upper-cased, or GatewayError saying what a hold code looks like."""
    normal = code.strip().upper()
    if not is_hold_code(normal):
        raise GatewayError(
            f"{code!r} is not a hold code: use {HOLD_CODE_PATTERN} "
            f"(e.g. {', '.join(KNOWN_HOLD_CODES)}, or the lender's own code)"
        )
    return normal


def source_of(actor: str) -> str:
    """The hold source an actor writes: ``intake``, ``agency`` (``agency:ID``) or ``ops``."""
    if actor == "intake":
        return "intake"
    return "agency" if actor.startswith("agency:") else "ops"


def clip(text: str | None) -> str | None:
    return None if text is None else text[:_TEXT]


def hold_reason(code: str, note: str | None) -> str:
    return clip(f"{code}: {note}" if note else code) or code


def hold_leaf(
    case_id: str,
    *,
    action: str,
    code: str,
    source: str,
    actor: str,
    status: str,
    note: str | None,
) -> LeafInput:
    """The ``hold`` leaf of a hold added or released without moving the case."""
    return LeafInput(
        kind="hold",
        ref=f"case:{case_id}",
        fields={
            "action": action,
            "code": code,
            "source": source,
            "actor": actor,
            "status": status,
            "note": note or "",
        },
    )


async def active_holds(
    conn: AsyncConnection, case_ids: Iterable[str]
) -> dict[str, list[ActiveHold]]:
    """case id → its standing holds (oldest first), for the ids that have any."""
    found: dict[str, list[ActiveHold]] = {}
    ids = list(dict.fromkeys(case_ids))
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            sa.select(HC.id, HC.case_id, HC.code, HC.source)
            .where(HC.case_id.in_(ids[start : start + _CHUNK]), HC.released_at.is_(None))
            .order_by(HC.id)
        )
        for hold_id, case_id, code, source in rows:
            found.setdefault(case_id, []).append(ActiveHold(hold_id, case_id, code, source))
    return found


async def add_holds(conn: AsyncConnection, holds: Sequence[NewHold], *, now: datetime) -> None:
    if holds:
        await conn.execute(
            HOLDS.insert(),
            [
                {
                    "case_id": h.case_id,
                    "code": h.code,
                    "source": h.source,
                    "note": clip(h.note),
                    "placed_by": h.placed_by[:64],
                    "placed_at": now,
                }
                for h in holds
            ],
        )


async def release_holds(
    conn: AsyncConnection,
    hold_ids: Sequence[int],
    *,
    by: str,
    now: datetime,
    note: str | None = None,
) -> None:
    for start in range(0, len(hold_ids), _CHUNK):
        await conn.execute(
            HOLDS.update()
            .where(HC.id.in_(hold_ids[start : start + _CHUNK]), HC.released_at.is_(None))
            .values(released_at=now, released_by=by[:64], release_note=clip(note))
        )


async def _locked_status(conn: AsyncConnection, case_id: str) -> str:
    """The case's status, its row locked to the end of the transaction (PostgreSQL; SQLite's
    writer lock already serialises)."""
    status = (
        await conn.execute(sa.select(C.status).where(C.id == case_id).with_for_update())
    ).scalar()
    if status is None:
        raise NotFound(f"case {case_id} does not exist; check the id (cases list --search)")
    return str(status)


class CaseService:
    """Ops actions on a case: hold, release, reopen. Each ``*_in`` method works in the
    caller's transaction (the console attests its action in the same one); the plain ones
    open their own.

    Args:
        db: the database.
        placements: recalls the placement of a case a new hold stops.
        clock: time source.
    """

    def __init__(self, *, db: Database, placements: PlacementService, clock: Clock) -> None:
        self._db = db
        self._placements = placements
        self._clock = clock

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    async def hold(
        self, case_id: str, code: str, *, actor: str, note: str | None = None
    ) -> HoldOutcome:
        """Put a hold on the case; a placed case is recalled with the code as its reason."""
        now = self._now()
        async with self._db.transaction() as conn:
            return await self.hold_in(conn, case_id, code, actor=actor, note=note, now=now)

    async def release(
        self, case_id: str, code: str, *, actor: str, note: str | None = None
    ) -> HoldOutcome:
        """Release the case's standing holds with ``code``; with none left it is open again."""
        now = self._now()
        async with self._db.transaction() as conn:
            return await self.release_in(conn, case_id, code, actor=actor, note=note, now=now)

    async def reopen(self, case_id: str, *, actor: str, note: str | None = None) -> str:
        """Make a recalled (or closed) case allocatable again; returns its new status."""
        now = self._now()
        async with self._db.transaction() as conn:
            return await self.reopen_in(conn, case_id, actor=actor, note=note, now=now)

    async def hold_in(
        self,
        conn: AsyncConnection,
        case_id: str,
        code: str,
        *,
        actor: str,
        note: str | None = None,
        now: datetime,
    ) -> HoldOutcome:
        """``hold`` in the caller's transaction. Raises NotFound for an unknown case and
        GatewayError for a bad code or a case that cannot be held (closed, written off)."""
        code = checked_code(code)
        status = await _locked_status(conn, case_id)
        standing = (await active_holds(conn, [case_id])).get(case_id, [])
        codes = {h.code for h in standing}
        if code in codes:
            return HoldOutcome(case_id, code, status, None, False, tuple(sorted(codes)))
        step = hold_step(status, added=True, standing=True)
        if step is None and status != "held":
            raise GatewayError(
                f"case {case_id} is {status}: it cannot be held"
                + (" (reopen it first)" if next_case_status(status, "reopen") else "")
            )
        source = source_of(actor)
        await add_holds(conn, [NewHold(case_id, code, source, actor, note)], now=now)
        recalled: str | None = None
        if step == "recall":
            recalled = await self._placements.recall_in(
                conn, case_id, code, now=now, event="hold", actor=actor
            )
            status = "held"
        elif step == "hold":
            await move_cases(
                conn,
                [CaseMove(case_id, "hold", actor, hold_reason(code, note))],
                now=now,
                strict=True,
                known={case_id: status},
            )
            status = "held"
        else:
            leaf = hold_leaf(
                case_id,
                action="add",
                code=code,
                source=source,
                actor=actor,
                status=status,
                note=note,
            )
            await append_leaves(conn, [leaf], now=now)
        return HoldOutcome(case_id, code, status, recalled, True, tuple(sorted({*codes, code})))

    async def release_in(
        self,
        conn: AsyncConnection,
        case_id: str,
        code: str,
        *,
        actor: str,
        note: str | None = None,
        now: datetime,
    ) -> HoldOutcome:
        """``release`` in the caller's transaction: every standing hold with ``code``,
        whatever its source. Raises NotFound for an unknown case, GatewayError when no such
        hold stands."""
        code = checked_code(code)
        status = await _locked_status(conn, case_id)
        standing = (await active_holds(conn, [case_id])).get(case_id, [])
        released = [h for h in standing if h.code == code]
        if not released:
            holds = ", ".join(sorted({h.code for h in standing}))
            raise GatewayError(
                f"case {case_id} has no standing hold {code}; "
                + (f"its holds are: {holds}" if holds else "it has no standing holds")
            )
        await release_holds(conn, [h.id for h in released], by=actor, note=note, now=now)
        remaining = tuple(sorted({h.code for h in standing if h.code != code}))
        if hold_step(status, added=False, standing=bool(remaining)) == "release":
            await move_cases(
                conn,
                [CaseMove(case_id, "release", actor, hold_reason(code, note))],
                now=now,
                strict=True,
                known={case_id: status},
            )
            status = "open"
        else:
            leaves = [
                hold_leaf(
                    case_id,
                    action="release",
                    code=code,
                    source=h.source,
                    actor=actor,
                    status=status,
                    note=note,
                )
                for h in released
            ]
            await append_leaves(conn, leaves, now=now)
        return HoldOutcome(case_id, code, status, None, True, remaining)

    async def reopen_in(
        self,
        conn: AsyncConnection,
        case_id: str,
        *,
        actor: str,
        note: str | None = None,
        now: datetime,
    ) -> str:
        """``reopen`` in the caller's transaction: recalled → returned, closed → open (then
        held again if a hold still stands). Raises NotFound or GatewayError."""
        status = await _locked_status(conn, case_id)
        after = next_case_status(status, "reopen")
        if after is None:
            raise GatewayError(
                f"case {case_id} is {status}: only a recalled or closed case can be reopened"
            )
        moves = [CaseMove(case_id, "reopen", actor, clip(note))]
        standing = (await active_holds(conn, [case_id])).get(case_id, [])
        if standing and hold_step(after, added=False, standing=True) == "hold":
            codes = ";".join(sorted({h.code for h in standing}))
            moves.append(CaseMove(case_id, "hold", actor, clip(f"still held: {codes}")))
        result = await move_cases(conn, moves, now=now, strict=True, known={case_id: status})
        return result.moved[case_id]


__all__ = [
    "HOLD_SOURCES",
    "ActiveHold",
    "CaseService",
    "HoldOutcome",
    "NewHold",
    "active_holds",
    "add_holds",
    "checked_code",
    "clip",
    "hold_leaf",
    "hold_reason",
    "hold_step",
    "release_holds",
    "source_of",
]
