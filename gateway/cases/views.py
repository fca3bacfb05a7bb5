"""The read side of cases: find them and see everything about one, without personal data.

Theory of operation: ``list_cases`` pages through ``cases`` in id order with a keyset cursor
(``after``: the last id of the previous page), every ``CaseFilter`` criterion written as a
clause on ``cases`` (what the open placement or an active hold says is an ``EXISTS``), and
decorates the page with its open placements and active holds in one query each.
``case_detail`` reads one case and everything recorded about its life: holds, placements
with the allocation decision that chose each agency ("why this agency"), the latest round
that left it unplaced, escalations and the lifecycle history. The CLI (``cases list / show /
history``), the console's JSON API and its pages all read through here, so all three say the
same thing. Personal data (``cases.pii``) and the intake row's MAC are never selected.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import NotFound
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.store.case_tables import AllocationDecision, CaseHistory, CaseHold, Escalation
from gateway.store.tables import Case, Placement

Row = dict[str, Any]

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
DECISIONS = AllocationDecision.__table__  # type: ignore[attr-defined]
ESCALATIONS = Escalation.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
C, P, HO, D, E, H = CASES.c, PLACEMENTS.c, HOLDS.c, DECISIONS.c, ESCALATIONS.c, HISTORY.c

PRIVATE_COLUMNS: Final = frozenset({"pii", "content_mac"})
CASE_COLUMNS: Final = tuple(col for col in CASES.c if col.name not in PRIVATE_COLUMNS)
"""Every column of ``cases`` but the sealed personal data and the intake row's MAC."""
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """A set of cases: every given criterion must hold (values of one criterion are OR-ed).

    ``agencies`` and ``tiers`` are those of the case's open placement; ``held`` means it has
    an active hold (False: none), ``hold_codes`` an active hold with one of these codes (in
    any case: codes are stored in capitals);
    ``unallocated`` that the last allocation round left it unplaced with a reason;
    ``search`` is any id, exactly: case id, debtor id, placement id or the agency's own case
    reference (as typed, or in capitals). ``debtor_key`` is one debtor's keyed hash
    (``PiiKeyRing.debtor_key``); with ``search_keys`` (the keys of ``search``'s spellings)
    ``search`` finds a debtor by its key and never by the id in clear (the console does this;
    the CLI, on the server, matches ``debtor_id`` as given).
    """

    statuses: tuple[str, ...] = ()
    buckets: tuple[str, ...] = ()
    agencies: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    held: bool | None = None
    hold_codes: tuple[str, ...] = ()
    debtor_id: str | None = None
    debtor_key: str | None = None
    unallocated: bool | None = None
    search: str | None = None
    search_keys: tuple[str, ...] | None = None

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        found: list[sa.ColumnElement[bool]] = []
        if self.statuses:
            found.append(C.status.in_(self.statuses))
        if self.buckets:
            found.append(C.bucket.in_(self.buckets))
        if self.debtor_id:
            found.append(C.debtor_id == self.debtor_id)
        if self.debtor_key:
            found.append(C.debtor_key == self.debtor_key)
        if self.agencies or self.tiers:
            placed = sa.select(P.id).where(P.case_id == C.id, P.state.in_(OPEN_PLACEMENT_STATES))
            if self.agencies:
                placed = placed.where(P.agency_id.in_(self.agencies))
            if self.tiers:
                placed = placed.where(P.tier.in_(self.tiers))
            found.append(placed.exists())
        if self.held is not None or self.hold_codes:
            active = sa.select(HO.id).where(HO.case_id == C.id, HO.released_at.is_(None))
            if self.hold_codes:
                codes = [code.strip().upper() for code in self.hold_codes]
                found.append(active.where(HO.code.in_(codes)).exists())
            if self.held is not None:
                found.append(active.exists() if self.held else ~active.exists())
        if self.unallocated is not None:
            reason = C.unallocated_reason
            found.append(reason.is_not(None) if self.unallocated else reason.is_(None))
        if self.search and (term := self.search.strip()):
            terms = list(dict.fromkeys((term, term.upper())))
            found.append(C.id.in_(_ids_matching(terms, self.search_keys)))
        return found


