"""The rules of ops actions on mismatches, as data and pure functions (no I/O).

Theory of operation
-------------------
``ACTIONS`` is the table of what ops can do to a mismatch: the states an action starts from
(checked against ``MISMATCH_TRANSITIONS`` in gateway.lifecycle by the tests), the state it
leads to, whether a reason is required. ``refusal`` says why an action cannot apply to a
mismatch as it stands (``MismatchFacts``: its state and kind, the placement, the event and
the dead packets it points at), or None; the console shows only the actions it allows, and
``gateway.resolutions.actions`` asks it again inside the transaction that acts. ``ACCEPT_RULES``
says, per mismatch kind, how accepting the agency's figure changes our placement record.
``MismatchFilter`` describes a set of mismatches (queue filters, bulk actions) as SQL clauses.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa

from gateway.errors import ActionRefused
from gateway.lifecycle import MISMATCH_TRANSITIONS, OPEN_PLACEMENT_STATES
from gateway.store.console_tables import MismatchAssignment
from gateway.store.tables import Mismatch

M = Mismatch.__table__.c  # type: ignore[attr-defined]
ASSIGNMENTS = MismatchAssignment.__table__  # type: ignore[attr-defined]

ROLES: Final = ("viewer", "operator", "admin")
"""Console roles, weakest first: viewers read, operators act, admins also manage users."""
ACTING_ROLES: Final = frozenset({"operator", "admin"})
UNRESOLVED: Final = frozenset({"open", "investigating"})
ALL_STATES: Final = frozenset(MISMATCH_TRANSITIONS)
RECALL_CODE_PATTERN: Final = r"^[A-Z][A-Z0-9_]{1,31}$"
DEFAULT_RECALL_CODE: Final = "RECONCILIATION"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    label: str
    from_states: frozenset[str]
    to_state: str | None
    """None: the state does not change."""
    reason_required: bool
    description: str


ACTIONS: Final[dict[str, ActionSpec]] = {
    s.name: s
    for s in (
        ActionSpec("investigate", "Investigate", frozenset({"open"}), "investigating", False,
                   "Mark it as being looked at."),
        ActionSpec("reopen", "Reopen", frozenset({"investigating"}), "open", False,
                   "Put it back in the open queue."),
        ActionSpec("assign", "Assign", UNRESOLVED, None, False,
                   "Give it to a person (empty name: unassign)."),
        ActionSpec("comment", "Comment", ALL_STATES, None, True, "Add a note."),
        ActionSpec("accept", "Accept agency figure", UNRESOLVED, "resolved", True,
                   "Adjust our record to the agency's figure."),
        ActionSpec("resend", "Resend packet", UNRESOLVED, "resolved", True,
                   "Put the dead or unknown packet back in the outbox (same dedupe key)."),
        ActionSpec("recall", "Recall placement", UNRESOLVED, "resolved", True,
                   "Recall the placement; queues placement.recalled to the agency."),
        ActionSpec("amend", "Amend placement", UNRESOLVED, "resolved", True,
                   "Restate the placement to the agency; queues placement.amended."),
        ActionSpec("dismiss", "Dismiss", UNRESOLVED, "dismissed", True,
                   "Close it: not a real problem."),
        ActionSpec("write_off", "Write off", UNRESOLVED, "written_off", True,
                   "Close it: the difference is accepted as a loss."),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class MismatchFacts:
    """What the rules need to know about one mismatch and the records it points at."""

    id: int
    kind: str
    state: str
    agency_id: str
    placement_id: str | None = None
    delta_minor: int | None = None
    case_id: str | None = None
    placement_state: str | None = None
    currency: str | None = None
    version: int | None = None
    balance_minor: int | None = None
    acked_balance_minor: int | None = None
    collected_minor: int | None = None
    event_id: int | None = None
    event_type: str | None = None
    event_applied: bool | None = None
    event_amount_minor: int | None = None
    resendable: tuple[int, ...] = ()
    """Dead or unknown outbox items a resend would put back."""
    assignee: str | None = None
    inbound_id: int | None = None
    """The stored message a mismatch is about, when it is a message (``unverified_reply``)."""


@dataclass(frozen=True, slots=True)
class Adjustment:
    """How ``accept`` changes our placement record."""

    balance_minor: int | None = None
    collected_minor: int | None = None
    apply_event: bool = False
    """Count the mismatch's event from now on (it was stored but not applied)."""
    apply_reply: bool = False
    """Read the stored reply as if its signature had vouched for it: ops has."""


