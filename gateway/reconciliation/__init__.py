"""Reconciliation: what agencies report, against what we sent and what the lender received.

``kinds`` is the vocabulary (mismatch kinds, severities, drafts, expectations); new mismatch
kinds start there. On arrival, ``event_rules`` judges each event against the placement and
``recorder`` applies the decisions in the inbound transaction, with contact attempts
judged for conduct by ``conduct_rules`` (its store side is gateway.conduct.arrival). In the
batch run (``engine``,
its run records in ``runs``, its reads in ``sources``), set-based passes re-derive the event
checks and apply the contact rules in DuckDB (``columnar``, tested against the pure
references ``event_audit`` and ``contact_rules``), match payments three ways (``three_way``
over ``matching`` and ``match_inputs``, fed by the lender's ``payment_feed``), compare
statements (``statement_pass`` over ``statements``) and breach overdue expectations
(``sla``). The rule modules are pure; the passes are their I/O shells.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.reconciliation.engine import ReconEngine, RunReport
    from gateway.reconciliation.kinds import RULE_VERSION, SEVERITY

__all__ = ["RULE_VERSION", "SEVERITY", "ReconEngine", "RunReport"]

__getattr__ = lazy_exports(
    __name__,
    {
        "RULE_VERSION": "gateway.reconciliation.kinds",
        "SEVERITY": "gateway.reconciliation.kinds",
        "ReconEngine": "gateway.reconciliation.engine",
        "RunReport": "gateway.reconciliation.engine",
    },
)
