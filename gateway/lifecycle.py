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
legal only then, and changes nothing. ``attribution.disputed`` (money credited to the placement)
is legal in every state and changes nothing.
An agency event with no entry for the current state is an *illegal status transition*
(reconciliation turns it into a mismatch and leaves the state unchanged). Events that change
nothing about the state (a complaint, a statement) are listed as self-transitions.

*Outbox item*: ``pending`` → ``leased`` by a claim (lease token + 1 fences older workers) →
``delivered`` on a receipt, back to ``pending`` with a later ``run_at`` on a transient
failure, ``dead`` on a permanent one or when attempts run out, ``unknown`` when the bytes may
have left and the channel's receiver cannot deduplicate. The reaper returns expired leases to
``pending``; ops may return ``dead`` and ``unknown`` items to ``pending`` (resend).

*Mismatch*: ``open`` ↔ ``investigating`` → ``resolved`` | ``dismissed`` | ``written_off``.

*Case*: the lender's account through its life. ``open`` when it arrives; ``placed`` with a
collection agency or ``legal`` with a law firm; back to ``returned`` when the agency returns or
rejects it, its placement expires or it is recalled to escalate (the next allocation takes it to
the next tier); ``recalled`` when ops take it back (``reopen`` makes it allocatable again);
``held`` while a hold (deceased, bankrupt, dispute, ...) stands, and a hold on a placed case
recalls it; ``closed`` when it is paid off, cured or settled (a later intake that shows it
overdue again reopens it); ``written_off`` for good. Every move is a row of ``case_history``
with who or what made it and why (gateway.cases.history).
"""

from typing import Final

OPEN_PLACEMENT_STATES: Final = frozenset({"placed", "acknowledged", "active", "disputed", "legal"})
TERMINAL_PLACEMENT_STATES: Final = frozenset({"returned", "closed", "rejected"})
ENDED_PLACEMENT_STATES: Final = frozenset({"recalled", *TERMINAL_PLACEMENT_STATES})
"""Placements the agency no longer works: its copy of the personal data must go."""

_REQUEST_EVENTS: Final = ("waiver.requested", "instalment.requested", "pause.requested")
"""An agency's requests for a waiver, plan or pause (gateway.concessions): they leave the
placement's state as it is, on any placement the agency is working."""


def _same(state: str) -> dict[str, str]:
    return {event: state for event in _REQUEST_EVENTS}


_REQUESTS: Final = _same("active")

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
    **_REQUESTS,
}

PLACEMENT_TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "placed": {
        "placement.acknowledged": "acknowledged",
        "placement.rejected": "rejected",
        "complaint.received": "placed",
    },
    "acknowledged": {**_WORKING, "complaint.received": "acknowledged", **_same("acknowledged")},
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
        **_same("disputed"),
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
        **_same("legal"),
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
for _state, _moves in PLACEMENT_TRANSITIONS.items():
    # A dispute about money credited to the placement (gateway.settlement.disputes) changes
    # nothing and is legal in every state: the grace window credits ended placements too.
    _moves["attribution.disputed"] = _state

AGENCY_WIDE_EVENTS: Final = frozenset(
    {"statement.submitted", "settlement.confirmed", "settlement.disputed"}
)
"""Events about no one placement (an inventory; an answer to a settlement statement): no
placement state moves, and reconciliation's placement checks skip them."""

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


CASE_STATES: Final = (
    "open",
    "held",
    "placed",
    "legal",
    "returned",
    "recalled",
    "closed",
    "written_off",
)

_ENDS: Final = {"close": "closed", "write_off": "written_off"}
_WAITING: Final = {"place": "placed", "place_legal": "legal", "hold": "held", **_ENDS}
_WITH_AGENCY: Final = {
    "return": "returned",
    "reject": "returned",
    "expire": "returned",
    "escalate": "returned",
    "recall": "recalled",
    "hold": "held",
    **_ENDS,
}

CASE_TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "open": dict(_WAITING),
    "returned": dict(_WAITING),
    "held": {"hold": "held", "release": "open", **_ENDS},
    "placed": dict(_WITH_AGENCY),
    "legal": dict(_WITH_AGENCY),
    "recalled": {"reopen": "returned", "hold": "held", **_ENDS},
    "closed": {"reopen": "open", "close": "closed"},
    "written_off": {},
}
"""Case status → {event → next status}. ``place`` / ``place_legal`` come from allocation,
``return`` / ``reject`` / ``close`` / ``write_off`` follow the agency's outcome, ``expire`` from
the expiry job, ``escalate`` from a legal escalation, ``hold`` / ``release`` from intake or ops,
``recall`` / ``reopen`` from ops (a closed case reopens when a later intake shows it overdue)."""

ALLOCATABLE_CASE_STATES: Final = frozenset({"open", "returned"})
"""Cases the next allocation round may place (holds, cool-off and tiers still apply)."""


def next_case_status(status: str, event: str) -> str | None:
    """The case status after ``event``, or None when the event is illegal in ``status``."""
    return CASE_TRANSITIONS.get(status, {}).get(event)


def can_transition(table: dict[str, frozenset[str]], current: str, new: str) -> bool:
    return new in table.get(current, frozenset())


__all__ = [
    "ACTIVITY_EVENTS",
    "AGENCY_WIDE_EVENTS",
    "ALLOCATABLE_CASE_STATES",
    "CASE_STATES",
    "CASE_TRANSITIONS",
    "ENDED_PLACEMENT_STATES",
    "MISMATCH_TRANSITIONS",
    "OPEN_PLACEMENT_STATES",
    "OUTBOX_TRANSITIONS",
    "PLACEMENT_TRANSITIONS",
    "TERMINAL_PLACEMENT_STATES",
    "can_transition",
    "next_case_status",
    "next_placement_state",
]
