"""Conduct violations raised as contact attempts arrive: the store's side of
gateway.reconciliation.conduct_rules.

gateway.reconciliation.recorder.apply_events calls ``on_arrival`` once per group commit with
the batch's contact attempts only, after the events are numbered; a batch without contacts
costs nothing. At most four queries per batch: the holds on the cases, when each disputed
placement's dispute opened, and (for calls, when the contact rules are given) the debtors
of the cases and their stored attempts of the last ``_HISTORY`` days.
"""

import functools
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.reconciliation.conduct_rules import (
    ContactSeen,
    HoldSpan,
    contact_rule_breaks,
    judge_contacts,
)
from gateway.reconciliation.contact_rules import ContactRules
from gateway.reconciliation.event_audit import Break, ContactFacts
from gateway.reconciliation.kinds import MismatchDraft, PlacementView
from gateway.store.case_tables import CaseHold
from gateway.store.tables import AgencyEventRow, Case, Placement
from schemas.events import AgencyEvent, ContactAttempted

HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
HC, E, C, P = HOLDS.c, EVENTS.c, CASES.c, PLACEMENTS.c

_HISTORY: Final = timedelta(days=9)
"""How far back (by the event's time) stored attempts can share a cap with a new one: the
rolling 7 days, a local day and a day's skew between an attempt and its report."""
_CALLS: Final = frozenset({"call"})

# Built once: a group commit runs them every few milliseconds, and building the expressions
# cost more than SQLite's work.
_HOLDS_SQL: Final = sa.select(HC.case_id, HC.code, HC.placed_at, HC.released_at).where(
    HC.case_id.in_(sa.bindparam("cases", expanding=True)),
    HC.placed_at <= sa.bindparam("latest"),
    sa.or_(HC.released_at.is_(None), HC.released_at > sa.bindparam("earliest")),
)
_DISPUTED_SINCE_SQL: Final = (
    sa.select(E.placement_id, sa.func.max(E.occurred_at))
    .where(
        E.placement_id.in_(sa.bindparam("pids", expanding=True)),
        E.event_type == "dispute.opened",
        E.applied,
    )
    .group_by(E.placement_id)
)
_DEBTOR_PLACEMENTS_SQL: Final = (
    sa.select(P.id, C.debtor_id, P.agency_id)
    .select_from(PLACEMENTS.join(CASES, C.id == P.case_id))
    .where(
        C.debtor_id.in_(
            sa.select(C.debtor_id)
            .where(C.id.in_(sa.bindparam("cases", expanding=True)))
            .scalar_subquery()
        )
    )
)
_STORED_CONTACTS_SQL: Final = sa.select(E.id, E.agency_id, E.placement_id, E.data).where(
    E.placement_id.in_(sa.bindparam("pids", expanding=True)),
    E.event_type == "contact.attempted",
    E.occurred_at >= sa.bindparam("since"),
)

Arrival = tuple[str, int, AgencyEvent, PlacementView | None, bool]
"""(agency id, event id, event, the placement before it, applied) of one arriving event."""
MismatchRow = tuple[str, MismatchDraft, str, int | None, int | None]


def _seen(
    agency_id: str, event_id: int, event: ContactAttempted, view: PlacementView
) -> ContactSeen:
    d = event.data
    return ContactSeen(
        event_id=event_id,
        agency_id=agency_id,
        placement_id=view.id,
        case_id=view.case_id,
        attempted_at=d.attempted_at,
        channel=d.channel,
        effective=d.effective,
        party=d.party,
        purpose=d.purpose,
        collector_id=d.collector_id,
        disputed=view.state == "disputed",
    )


