"""State machines of placements, outbox items and mismatches, as transition tables.

Theory of operation
-------------------
Everything that decides whether a state change is legal lives in this file, as data.

*Placement*: created ``placed`` when allocated. Agency events move it: an acknowledgement or a
rejection first; then contact, promises and payments keep it ``active``; a dispute, legal
action, return or close move it on. Our own recall moves any open state to ``recalled``;
after that the only legal agency events are the ones that confirm the end (return, close).
Once a placement has ended (recalled, returned, closed, rejected) the agency confirms it
deleted the case's personal data with ``data.deleted`` (gateway.privacy.deletion); that event is
legal only then, and changes nothing.
An agency event with no entry for the current state is an *illegal status transition*
(reconciliation turns it into a mismatch and leaves the state unchanged). Events that change
nothing about the state (a complaint, a statement) are listed as self-transitions.

*Outbox item*: ``pending`` → ``leased`` by a claim (lease token + 1 fences older workers) →
``delivered`` on a receipt, back to ``pending`` with a later ``run_at`` on a transient
failure, ``dead`` on a permanent one or when attempts run out, ``unknown`` when the bytes may
have left and the channel's receiver cannot deduplicate. The reaper returns expired leases to
``pending``; ops may return ``dead`` and ``unknown`` items to ``pending`` (resend).

*Mismatch*: ``open`` ↔ ``investigating`` → ``resolved`` | ``dismissed`` | ``written_off``.
"""

from typing import Final

OPEN_PLACEMENT_STATES: Final = frozenset({"placed", "acknowledged", "active", "disputed", "legal"})
TERMINAL_PLACEMENT_STATES: Final = frozenset({"returned", "closed", "rejected"})
ENDED_PLACEMENT_STATES: Final = frozenset({"recalled", *TERMINAL_PLACEMENT_STATES})
"""Placements the agency no longer works: its copy of the personal data must go."""

_WORKING: Final = {
    "contact.attempted": "active",
    "promise.made": "active",
    "payment.reported": "active",
    "payment.reversed": "active",
    "dispute.opened": "disputed",
    "legal.action": "legal",
    "case.returned": "returned",
    "case.closed": "closed",
    "complaint.received": "active",
}

PLACEMENT_TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "placed": {
        "placement.acknowledged": "acknowledged",
        "placement.rejected": "rejected",
        "complaint.received": "placed",
    },
    "acknowledged": {**_WORKING, "complaint.received": "acknowledged"},
    "active": dict(_WORKING),
    "disputed": {
        "dispute.opened": "disputed",
        "contact.attempted": "disputed",
        "payment.reported": "disputed",
        "payment.reversed": "disputed",
        "legal.action": "legal",
        "case.returned": "returned",
        "case.closed": "closed",
        "complaint.received": "disputed",
    },
    "legal": {
        "legal.action": "legal",
        "contact.attempted": "legal",
        "promise.made": "legal",
        "payment.reported": "legal",
        "payment.reversed": "legal",
        "dispute.opened": "legal",
        "case.returned": "returned",
        "case.closed": "closed",
        "complaint.received": "legal",
    },
    "recalled": {
        "placement.acknowledged": "recalled",
        "case.returned": "returned",
        "case.closed": "closed",
        "complaint.received": "recalled",
        "data.deleted": "recalled",
    },
    "returned": {"complaint.received": "returned", "data.deleted": "returned"},
    "closed": {"complaint.received": "closed", "data.deleted": "closed"},
    "rejected": {"data.deleted": "rejected"},
}

ACTIVITY_EVENTS: Final = frozenset(
    {"contact.attempted", "promise.made", "payment.reported", "legal.action"}
)
"""Events that mean the agency is working the case (forbidden after a recall)."""


def next_placement_state(state: str, event_type: str) -> str | None:
    """The state after ``event_type``, or None when the event is illegal in ``state``."""
    return PLACEMENT_TRANSITIONS.get(state, {}).get(event_type)


OUTBOX_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"leased"}),
    "leased": frozenset({"delivered", "pending", "dead", "unknown"}),
    "unknown": frozenset({"pending", "delivered", "dead"}),
    "dead": frozenset({"pending"}),
    "delivered": frozenset({"dead"}),  # a bounce report after the relay accepted the mail
}

MISMATCH_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "open": frozenset({"investigating", "resolved", "dismissed", "written_off"}),
    "investigating": frozenset({"open", "resolved", "dismissed", "written_off"}),
    "resolved": frozenset(),
    "dismissed": frozenset(),
    "written_off": frozenset(),
}


def can_transition(table: dict[str, frozenset[str]], current: str, new: str) -> bool:
    return new in table.get(current, frozenset())


__all__ = [
    "ACTIVITY_EVENTS",
    "ENDED_PLACEMENT_STATES",
    "MISMATCH_TRANSITIONS",
    "OPEN_PLACEMENT_STATES",
    "OUTBOX_TRANSITIONS",
    "PLACEMENT_TRANSITIONS",
    "TERMINAL_PLACEMENT_STATES",
    "can_transition",
    "next_placement_state",
]
