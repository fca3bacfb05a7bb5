"""Collector conduct: violations raised as contact attempts arrive, and the monthly QA
sample of call recordings per agency.

- ``arrival``: the store's side of the arrival rules (gateway.reconciliation.conduct_rules),
  called by gateway.reconciliation.recorder in the inbound transaction.
- ``sampling`` (pure): the reproducible draw and the states of a drawn item.
- ``qa``: draw, list and review a month's sample in the store.
- ``violations``: ``violation_counts`` (agency → kind → count) for the scorecard and the
  annual evaluation.

Only ``violations`` is imported here: ``qa`` uses the recorder, which imports ``arrival``.
"""

from gateway.conduct.violations import VIOLATION_KINDS, violation_counts

__all__ = ["VIOLATION_KINDS", "violation_counts"]
