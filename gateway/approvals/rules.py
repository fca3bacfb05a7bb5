"""Four eyes (pure): the approval's life as a transition table, which actions need a second
person, and who may be that person.

Theory of operation
-------------------
A *maker* asks for an action that ``[four_eyes]`` guards (``needs_second_person``); the
request is stored ``pending`` with the canonical JSON of exactly what would be done and its
SHA-256. A *checker* approves or rejects it (``check_checker``: a known user, of a role the
action's rule permits, and never the maker). An approved action is run later, and running it
first re-computes the payload and compares hashes (``same_payload``), so what runs is what was
approved; once run it is ``executed``. The maker may withdraw a pending request. Claim
confirmation is approved and executed in one step (approving it is the action).
"""

import hashlib
import json
from typing import Final, Literal, Protocol

from gateway.config.settings import FourEyesRule, FourEyesSection
from gateway.errors import ActionRefused, FourEyesRefused

Action = Literal[
    "claim_confirmation",
    "allocation_round",
    "bulk_recall",
    "write_off",
    "accept_agency_figure",
    "concession_approval",
    "evaluation_decision",
]
ACTIONS: Final[tuple[Action, ...]] = (
    "claim_confirmation",
    "allocation_round",
    "bulk_recall",
    "write_off",
    "accept_agency_figure",
    "concession_approval",
    "evaluation_decision",
)


class Person(Protocol):
    """Who makes or checks a request: a console user's name and role (gateway.console.accounts
    ``User`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...


APPROVAL_STATES: Final = ("pending", "approved", "rejected", "executed", "withdrawn")
APPROVAL_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("pending", "approve"): "approved",
    ("pending", "reject"): "rejected",
    ("pending", "withdraw"): "withdrawn",
    ("approved", "execute"): "executed",
}
"""(state, event) → next state; anything else is refused."""

_PAST = {"approve": "approved", "reject": "rejected", "withdraw": "withdrawn", "execute": "run"}


def next_state(state: str, event: str, *, approval_id: int) -> str:
    """The approval's state after ``event``, or ActionRefused saying why not."""
    try:
        return APPROVAL_TRANSITIONS[(state, event)]
    except KeyError:
        raise ActionRefused(
            f"approval #{approval_id} is {state}; it cannot be {_PAST.get(event, event)}"
        ) from None


def rule_for(section: FourEyesSection, action: str) -> FourEyesRule:
    rule: FourEyesRule = getattr(section, action)
    return rule


def needs_second_person(section: FourEyesSection, action: str, size: int) -> bool:
    """True when ``action`` of ``size`` (cases, or minor units for money actions) must be
    approved by a second person first."""
    rule = rule_for(section, action)
    return rule.enabled and size > rule.above


def check_checker(
    section: FourEyesSection,
    action: str,
    *,
    maker: str,
    checker: str,
    checker_role: str,
    approval_id: int | None = None,
) -> None:
    """FourEyesRefused unless ``checker`` may approve the maker's ``action``."""
    what = f"approval #{approval_id}" if approval_id is not None else action
    if checker == maker:
        raise FourEyesRefused(
            f"{what}: {checker} made this request and cannot also approve or reject it; "
            "a second person must (`agency-gateway --as OTHER_USER approvals approve ID`)"
        )
    roles = rule_for(section, action).checker_roles
    if checker_role not in roles:
        raise FourEyesRefused(
            f"{what}: {checker} is {checker_role}; [four_eyes] {action} needs a checker "
            f"who is {' or '.join(roles)}"
        )


def canonical(payload: object) -> str:
    """The canonical JSON of a payload: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(payload: object) -> str:
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


__all__ = [
    "ACTIONS",
    "APPROVAL_STATES",
    "APPROVAL_TRANSITIONS",
    "Action",
    "Person",
    "canonical",
    "check_checker",
    "needs_second_person",
    "next_state",
    "payload_hash",
    "rule_for",
]
