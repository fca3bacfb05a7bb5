"""Four eyes: actions one person makes and a second must approve (claim confirmation, large
allocation rounds, bulk recalls, large write-offs and accepted agency figures).

``rules`` is the pure part (the approval's state table, which actions need a second person
and who may be that person, the canonical payload and its hash); ``store`` keeps the
``approvals`` table and writes every request, decision and execution as an evidence leaf;
``decisions`` is a checker's approval or rejection of any request (a claim batch's too);
``gates`` is where a command asks for an approval or runs under one.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.approvals.decisions import decide
    from gateway.approvals.gates import gate
    from gateway.approvals.rules import check_checker, needs_second_person
    from gateway.approvals.store import ApprovalRecord

__all__ = ["ApprovalRecord", "check_checker", "decide", "gate", "needs_second_person"]

__getattr__ = lazy_exports(
    __name__,
    {
        "ApprovalRecord": "gateway.approvals.store",
        "check_checker": "gateway.approvals.rules",
        "decide": "gateway.approvals.decisions",
        "gate": "gateway.approvals.gates",
        "needs_second_person": "gateway.approvals.rules",
    },
)