def _accept_ack_balance(f: MismatchFacts) -> Adjustment | None:
    if f.acked_balance_minor is None or f.acked_balance_minor == f.balance_minor:
        return None
    return Adjustment(balance_minor=f.acked_balance_minor)


def _accept_unapplied_payment(f: MismatchFacts) -> Adjustment | None:
    if f.event_type != "payment.reported" or f.event_applied or f.collected_minor is None:
        return None
    if f.kind == "conflicting_duplicate" and f.delta_minor is not None:
        return Adjustment(collected_minor=f.collected_minor + f.delta_minor, apply_event=True)
    if f.kind == "activity_after_recall" and f.event_amount_minor is not None:
        return Adjustment(
            collected_minor=f.collected_minor + f.event_amount_minor, apply_event=True
        )
    return None


def _accept_statement_drift(f: MismatchFacts) -> Adjustment | None:
    # delta = their outstanding - ours (gateway.reconciliation.statements): move our balance by it.
    if not f.delta_minor or f.balance_minor is None or f.balance_minor + f.delta_minor < 0:
        return None
    return Adjustment(balance_minor=f.balance_minor + f.delta_minor)


def _accept_unverified_reply(f: MismatchFacts) -> Adjustment | None:
    return Adjustment(apply_reply=True) if f.inbound_id is not None else None


def _accept_attribution_claim(f: MismatchFacts) -> Adjustment | None:
    # The share moves to the placement the agency named (gateway.settlement.disputes).
    return Adjustment()


ACCEPT_RULES: Final[dict[str, Callable[[MismatchFacts], Adjustment | None]]] = {
    "attribution_disputed": _accept_attribution_claim,
    "ack_balance_differs": _accept_ack_balance,
    "statement_balance_drift": _accept_statement_drift,
    "conflicting_duplicate": _accept_unapplied_payment,
    "activity_after_recall": _accept_unapplied_payment,
    "unverified_reply": _accept_unverified_reply,
}
"""Per mismatch kind: how to take the agency's figure. Kinds without an entry cannot be
accepted (dismiss, write off or act on the placement instead)."""


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One action by ``actor``. ``reason`` is the why (for ``comment``: the comment)."""

    action: str
    actor: str
    reason: str = ""
    assignee: str | None = None
    balance_minor: int | None = None
    """``amend`` only: the new balance (default: restate the current one)."""
    recall_code: str = DEFAULT_RECALL_CODE
    """``recall`` only: the reason code the agency receives."""
    approval_id: int | None = None
    """``write_off`` and ``accept`` above the four-eyes amount: the approved request to run
    under (gateway.approvals)."""
    placement_id: str | None = None
    """``accept`` of an ``attribution_disputed`` only: move the share to this placement of
    the receipt's case instead of the one the agency named."""


