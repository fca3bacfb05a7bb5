"""Reconciliation's vocabulary: the mismatch kinds and their severity, the drafts and
expectations rules raise, and the view of a placement they judge (pure).

Every source of mismatches speaks it: the event rules (gateway.reconciliation.event_rules) and
their batch re-derivation (gateway.reconciliation.event_audit), three-way matching
(gateway.reconciliation.three_way), statements (gateway.reconciliation.statements), contact rules
(gateway.reconciliation.contact_rules), deliveries (gateway.dispatch.hooks) and replies by mail.
gateway.reconciliation.recorder writes drafts and expectations to the store; every mismatch records
``RULE_VERSION``.
"""

from dataclasses import dataclass
from datetime import datetime

RULE_VERSION = 2

SEVERITY = {
    "unknown_placement": "high",
    "wrong_agency": "high",
    "currency_mismatch": "high",
    "activity_after_recall": "high",
    "illegal_transition": "medium",
    "ack_balance_differs": "medium",
    "conflicting_duplicate": "high",
    "over_collection": "high",
    "unmatched_reversal": "medium",
    "missing_ack": "medium",
    "missing_activity": "low",
    "broken_promise": "low",
    "dead_delivery": "high",
    "status_conflict": "medium",
    "date_out_of_window": "medium",
    "amount_mismatch": "high",
    "remittance_short": "high",
    "payment_not_received": "high",
    "payment_not_reported": "high",
    "ambiguous_match": "medium",
    "statement_phantom": "high",
    "statement_orphan": "medium",
    "statement_balance_drift": "medium",
    "statement_status_disagreement": "low",
    "missing_statement": "medium",
    "deletion_unconfirmed": "high",
    "contact_rule_violation": "high",
    "unparsed_reply": "medium",
    "unverified_reply": "high",
    "unmatched_reply": "medium",
    "unapproved_terms": "high",
    "unapproved_waiver": "high",
    "settlement_disputed": "medium",
    "attribution_disputed": "medium",
    "third_party_contact": "high",
    "contact_during_hold": "high",
    "contact_during_dispute": "high",
    "recording_qa_failed": "medium",
}
MISMATCH_KINDS = tuple(SEVERITY)


@dataclass(frozen=True, slots=True)
class PlacementView:
    """Our record of a placement, as reconciliation needs it."""

    id: str
    case_id: str
    agency_id: str
    state: str
    currency: str
    balance_minor: int
    collected_minor: int
    acked_balance_minor: int | None
    agency_case_ref: str | None
    payments: tuple[tuple[str, int], ...] = ()
    """(payment id, amount) reported so far and not reversed."""
    placed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MismatchDraft:
    kind: str
    placement_id: str | None
    detail: str
    ours: dict[str, object]
    theirs: dict[str, object]
    delta_minor: int | None = None

    @property
    def severity(self) -> str:
        return SEVERITY[self.kind]


@dataclass(frozen=True, slots=True)
class NewExpectation:
    kind: str
    ref: str
    due_at: datetime
    amount_minor: int | None
    amount_lower_minor: int | None = None
    amount_upper_minor: int | None = None
    currency: str | None = None
    window_start: datetime | None = None


__all__ = [
    "MISMATCH_KINDS",
    "RULE_VERSION",
    "SEVERITY",
    "MismatchDraft",
    "NewExpectation",
    "PlacementView",
]