async def on_arrival(
    conn: AsyncConnection,
    arrivals: Sequence[Arrival],
    *,
    rules: ContactRules | None,
    now: datetime,
) -> list[MismatchRow]:
    """The conduct mismatches of the contact attempts among ``arrivals`` (others are
    skipped) on placements of the agency that reported them. ``rules`` None leaves quiet
    hours and caps to the batch run."""
    seen: list[ContactSeen] = []
    applied: list[ContactSeen] = []
    for agency_id, event_id, event, view, ok in arrivals:
        if not isinstance(event, ContactAttempted) or view is None or view.agency_id != agency_id:
            continue
        c = _seen(agency_id, event_id, event, view)
        seen.append(c)
        # The batch run judges the rules on every attempt not refused for the placement's
        # recall (an illegal transition is still a contact made).
        if ok or view.state != "recalled":
            applied.append(c)
    if not seen:
        return []
    earliest = min(c.attempted_at for c in seen)
    latest = max(c.attempted_at for c in seen)
    holds: dict[str, list[HoldSpan]] = {}
    rows = await conn.execute(
        _HOLDS_SQL,
        {"cases": sorted({c.case_id for c in seen}), "latest": latest, "earliest": earliest},
    )
    for case_id, code, placed_at, released_at in rows.all():
        holds.setdefault(case_id, []).append(HoldSpan(case_id, code, placed_at, released_at))
    disputed = sorted({c.placement_id for c in seen if c.disputed})
    if disputed:
        since: dict[str, datetime] = dict(
            (await conn.execute(_DISPUTED_SINCE_SQL, {"pids": disputed})).all()
        )
        seen = [
            replace(c, disputed_since=since.get(c.placement_id)) if c.disputed else c for c in seen
        ]
    breaks = judge_contacts(seen, holds)
    calls = [c for c in applied if c.channel in _CALLS]
    if rules is not None and applied:
        breaks += await _rule_breaks(conn, applied, calls, rules)
    return [(b.dedupe_key, b.draft, b.agency_id, b.event_id, None) for b in breaks]


async def _rule_breaks(
    conn: AsyncConnection,
    applied: Sequence[ContactSeen],
    calls: Sequence[ContactSeen],
    rules: ContactRules,
) -> list[Break]:
    """Quiet hours and caps, judged as the batch run judges them (one pass over the
    debtors' recent attempts; none is read when no call arrived)."""
    debtors: dict[str, str] = {}
    history: list[ContactFacts] = []
    if calls:
        since = min(c.attempted_at for c in calls) - _HISTORY
        rows = await conn.execute(
            _DEBTOR_PLACEMENTS_SQL, {"cases": sorted({c.case_id for c in calls})}
        )
        holders: dict[str, str] = {}
        for pid, debtor, holder in rows.all():
            debtors[pid], holders[pid] = debtor, holder
        stored = await conn.execute(_STORED_CONTACTS_SQL, {"pids": sorted(debtors), "since": since})
        for eid, agency_id, pid, data in stored.all():
            if holders.get(pid) != agency_id:
                continue  # refused as wrong_agency, by the batch run too
            judged = _judged(data)
            if judged is not None:
                history.append((eid, agency_id, pid, *judged))
    new = [c.facts() for c in applied]
    for c in applied:
        debtors.setdefault(c.placement_id, "")  # quiet hours need no debtor
    return contact_rule_breaks(new, history, debtors, rules)


@functools.lru_cache(maxsize=16_384)
def _judged(data: str) -> tuple[int, int] | None:
    """(at_s, contact code) of a stored attempt's ``data``, as ContactSeen.facts gives them.

    Every group commit with calls reads the debtors' recent attempts again, so the same
    stored rows come back batch after batch; keyed by the stored JSON itself, the answer
    cannot go stale, and a row costs a dictionary look-up instead of a parse."""
    try:
        d = json.loads(data)
        at = datetime.fromisoformat(d["attempted_at"])
        seen = ContactSeen(0, "", "", "", at, d["channel"], bool(d["effective"]))
    except (KeyError, TypeError, ValueError):
        return None  # not a contact the batch run can judge either
    _, _, _, at_s, code = seen.facts()
    return at_s, code


__all__ = ["Arrival", "on_arrival"]
