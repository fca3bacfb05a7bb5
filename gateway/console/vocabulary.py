"""The console's words for the codes it shows: mismatch kinds, states of mismatches, cases,
placements, packets and escalations, severities, roles, delivery outcomes and the actions ops
take. Each code has an English display name marked for translation; the page shows the name in
the request's language and keeps the raw code in a ``title`` (ops quote codes to engineers).
A code without an entry is shown as itself with underscores as spaces.
"""

from typing import Final

from gateway.console.i18n import N_, gettext

TERMS: Final[dict[str, str]] = {
    # mismatch kinds
    "unknown_placement": N_("unknown placement"),
    "wrong_agency": N_("wrong agency"),
    "currency_mismatch": N_("currency mismatch"),
    "activity_after_recall": N_("activity after recall"),
    "illegal_transition": N_("illegal transition"),
    "ack_balance_differs": N_("ack balance differs"),
    "conflicting_duplicate": N_("conflicting duplicate"),
    "over_collection": N_("over collection"),
    "unmatched_reversal": N_("unmatched reversal"),
    "missing_ack": N_("missing ack"),
    "missing_activity": N_("missing activity"),
    "broken_promise": N_("broken promise"),
    "dead_delivery": N_("dead delivery"),
    "status_conflict": N_("status conflict"),
    "date_out_of_window": N_("date out of window"),
    "amount_mismatch": N_("amount mismatch"),
    "remittance_short": N_("remittance short"),
    "payment_not_received": N_("payment not received"),
    "payment_not_reported": N_("payment not reported"),
    "attribution_disputed": N_("attribution disputed"),
    "settlement_disputed": N_("settlement disputed"),
    "ambiguous_match": N_("ambiguous match"),
    "statement_phantom": N_("statement phantom"),
    "statement_orphan": N_("statement orphan"),
    "statement_balance_drift": N_("statement balance drift"),
    "statement_status_disagreement": N_("statement status disagreement"),
    "missing_statement": N_("missing statement"),
    "deletion_unconfirmed": N_("deletion unconfirmed"),
    "contact_rule_violation": N_("contact rule violation"),
    "third_party_contact": N_("third-party contact"),
    "contact_during_hold": N_("contact during hold"),
    "contact_during_dispute": N_("contact during dispute"),
    "recording_qa_failed": N_("recording failed QA"),
    "unparsed_reply": N_("unparsed reply"),
    "unverified_reply": N_("unverified reply"),
    "unmatched_reply": N_("unmatched reply"),
    "unapproved_terms": N_("unapproved terms"),
    "unapproved_waiver": N_("unapproved waiver"),
    # severities
    "high": N_("high"),
    "medium": N_("medium"),
    "low": N_("low"),
    # mismatch, case, placement, packet and escalation states
    "open": N_("open"),
    "investigating": N_("investigating"),
    "resolved": N_("resolved"),
    "dismissed": N_("dismissed"),
    "written_off": N_("written off"),
    "held": N_("held"),
    "placed": N_("placed"),
    "legal": N_("legal"),
    "returned": N_("returned"),
    "recalled": N_("recalled"),
    "closed": N_("closed"),
    "acknowledged": N_("acknowledged"),
    "active": N_("active"),
    "revoked": N_("revoked"),
    "superseded": N_("superseded"),
    "disputed": N_("disputed"),
    "rejected": N_("rejected"),
    "pending": N_("pending"),
    "leased": N_("leased"),
    "delivered": N_("delivered"),
    "dead": N_("dead"),
    "unknown": N_("unknown"),
    "proposed": N_("proposed"),
    "approved": N_("approved"),
    "released": N_("released"),
    # delivery outcomes and circuit breakers
    "transient": N_("transient"),
    "permanent": N_("permanent"),
    "circuit_closed": N_("closed (sending)"),
    "circuit_open": N_("open (paused)"),
    "circuit_half_open": N_("half open (trying)"),
    # holds
    "hold_active": N_("in force"),
    "hold_released": N_("released"),
    # case events (the case timeline)
    "place": N_("place"),
    "place_legal": N_("place legal"),
    "hold": N_("hold"),
    "release": N_("release"),
    "return": N_("return"),
    "reject": N_("reject"),
    "expire": N_("expire"),
    "escalate": N_("escalate"),
    "recall": N_("recall"),
    "close": N_("close"),
    "write_off": N_("write off"),
    "reopen": N_("reopen"),
    # reply signatures
    "verified": N_("verified"),
    "unsigned": N_("unsigned"),
    "bad_signature": N_("bad signature"),
    # hold codes (schemas.account.KNOWN_HOLD_CODES; English shows the code) and sources
    "DECEASED": N_("DECEASED"),
    "BANKRUPT": N_("BANKRUPT"),
    "DISPUTE": N_("DISPUTE"),
    "LITIGATION_HOLD": N_("LITIGATION_HOLD"),
    "COMPLAINT": N_("COMPLAINT"),
    "STUDENT": N_("STUDENT"),
    "SERIOUS_ILLNESS": N_("SERIOUS_ILLNESS"),
    "IMPRISONED": N_("IMPRISONED"),
    "intake": N_("intake"),
    "ops": N_("ops"),
    "agency": N_("agency"),
    # recall codes (gateway.resolutions.rules, gateway.cases.terms)
    "RECONCILIATION": N_("RECONCILIATION"),
    "EXPIRED": N_("EXPIRED"),
    "LEGAL_ESCALATION": N_("LEGAL_ESCALATION"),
    # why an agency returned or closed a case (schemas.events)
    "uncollectable": N_("uncollectable"),
    "deceased": N_("deceased"),
    "bankrupt": N_("bankrupt"),
    "contract_end": N_("contract end"),
    "other": N_("other"),
    "paid_in_full": N_("paid in full"),
    "settled": N_("settled"),
    # allocation: the round's codes, rules, strategies, verdicts and actors
    "debtor_elsewhere": N_("debtor's accounts are elsewhere"),
    "tier_full": N_("tier full"),
    "no_eligible_agency": N_("no eligible agency"),
    "no_next_tier": N_("no next tier"),
    "not_allocatable": N_("not allocatable"),
    "unconfirmed": N_("claim not approved"),
    "not_overdue": N_("not overdue"),
    "nothing_owed": N_("nothing owed"),
    "cooling_off": N_("cooling off"),
    "single": N_("single account"),
    "worst": N_("worst account decides"),
    "split": N_("split by bucket"),
    "champion": N_("champion"),
    "challenger": N_("challenger"),
    "eligible": N_("eligible"),
    "disabled": N_("disabled"),
    "allocation": N_("allocation"),
    "expiry": N_("expiry"),
    # roles
    "viewer": N_("viewer"),
    "operator": N_("operator"),
    "admin": N_("admin"),
}

