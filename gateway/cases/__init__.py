"""Cases through their life: the status every case is in and every step that moved it.

``history`` is the one writer of ``cases.status`` (checked against
``gateway.lifecycle.CASE_TRANSITIONS``, recorded in ``case_history``).
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.cases.history import CaseMove, MoveResult, move_cases

__all__ = ["CaseMove", "MoveResult", "move_cases"]

__getattr__ = lazy_exports(
    __name__,
    {
        "CaseMove": "gateway.cases.history",
        "MoveResult": "gateway.cases.history",
        "move_cases": "gateway.cases.history",
    },
)
