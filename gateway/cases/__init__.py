"""Cases through their life: the status every case is in and every step that moved it.

``history`` is the one writer of ``cases.status`` (checked against
``gateway.lifecycle.CASE_TRANSITIONS``, recorded in ``case_history``). ``holds`` keeps the
reasons not to work a case and the ops actions on them; ``scrubs`` applies the lender's file
(holds, cured and paid-off accounts); ``outcomes`` moves a case when its placement ends.
``terms`` holds the rules of a placement's term (pure), ``expiry`` warns, recalls and renews
placements at its end, and ``escalation`` takes cases past the legal threshold to the legal
tier. ``views`` is the read side: the case list and everything about one case.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.cases.escalation import EscalationService
    from gateway.cases.expiry import ExpiryService
    from gateway.cases.history import CaseMove, MoveResult, move_cases
    from gateway.cases.holds import CaseService, HoldOutcome
    from gateway.cases.views import CaseFilter, case_detail, list_cases

__all__ = [
    "CaseFilter",
    "CaseMove",
    "CaseService",
    "EscalationService",
    "ExpiryService",
    "HoldOutcome",
    "MoveResult",
    "case_detail",
    "list_cases",
    "move_cases",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "CaseFilter": "gateway.cases.views",
        "CaseMove": "gateway.cases.history",
        "CaseService": "gateway.cases.holds",
        "EscalationService": "gateway.cases.escalation",
        "ExpiryService": "gateway.cases.expiry",
        "HoldOutcome": "gateway.cases.holds",
        "MoveResult": "gateway.cases.history",
        "case_detail": "gateway.cases.views",
        "list_cases": "gateway.cases.views",
        "move_cases": "gateway.cases.history",
    },
)