ACTION_LABELS: Final[dict[str, str]] = {
    "investigate": N_("Investigate"),
    "reopen": N_("Reopen"),
    "assign": N_("Assign"),
    "comment": N_("Comment"),
    "accept": N_("Accept agency figure"),
    "resend": N_("Resend packet"),
    "recall": N_("Recall placement"),
    "amend": N_("Amend placement"),
    "dismiss": N_("Dismiss"),
    "write_off": N_("Write off"),
    "hold": N_("Put on hold"),
    "release": N_("Release hold"),
    "renew": N_("Renew placement"),
    "approve_escalation": N_("Approve escalation"),
    "reject_escalation": N_("Reject escalation"),
}
"""Mismatch actions (gateway.resolutions.rules.ACTIONS) and case actions
(gateway.console.case_actions.CASE_ACTIONS) by name."""

ACTION_DESCRIPTIONS: Final[dict[str, str]] = {
    "investigate": N_("Mark it as being looked at."),
    "reopen": N_("Put it back in the open queue."),
    "assign": N_("Give it to a person (empty name: unassign)."),
    "comment": N_("Add a note."),
    "accept": N_("Adjust our record to the agency's figure."),
    "resend": N_("Put the dead or unknown packet back in the outbox (same dedupe key)."),
    "recall": N_("Recall the placement; queues placement.recalled to the agency."),
    "amend": N_("Restate the placement to the agency; queues placement.amended."),
    "dismiss": N_("Close it: not a real problem."),
    "write_off": N_("Close it: the difference is accepted as a loss."),
}


def term(code: object) -> str:
    """The display name of ``code`` in the current language."""
    text = "" if code is None else str(code)
    known = TERMS.get(text)
    return gettext(known) if known is not None else text.replace("_", " ")


def action_label(action: str) -> str:
    known = ACTION_LABELS.get(action)
    return gettext(known) if known is not None else action.replace("_", " ")


def action_description(action: str) -> str:
    known = ACTION_DESCRIPTIONS.get(action)
    return gettext(known) if known is not None else ""


__all__ = [
    "ACTION_DESCRIPTIONS",
    "ACTION_LABELS",
    "TERMS",
    "action_description",
    "action_label",
    "term",
]