def refusal(spec: ActionSpec, f: MismatchFacts, request: ActionRequest | None = None) -> str | None:
    """Why ``spec`` cannot apply to ``f`` now (None: it can). Without a request only the
    facts are checked, which is what the console uses to decide which buttons to show."""
    if f.state not in spec.from_states:
        allowed = " or ".join(sorted(spec.from_states))
        return f"it is {f.state}; {spec.name} applies to {allowed} mismatches"
    open_placement = f.placement_state in OPEN_PLACEMENT_STATES
    if spec.name == "accept":
        rule = ACCEPT_RULES.get(f.kind)
        if rule is None:
            return f"{f.kind} has no agency figure to accept; dismiss or write it off"
        if rule(f) is None:
            return "there is no agency figure left to accept (our record already matches)"
    elif spec.name == "resend" and not f.resendable:
        return "no dead or unknown packet of this placement to resend"
    elif spec.name in ("recall", "amend") and not open_placement:
        where = f"placement {f.placement_id} is {f.placement_state}" if f.placement_id else ""
        return f"{spec.name} needs an open placement; {where or 'none is linked'}"
    if request is None:
        return None
    if spec.reason_required and not request.reason.strip():
        return f"{spec.name} needs a reason (who and why are recorded)"
    if spec.name == "assign" and request.assignee is None:
        return "assign needs the name of a person (empty to unassign)"
    if spec.name == "amend" and request.balance_minor is not None and request.balance_minor < 0:
        return "the amended balance cannot be negative"
    if spec.name == "recall":
        if not re.fullmatch(RECALL_CODE_PATTERN, request.recall_code):
            return "the recall code must look like PAID_DIRECT (A-Z, 0-9, _; 2-32 characters)"
    return None


def available_actions(f: MismatchFacts) -> list[str]:
    """The actions whose facts allow them now, in table order."""
    return [name for name, spec in ACTIONS.items() if refusal(spec, f) is None]


@dataclass(frozen=True)
class MismatchFilter:
    """A set of mismatches: every given criterion must hold. ``assignee=""`` means
    unassigned; ``search`` matches a placement or case id prefix."""

    states: tuple[str, ...] = ("open", "investigating")
    kinds: tuple[str, ...] = ()
    agencies: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    assignee: str | None = None
    search: str | None = None
    ids: tuple[int, ...] = ()
    upto_id: int | None = None
    """Only mismatches that existed when a page counted them (ids only grow): a bulk action
    on "all N matching" acts on those N, not on rows raised since."""
    older_than_days: int | None = None
    """Raised more than this many days before ``as_of``."""
    newer_than_days: int | None = None
    """Raised less than this many days before ``as_of``."""
    as_of: datetime | None = None
    """The moment the age filters count from (the age filters need it)."""
    min_amount_minor: int | None = None
    """The size of the difference (``abs(delta_minor)``) is at least this."""
    max_amount_minor: int | None = None
    """The size of the difference is at most this."""

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        found: list[sa.ColumnElement[bool]] = []
        if self.as_of is not None and self.older_than_days is not None:
            found.append(M.created_at < self.as_of - timedelta(days=self.older_than_days))
        if self.as_of is not None and self.newer_than_days is not None:
            found.append(M.created_at > self.as_of - timedelta(days=self.newer_than_days))
        if self.min_amount_minor is not None:
            found.append(sa.func.abs(M.delta_minor) >= self.min_amount_minor)
        if self.max_amount_minor is not None:
            found.append(sa.func.abs(M.delta_minor) <= self.max_amount_minor)
        if self.upto_id is not None:
            found.append(M.id <= self.upto_id)
        for column, values in (
            (M.state, self.states),
            (M.kind, self.kinds),
            (M.agency_id, self.agencies),
            (M.severity, self.severities),
            (M.id, self.ids),
        ):
            if values:
                found.append(column.in_(list(values)))
        if self.assignee is not None:
            assigned = sa.select(ASSIGNMENTS.c.mismatch_id)
            if self.assignee:
                found.append(M.id.in_(assigned.where(ASSIGNMENTS.c.assignee == self.assignee)))
            else:
                found.append(M.id.not_in(assigned))
        if self.search:
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found.append(
                sa.or_(
                    M.placement_id.like(f"{escaped}%", escape="\\"),
                    M.placement_id.like(f"PL-{escaped}%", escape="\\"),
                )
            )
        return found


__all__ = [
    "ACCEPT_RULES",
    "ACTING_ROLES",
    "ACTIONS",
    "ALL_STATES",
    "DEFAULT_RECALL_CODE",
    "ROLES",
    "UNRESOLVED",
    "ActionRefused",
    "ActionRequest",
    "ActionSpec",
    "Adjustment",
    "MismatchFacts",
    "MismatchFilter",
    "available_actions",
    "refusal",
]
