"""Mismatch facts: what the resolution rules need to know about mismatches, read from the store.

``load_facts`` gathers, for a set of mismatch ids, each mismatch with the placement and the
agency event it points at, the dead or unknown outbox items that could be resent (its own,
else those of its placement) and its assignee, in a few set-based queries, never a query
per mismatch. ``select_ids`` picks the mismatches of a console filter. The rules that judge
the facts are pure (gateway.resolutions.rules); gateway.resolutions.actions re-reads them inside the
transaction that acts, the console (gateway.console.read_model) to show what may be done.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.resolutions.rules import MismatchFacts, MismatchFilter
from gateway.store.console_tables import MismatchAssignment
from gateway.store.tables import AgencyEventRow, Mismatch, OutboxItem, Placement

MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ASSIGNMENTS = MismatchAssignment.__table__  # type: ignore[attr-defined]
M, P = MISMATCHES.c, PLACEMENTS.c
MESSAGE_KINDS = frozenset({"unverified_reply"})
"""Mismatch kinds about a stored message (``theirs.inbound_id``) that an action can read."""


async def select_ids(conn: AsyncConnection, target: MismatchFilter, limit: int) -> list[int]:
    query = sa.select(M.id).where(*target.clauses()).order_by(M.id).limit(limit)
    return list((await conn.execute(query)).scalars().all())


async def count_matching(conn: AsyncConnection, target: MismatchFilter) -> int:
    query = sa.select(sa.func.count()).select_from(MISMATCHES).where(*target.clauses())
    return int((await conn.execute(query)).scalar_one())


async def load_facts(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, MismatchFacts]:
    """The facts of each existing mismatch in ``ids``, in a few set-based queries."""
    if not ids:
        return {}
    rows = (await conn.execute(sa.select(MISMATCHES).where(M.id.in_(list(ids))))).mappings().all()
    pids = sorted({r["placement_id"] for r in rows if r["placement_id"]})
    placements = {
        r["id"]: r
        for r in (await conn.execute(sa.select(PLACEMENTS).where(P.id.in_(pids)))).mappings()
    }
    event_ids = sorted({r["event_id"] for r in rows if r["event_id"] is not None})
    events = {
        r.id: r
        for r in await conn.execute(
            sa.select(
                EVENTS.c.id, EVENTS.c.event_type, EVENTS.c.applied, EVENTS.c.amount_minor
            ).where(EVENTS.c.id.in_(event_ids))
        )
    }
    batches = {r["id"]: _batch_outbox_ids(r["kind"], r["ours"]) for r in rows}
    named = [r["outbox_id"] for r in rows if r["outbox_id"] is not None]
    dead = await conn.execute(
        sa.select(OUTBOX.c.id, OUTBOX.c.placement_id)
        .where(
            OUTBOX.c.state.in_(["dead", "unknown"]),
            sa.or_(
                OUTBOX.c.placement_id.in_(pids),
                OUTBOX.c.id.in_(named + [i for ids in batches.values() for i in ids]),
            ),
        )
        .order_by(OUTBOX.c.id)
    )
    by_outbox: dict[int, int] = {}
    by_placement: dict[str, list[int]] = {}
    for item_id, pid in dead.all():
        by_outbox[item_id] = item_id
        by_placement.setdefault(pid, []).append(item_id)
    assignees: dict[int, str] = dict(
        (
            await conn.execute(
                sa.select(ASSIGNMENTS.c.mismatch_id, ASSIGNMENTS.c.assignee).where(
                    ASSIGNMENTS.c.mismatch_id.in_(list(ids))
                )
            )
        ).all()
    )
    facts: dict[int, MismatchFacts] = {}
    for r in rows:
        placement = placements.get(r["placement_id"])
        event = events.get(r["event_id"])
        own = r["outbox_id"]
        resendable = (
            tuple(i for i in batches[r["id"]] if i in by_outbox)
            if batches[r["id"]]
            else (own,)
            if own in by_outbox
            else tuple(by_placement.get(r["placement_id"] or "", ()))
        )
        facts[r["id"]] = MismatchFacts(
            id=r["id"],
            kind=r["kind"],
            state=r["state"],
            agency_id=r["agency_id"],
            placement_id=r["placement_id"],
            delta_minor=r["delta_minor"],
            case_id=placement["case_id"] if placement else None,
            placement_state=placement["state"] if placement else None,
            currency=placement["currency"] if placement else None,
            version=placement["version"] if placement else None,
            balance_minor=placement["balance_minor"] if placement else None,
            acked_balance_minor=placement["acked_balance_minor"] if placement else None,
            collected_minor=placement["collected_minor"] if placement else None,
            event_id=r["event_id"],
            event_type=event.event_type if event else None,
            event_applied=bool(event.applied) if event else None,
            event_amount_minor=event.amount_minor if event else None,
            resendable=resendable,
            assignee=assignees.get(r["id"]),
            inbound_id=_inbound_id(r["kind"], r["theirs"]),
        )
    return facts


def _batch_outbox_ids(kind: str, ours: str | None) -> tuple[int, ...]:
    """The packets of a batch given up as a whole (one ``dead_delivery`` for the file)."""
    if kind != "dead_delivery" or not ours:
        return ()
    value = json.loads(ours)
    ids = value.get("outbox_ids") if isinstance(value, dict) else None
    return tuple(i for i in ids if isinstance(i, int)) if isinstance(ids, list) else ()


def _inbound_id(kind: str, theirs: str | None) -> int | None:
    """The stored message of a mismatch about a message (its ``theirs`` names it)."""
    if kind not in MESSAGE_KINDS or not theirs:
        return None
    value = json.loads(theirs).get("inbound_id")
    return value if isinstance(value, int) else None


__all__ = ["count_matching", "load_facts", "select_ids"]
