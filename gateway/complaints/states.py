"""A complaint's states, its deadline and who it is held against (pure).

Theory of operation
-------------------
A complaint opens (``open``), someone looks into it (``investigating``), it is answered with
an outcome (``resolved``) and, once the debtor has been told, ``closed``. A resolved or closed
complaint may be reopened (back to ``investigating``: the debtor came back, or the outcome
was wrong); the outcome is then cleared until it is resolved again. The table below is the
whole machine; every other action (assign an owner, extend the deadline once, correct the
attribution, hold or release the case) moves nothing and is allowed while the complaint is
not closed.

=================  ===============  ==================
state              action           next
=================  ===============  ==================
open               investigate      investigating
open               resolve          resolved
investigating      resolve          resolved
resolved           close            closed
resolved           reopen           investigating
closed             reopen           investigating
=================  ===============  ==================

The answer is due by the end of the lender's local day ``days`` after receipt (``deadline``);
a complaint still ``open`` or ``investigating`` after it is overdue. It was answered on time
when it was resolved by its deadline (the last resolution counts after a reopening).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.errors import ComplaintRefused

STATES = ("open", "investigating", "resolved", "closed")
OPEN_STATES = frozenset({"open", "investigating"})
"""States in which the complaint waits for an answer (and can be overdue)."""
OUTCOMES = ("upheld", "partly_upheld", "not_upheld", "withdrawn")
SOURCES = ("agency", "lender_import", "lender_webhook", "ops")
CATEGORIES = (
    "contact_hours",
    "contact_frequency",
    "third_party",
    "harassment",
    "misrepresentation",
    "fees",
    "privacy",
    "other",
)
"""Complaint categories (the report counts by them); an unknown one is refused."""
HOLD_CODE = "COMPLAINT"
"""The code of the case hold a complaint places (gateway.cases.holds)."""

TRANSITIONS: Mapping[tuple[str, str], str] = {
    ("open", "investigate"): "investigating",
    ("open", "resolve"): "resolved",
    ("investigating", "resolve"): "resolved",
    ("resolved", "close"): "closed",
    ("resolved", "reopen"): "investigating",
    ("closed", "reopen"): "investigating",
}
MOVES = frozenset(action for _state, action in TRANSITIONS)
STILL_ACTIONS = frozenset({"assign", "extend", "attribute", "hold", "release"})
"""Actions that change the complaint but not its state; refused once it is closed."""


def next_state(state: str, action: str, *, ref: str) -> str:
    """The state ``action`` takes complaint ``ref`` to, or ComplaintRefused naming what it
    can do instead."""
    if action in STILL_ACTIONS:
        if state == "closed":
            raise ComplaintRefused(f"complaint {ref} is closed: reopen it first to {action} it")
        return state
    after = TRANSITIONS.get((state, action))
    if after is None:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == state)
        raise ComplaintRefused(
            f"complaint {ref} is {state}: it cannot {action}"
            + (f" (it can: {', '.join(allowed)})" if allowed else "")
        )
    return after


def checked_outcome(outcome: str, *, ref: str) -> str:
    normal = outcome.strip().lower()
    if normal not in OUTCOMES:
        raise ComplaintRefused(
            f"complaint {ref}: outcome {outcome!r} is not one of {', '.join(OUTCOMES)}"
        )
    return normal


def checked_category(category: str) -> str:
    normal = category.strip().lower() or "other"
    if normal not in CATEGORIES:
        raise ComplaintRefused(f"category {category!r} is not one of {', '.join(CATEGORIES)}")
    return normal


def answer_days(
    channel: str,
    category: str,
    *,
    default: int,
    by_channel: Mapping[str, int],
    by_category: Mapping[str, int],
) -> int:
    """Days to answer: the shortest of the default's overrides that apply (the default when
    none does)."""
    found = [d for d in (by_channel.get(channel), by_category.get(category)) if d is not None]
    return min(found) if found else default


def deadline(received_at: datetime, days: int, zone: ZoneInfo) -> datetime:
    """The end of the lender's local day ``days`` after the day of receipt."""
    day = received_at.astimezone(zone).date() + timedelta(days=days)
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone)


def is_overdue(state: str, deadline_at: datetime, now: datetime) -> bool:
    return state in OPEN_STATES and now > deadline_at


def on_time(deadline_at: datetime, resolved_at: datetime | None) -> bool | None:
    """Whether it was answered by its deadline; None while unanswered."""
    return None if resolved_at is None else resolved_at <= deadline_at


@dataclass(frozen=True, slots=True)
class Held:
    """One placement of a case: who held it from when (and until when, if it ended)."""

    placement_id: str
    agency_id: str
    placed_at: datetime
    ended_at: datetime | None = None


def holder_at(placements: Iterable[Held], at: datetime) -> Held | None:
    """The placement that held the case at ``at``: the latest placed on or before it that had
    not ended by then; failing that, the latest placed on or before it (a complaint about
    the agency that worked the case last, received just after it ended)."""
    before = sorted((p for p in placements if p.placed_at <= at), key=lambda p: p.placed_at)
    if not before:
        return None
    holding = [p for p in before if p.ended_at is None or p.ended_at > at]
    return (holding or before)[-1]


__all__ = [
    "CATEGORIES",
    "HOLD_CODE",
    "MOVES",
    "OPEN_STATES",
    "OUTCOMES",
    "SOURCES",
    "STATES",
    "STILL_ACTIONS",
    "TRANSITIONS",
    "Held",
    "answer_days",
    "checked_category",
    "checked_outcome",
    "deadline",
    "holder_at",
    "is_overdue",
    "next_state",
    "on_time",
]
