"""Allocation: which agency gets each case, and the placements that record it.

``rules`` chooses an agency for each case and explains why, pure and deterministic (debtor
groups, mixed buckets, tiers, capacity, contract weights, champion/challenger), with
``routing`` (screening, tiers, each agency's verdict), ``performance`` (recovery factors)
and ``decisions`` (what a round decided, explained); ``rounds`` reads a round's input from
the store and records its decisions; ``placements`` writes each allocation, recall and
amendment in one transaction with its outbox item and evidence leaf; ``agencies`` keeps
each agency's operational state (endpoint switch, overview).
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.allocation.placements import PlacementService
    from gateway.allocation.rounds import AllocationReport
    from gateway.allocation.rules import allocate

__all__ = ["AllocationReport", "PlacementService", "allocate"]

__getattr__ = lazy_exports(
    __name__,
    {
        "AllocationReport": "gateway.allocation.rounds",
        "PlacementService": "gateway.allocation.placements",
        "allocate": "gateway.allocation.rules",
    },
)
