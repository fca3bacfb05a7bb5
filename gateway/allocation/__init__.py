"""Allocation: which agency gets each case, and the placements that record it.

``rules`` chooses an agency for each case, pure and deterministic (eligibility by bucket and
capacity, contract weights, performance weighting, champion/challenger); ``placements`` writes
each allocation, recall and amendment in one transaction with its outbox item and evidence
leaf; ``agencies`` keeps each agency's operational state (endpoint switch, overview).
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.allocation.placements import AllocationReport, PlacementService
    from gateway.allocation.rules import allocate

__all__ = ["AllocationReport", "PlacementService", "allocate"]

__getattr__ = lazy_exports(
    __name__,
    {
        "AllocationReport": "gateway.allocation.placements",
        "PlacementService": "gateway.allocation.placements",
        "allocate": "gateway.allocation.rules",
    },
)