def _ids_matching(terms: list[str], keys: tuple[str, ...] | None) -> sa.CompoundSelect[Any]:
    # One indexed look-up per kind of id, rather than an OR the planner may not split.
    debtor = C.debtor_id.in_(terms) if keys is None else C.debtor_key.in_(keys)
    return sa.union(
        sa.select(C.id).where(C.id.in_(terms)),
        sa.select(C.id).where(debtor),
        sa.select(P.case_id).where(P.id.in_(terms)),
        sa.select(P.case_id).where(P.agency_case_ref.in_(terms)),
    )


async def debtor_key_among(conn: AsyncConnection, keys: Iterable[str]) -> str | None:
    """The one of ``keys`` that some case's debtor has, if any."""
    found = await conn.execute(sa.select(C.debtor_key).where(C.debtor_key.in_(list(keys))).limit(1))
    return found.scalar_one_or_none()


async def _rows(conn: AsyncConnection, query: sa.Select[Any]) -> list[Row]:
    return [dict(r) for r in (await conn.execute(query)).mappings()]


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


async def open_placements(conn: AsyncConnection, case_ids: Sequence[str]) -> dict[str, Row]:
    """case id → its open placement (the newest, should there ever be two)."""
    if not case_ids:
        return {}
    found: dict[str, Row] = {}
    for row in await _rows(
        conn,
        sa.select(
            P.case_id, P.id, P.agency_id, P.state, P.tier, P.return_by, P.placed_at, P.renewals
        )
        .where(P.case_id.in_(case_ids), P.state.in_(OPEN_PLACEMENT_STATES))
        .order_by(P.placed_at, P.id),
    ):
        found[row.pop("case_id")] = row
    return found


async def active_hold_codes(conn: AsyncConnection, case_ids: Sequence[str]) -> dict[str, list[str]]:
    """case id → the codes of its active holds, oldest first."""
    if not case_ids:
        return {}
    found: dict[str, list[str]] = {}
    rows = await conn.execute(
        sa.select(HO.case_id, HO.code)
        .where(HO.case_id.in_(case_ids), HO.released_at.is_(None))
        .order_by(HO.id)
    )
    for case_id, code in rows:
        found.setdefault(case_id, []).append(code)
    return found


async def list_cases(
    conn: AsyncConnection,
    target: CaseFilter,
    *,
    limit: int = DEFAULT_LIMIT,
    after: str | None = None,
) -> Row:
    """One page of the cases in ``target``, in id order, after the id ``after``.

    Returns ``total`` (cases matching, all pages), ``items`` (each case with its open
    placement's agency, state, tier and return date, and its active hold codes), ``limit``
    and ``next_after`` (the cursor of the next page; None on the last).
    """
    limit = max(1, min(limit, MAX_LIMIT))
    clauses = target.clauses()
    total = (
        await conn.execute(sa.select(sa.func.count()).select_from(CASES).where(*clauses))
    ).scalar_one()
    query = (
        sa.select(
            C.id, C.debtor_id, C.debtor_key, C.status, C.bucket, C.dpd, C.currency,
            C.balance_minor, C.product, C.unallocated_reason, C.updated_at,
        )
        .where(*clauses)
        .order_by(C.id)
        .limit(limit + 1)
    )  # fmt: skip
    if after:
        query = query.where(C.id > after)
    items = await _rows(conn, query)
    more = len(items) > limit
    items = items[:limit]
    ids = [item["id"] for item in items]
    placed = await open_placements(conn, ids)
    holds = await active_hold_codes(conn, ids)
    for item in items:
        p = placed.get(item["id"])
        item.update(
            placement_id=p["id"] if p else None,
            agency_id=p["agency_id"] if p else None,
            placement_state=p["state"] if p else None,
            tier=p["tier"] if p else None,
            return_by=p["return_by"] if p else None,
            holds=holds.get(item["id"], []),
        )
    return {
        "total": total,
        "limit": limit,
        "after": after,
        "next_after": items[-1]["id"] if more else None,
        "items": items,
    }


