"""Many ``serve`` processes on one database: the roles only one of them may hold at a time.

Owns the leases (``lease``: a pure core deciding who holds a role; ``store``: the rows, by
compare and set), holding a role while its work runs (``leader``), and the record of each
scheduled run with the fencing token it ran under. The schedulers and pollers, the evidence
sequencer and allocation rounds use it (gateway.runtime, gateway.allocation); the dispatcher
shares the outbox by its own per-item leases.
"""

from gateway.cluster.leader import holder_id, holding, lead
from gateway.cluster.lease import Lease, claim, release
from gateway.cluster.store import LeaseStore

SCHEDULERS = "schedulers"
"""The role that runs the timers and pollers of ``serve``."""
SEQUENCER = "evidence-sequencer"
"""The role that moves staged evidence leaves into the log (PostgreSQL)."""
ALLOCATION_ROUND = "allocation-round"
"""Held for the length of one allocation round."""

__all__ = [
    "ALLOCATION_ROUND",
    "SCHEDULERS",
    "SEQUENCER",
    "Lease",
    "LeaseStore",
    "claim",
    "holder_id",
    "holding",
    "lead",
    "release",
]
