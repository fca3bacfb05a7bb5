"""Claim confirmation (债权确认): each intake file's batch of claims, its figures, its review
by a second person, and the rule that no case is allocated before its batch is approved.

``tally`` (pure) counts a file's totals per currency, product and bucket, the holds it
applies and the differences from the cases known before; ``states`` is the batch's
transition table; ``batches`` keeps ``claim_batches`` and approves or rejects a batch through
the four-eyes approvals (gateway.approvals), each decision an evidence leaf.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.claims.batches import BatchRecord, close_batch, decide_batch, open_batch
    from gateway.claims.states import next_batch_state
    from gateway.claims.tally import Tally

__all__ = ["BatchRecord", "Tally", "close_batch", "decide_batch", "next_batch_state", "open_batch"]

__getattr__ = lazy_exports(
    __name__,
    {
        "BatchRecord": "gateway.claims.batches",
        "close_batch": "gateway.claims.batches",
        "decide_batch": "gateway.claims.batches",
        "open_batch": "gateway.claims.batches",
        "next_batch_state": "gateway.claims.states",
        "Tally": "gateway.claims.tally",
    },
)