def _decision(row: Row) -> Row:
    return {
        **row,
        "case_ids": _loads(row["case_ids"]) or [],
        "candidates": _loads(row["candidates"]) or [],
    }


async def _decisions(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, Row]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    found = await _rows(conn, sa.select(DECISIONS).where(D.id.in_(wanted)))
    return {row["id"]: _decision(row) for row in found}


async def _last_unplaced(conn: AsyncConnection, case: Row, since: Any) -> Row | None:
    """The newest decision that left ``case`` unplaced, if newer than ``since``."""
    query = (
        sa.select(DECISIONS)
        .where(D.debtor_id == case["debtor_id"], D.chosen_agency.is_(None))
        .order_by(D.id.desc())
    )
    if since is not None:
        query = query.where(D.decided_at >= since)
    for row in await _rows(conn, query):
        decision = _decision(row)
        if case["id"] in decision["case_ids"]:
            return decision
    return None


async def _case_row(conn: AsyncConnection, case_id: str) -> Row:
    found = await _rows(conn, sa.select(*CASE_COLUMNS).where(C.id == case_id))
    if not found:
        raise NotFound(f"case {case_id} does not exist")
    return found[0]


async def history_of(conn: AsyncConnection, case_id: str) -> list[Row]:
    """The case's status changes, oldest first; NotFound for an unknown case."""
    await _case_row(conn, case_id)
    return await _history(conn, case_id)


async def _history(conn: AsyncConnection, case_id: str) -> list[Row]:
    return await _rows(
        conn,
        sa.select(
            H.id, H.at, H.event, H.from_status, H.to_status, H.actor, H.reason, H.placement_id
        )
        .where(H.case_id == case_id)
        .order_by(H.id),
    )


async def case_detail(conn: AsyncConnection, case_id: str) -> Row:
    """Everything about one case but its personal data; NotFound for an unknown case.

    ``holds`` newest first, each ``active`` until released; ``placements`` newest first,
    each with ``decision``: the allocation decision that chose its agency (candidates with
    their verdicts and weights, the draw), None for a placement made before decisions were
    recorded; ``unallocated_decision``: the newest round since the last placement that left
    the case unplaced; ``escalations`` newest first; ``history`` oldest first.
    """
    case = await _case_row(conn, case_id)
    holds = await _rows(conn, sa.select(HOLDS).where(HO.case_id == case_id).order_by(HO.id.desc()))
    for hold in holds:
        hold["active"] = hold["released_at"] is None
    placements = await _rows(
        conn,
        sa.select(PLACEMENTS).where(P.case_id == case_id).order_by(P.placed_at.desc(), P.id.desc()),
    )
    decisions = await _decisions(
        conn, (p["decision_id"] for p in placements if p["decision_id"] is not None)
    )
    for placement in placements:
        placement["open"] = placement["state"] in OPEN_PLACEMENT_STATES
        placement["decision"] = decisions.get(placement["decision_id"])
    escalations = await _rows(
        conn,
        sa.select(ESCALATIONS).where(E.case_id == case_id).order_by(E.id.desc()),
    )
    latest = placements[0]["placed_at"] if placements else None
    return {
        "case": case,
        "holds": holds,
        "placements": placements,
        "unallocated_decision": await _last_unplaced(conn, case, latest),
        "escalations": escalations,
        "history": await _history(conn, case_id),
    }


__all__ = [
    "CASE_COLUMNS",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "CaseFilter",
    "active_hold_codes",
    "case_detail",
    "debtor_key_among",
    "history_of",
    "list_cases",
    "open_placements",
]
