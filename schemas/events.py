"""Inbound agency events: what agencies report back, on any channel.

Webhook agencies POST one event per request to ``/v1/agencies/{agency_id}/events``::

    {"type": "payment.reported", "timestamp": "2026-01-16T09:00:00Z", "data": {...}}

SFTP result files and law-firm replies are parsed into the same models.
"""

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter

from schemas.base import (
    Identifier,
    NonNegativeMoney,
    PositiveMoney,
    StrictModel,
    UtcDatetime,
    WireDate,
)

ContactChannel = Literal["call", "sms", "visit", "letter", "email", "app"]
ContactOutcome = Literal["reached", "no_answer", "wrong_number", "refused", "left_message"]
LegalAction = Literal["lawyer_letter", "suit_filed", "judgment", "enforcement", "settlement"]
ReturnReason = Literal[
    "uncollectable", "deceased", "bankrupt", "disputed", "contract_end", "recalled", "other"
]
CloseReason = Literal["paid_in_full", "settled", "recalled", "written_off"]
ContactParty = Literal["debtor", "guarantor", "third_party"]
ThirdPartyPurpose = Literal["locate", "debt"]
StatementStatus = Literal["active", "disputed", "legal", "closed", "returned"]


_PLACEMENT = "PL-AC1192070168-1"
EVENT_EXAMPLES: dict[str, dict[str, Any]] = {
    "placement.acknowledged": {
        "placement_id": _PLACEMENT,
        "agency_case_ref": "ACME-2026-004711",
        "balance": {"amount_minor": 196857, "currency": "CNY"},
    },
    "placement.rejected": {
        "placement_id": _PLACEMENT,
        "reason": "debtor resides outside our licensed regions",
    },
    "contact.attempted": {
        "placement_id": _PLACEMENT,
        "channel": "call",
        "outcome": "reached",
        "attempted_at": "2026-01-16T02:15:00Z",
        "effective": True,
        "party": "debtor",
        "collector_id": "C-0042",
        "recording_ref": "rec/2026/01/16/C-0042-0215.mp3",
    },
    "promise.made": {
        "placement_id": _PLACEMENT,
        "promise_id": "PR-88213",
        "amount": {"amount_minor": 50000, "currency": "CNY"},
        "promised_date": "2026-01-30",
    },
    "payment.reported": {
        "placement_id": _PLACEMENT,
        "payment_id": "PAY-2026-000123",
        "amount": {"amount_minor": 50000, "currency": "CNY"},
        "paid_at": "2026-01-30T06:40:12Z",
    },
    "payment.reversed": {
        "placement_id": _PLACEMENT,
        "payment_id": "PAY-2026-000123",
        "amount": {"amount_minor": 50000, "currency": "CNY"},
        "reason": "bank returned the transfer",
    },
    "dispute.opened": {
        "placement_id": _PLACEMENT,
        "reason": "debtor says the loan was repaid in December",
    },
    "legal.action": {
        "placement_id": _PLACEMENT,
        "action": "suit_filed",
        "occurred_at": "2026-03-02T01:00:00Z",
        "court": "Shanghai Pudong New Area People's Court",
        "court_case_number": "(2026)沪0115民初1234号",
    },
    "case.returned": {
        "placement_id": _PLACEMENT,
        "reason": "uncollectable",
        "balance": {"amount_minor": 146857, "currency": "CNY"},
    },
    "case.closed": {"placement_id": _PLACEMENT, "reason": "paid_in_full"},
    "complaint.received": {
        "placement_id": _PLACEMENT,
        "channel": "12378 hotline",
        "summary": "debtor complains of calls after 21:00",
    },
    "statement.submitted": {
        "statement_id": "STMT-2026-01",
        "period_start": "2026-01-01",
        "period_end": "2026-01-31",
        "items": [
            {
                "placement_id": _PLACEMENT,
                "balance": {"amount_minor": 146857, "currency": "CNY"},
                "status": "active",
            }
        ],
    },
    "data.deleted": {"placement_id": _PLACEMENT, "method": "deleted", "reference": "DEL-7781"},
    "waiver.requested": {
        "placement_id": _PLACEMENT,
        "request_id": "RQ-2026-0001",
        "settlement_amount": {"amount_minor": 120000, "currency": "CNY"},
        "reason": "debtor unemployed since March; can pay 1200.00 now if the rest is waived",
        "evidence_ref": "DOC-5512",
    },
    "instalment.requested": {
        "placement_id": _PLACEMENT,
        "request_id": "RQ-2026-0002",
        "instalments": 3,
        "first_due_date": "2026-02-10",
        "frequency": "monthly",
        "total": {"amount_minor": 146857, "currency": "CNY"},
        "reason": "salary paid monthly; cannot pay in one sum",
    },
    "pause.requested": {
        "placement_id": _PLACEMENT,
        "request_id": "RQ-2026-0003",
        "pause_from": "2026-02-01",
        "pause_until": "2026-02-28",
        "reason": "hospitalisation",
    },
    "attribution.disputed": {
        "placement_id": _PLACEMENT,
        "receipt_id": "RCPT-2026-000871",
        "reason": "the debtor paid after our promise of 2026-02-01; the receipt is ours",
        "amount_claimed": {"amount_minor": 50000, "currency": "CNY"},
    },
    "settlement.confirmed": {
        "statement_id": 42,
        "revision": 1,
        "sha256": "3f2a9c0d5e6b7a8190a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f607",
    },
    "settlement.disputed": {
        "statement_id": 42,
        "revision": 1,
        "line_nos": [3, 7],
        "reason": "both cases were placed at DPD 95: the deep-arrears rate applies",
        "claimed": {"amount_minor": 18000, "currency": "CNY"},
    },
}
"""One valid ``data`` per event type: the examples in the JSON Schemas and the OpenAPI
document (the tests post each, and mutations of each, to the real API)."""


def example_event(event_type: str, timestamp: str = "2026-01-16T09:00:00Z") -> dict[str, Any]:
    """A whole event of ``event_type`` around its ``EVENT_EXAMPLES`` data."""
    return {"type": event_type, "timestamp": timestamp, "data": EVENT_EXAMPLES[event_type]}


def _examples(event_type: str) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example_event(event_type)]})


class PlacementAcknowledgedData(StrictModel):
    placement_id: Identifier
    agency_case_ref: str = Field(min_length=1, max_length=64)
    balance: NonNegativeMoney = Field(
        description="Balance the agency loaded; must equal what we sent"
    )


class PlacementRejectedData(StrictModel):
    placement_id: Identifier
    reason: str = Field(min_length=1, max_length=500)


class ContactAttemptedData(StrictModel):
    placement_id: Identifier
    channel: ContactChannel
    outcome: ContactOutcome
    attempted_at: UtcDatetime
    effective: bool = Field(description="True when the debtor was actually spoken to")
    party: ContactParty = Field(
        default="debtor",
        description="Whom the agency contacted: the debtor (the default when omitted), a "
        "guarantor, or a third party (a relative, employer or other contact)",
    )
    purpose: ThirdPartyPurpose | None = Field(
        default=None,
        description="Why a third party was contacted: `locate` (only to reach the debtor, the "
        "debt not disclosed) or `debt` (the debt was discussed). A third-party contact that "
        "is not `locate` is a conduct violation; ignored for the debtor and guarantors",
    )
    collector_id: Identifier | None = Field(
        default=None, description="The agency's own identifier of the collector who made it"
    )
    recording_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The agency's reference of the call recording (for the lender's QA sample)",
    )


class PromiseMadeData(StrictModel):
    placement_id: Identifier
    promise_id: Identifier
    amount: PositiveMoney
    promised_date: WireDate


class PaymentReportedData(StrictModel):
    placement_id: Identifier
    payment_id: Identifier = Field(description="Agency's payment reference, unique per agency")
    amount: PositiveMoney
    paid_at: UtcDatetime


class PaymentReversedData(StrictModel):
    placement_id: Identifier
    payment_id: Identifier = Field(description="The payment being reversed")
    amount: PositiveMoney
    reason: str = Field(min_length=1, max_length=200)


class DisputeOpenedData(StrictModel):
    placement_id: Identifier
    reason: str = Field(min_length=1, max_length=500)


class LegalActionData(StrictModel):
    placement_id: Identifier
    action: LegalAction
    occurred_at: UtcDatetime
    court: str | None = Field(default=None, max_length=200)
    court_case_number: str | None = Field(default=None, max_length=64)


class CaseReturnedData(StrictModel):
    placement_id: Identifier
    reason: ReturnReason
    balance: NonNegativeMoney


class CaseClosedData(StrictModel):
    placement_id: Identifier
    reason: CloseReason


class ComplaintReceivedData(StrictModel):
    placement_id: Identifier
    channel: str = Field(min_length=1, max_length=32)
    summary: str = Field(min_length=1, max_length=1000)


class AttributionDisputedData(StrictModel):
    placement_id: Identifier = Field(description="The agency's placement that should be credited")
    receipt_id: Identifier = Field(
        description="The lender's receipt id, as the payment_id of the payment.direct or "
        "payment.attributed packet"
    )
    reason: str = Field(min_length=1, max_length=1000)
    amount_claimed: PositiveMoney | None = Field(
        default=None, description="What the agency says should be credited to the placement"
    )


class DataDeletedData(StrictModel):
    placement_id: Identifier
    method: Literal["deleted", "returned"] = Field(
        description="The case's personal data was erased, or handed back and no copy kept"
    )
    reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The agency's own record of it (certificate or ticket number)",
    )


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


_ID_MAX = 2**31 - 1
"""Statement ids, revisions and line numbers fit a 32-bit integer column."""


class SettlementConfirmedData(StrictModel):
    statement_id: int = Field(ge=1, le=_ID_MAX, description="From the settlement.statement packet")
    revision: int = Field(ge=1, le=_ID_MAX)
    sha256: Sha256Hex = Field(description="The packet's sha256: what the agency agrees to")


class SettlementDisputedData(StrictModel):
    statement_id: int = Field(ge=1, le=_ID_MAX)
    revision: int = Field(ge=1, le=_ID_MAX)
    line_nos: tuple[Annotated[int, Field(ge=1, le=_ID_MAX)], ...] = Field(
        min_length=1, max_length=1000, description="The statement's lines in question"
    )
    reason: str = Field(min_length=1, max_length=1000)
    claimed: NonNegativeMoney = Field(
        description="The commission the agency says those lines earn, in total"
    )


ConcessionFrequency = Literal["weekly", "fortnightly", "monthly"]


class ScheduledInstalment(StrictModel):
    due_date: WireDate
    amount: PositiveMoney


class WaiverRequestedData(StrictModel):
    placement_id: Identifier
    request_id: Identifier = Field(description="The agency's id of this request, unique per agency")
    waive_amount: PositiveMoney | None = Field(
        default=None, description="The part of the balance to waive (give exactly one of the two)"
    )
    settlement_amount: PositiveMoney | None = Field(
        default=None, description="What the debtor would pay to settle; the rest is waived"
    )
    reason: str = Field(min_length=1, max_length=500)
    evidence_ref: str | None = Field(
        default=None, min_length=1, max_length=64, description="The agency's evidence document"
    )


class InstalmentRequestedData(StrictModel):
    placement_id: Identifier
    request_id: Identifier = Field(description="The agency's id of this request, unique per agency")
    instalments: int = Field(ge=2, le=120, description="How many instalments")
    schedule: tuple[ScheduledInstalment, ...] | None = Field(
        default=None,
        max_length=120,
        description="Each instalment's due date and amount; or give first_due_date and frequency",
    )
    first_due_date: WireDate | None = None
    frequency: ConcessionFrequency | None = Field(
        default=None,
        description="With first_due_date: equal instalments, the remainder on the last one",
    )
    total: PositiveMoney = Field(description="What the debtor pays over the whole plan")
    reason: str = Field(min_length=1, max_length=500)


class PauseRequestedData(StrictModel):
    placement_id: Identifier
    request_id: Identifier = Field(description="The agency's id of this request, unique per agency")
    pause_from: WireDate = Field(description="First day without collection")
    pause_until: WireDate = Field(description="Last day without collection")
    reason: str = Field(
        min_length=1, max_length=500, description="e.g. hospitalisation, dispute, bereavement"
    )


class StatementItem(StrictModel):
    placement_id: Identifier
    balance: NonNegativeMoney
    status: StatementStatus


class StatementSubmittedData(StrictModel):
    statement_id: Identifier
    period_start: WireDate
    period_end: WireDate
    items: tuple[StatementItem, ...] = Field(max_length=100_000)


class _Event(StrictModel):
    timestamp: UtcDatetime


class PlacementAcknowledged(_Event):
    """The agency loaded the case; carries its own case reference and the balance it loaded."""

    model_config = _examples("placement.acknowledged")

    type: Literal["placement.acknowledged"]
    data: PlacementAcknowledgedData


class PlacementRejected(_Event):
    """The agency refuses the case."""

    model_config = _examples("placement.rejected")

    type: Literal["placement.rejected"]
    data: PlacementRejectedData


class ContactAttempted(_Event):
    """A call, message or visit to the debtor."""

    model_config = _examples("contact.attempted")

    type: Literal["contact.attempted"]
    data: ContactAttemptedData


class PromiseMade(_Event):
    """The debtor promised to pay an amount by a date."""

    model_config = _examples("promise.made")

    type: Literal["promise.made"]
    data: PromiseMadeData


class PaymentReported(_Event):
    """The agency collected money on the case."""

    model_config = _examples("payment.reported")

    type: Literal["payment.reported"]
    data: PaymentReportedData


class PaymentReversed(_Event):
    """A previously reported payment bounced or was refunded."""

    model_config = _examples("payment.reversed")

    type: Literal["payment.reversed"]
    data: PaymentReversedData


class DisputeOpened(_Event):
    """The debtor disputes the debt; collection pauses."""

    model_config = _examples("dispute.opened")

    type: Literal["dispute.opened"]
    data: DisputeOpenedData


class LegalActionTaken(_Event):
    """A lawyer's letter, suit, judgment or enforcement step."""

    model_config = _examples("legal.action")

    type: Literal["legal.action"]
    data: LegalActionData


class CaseReturned(_Event):
    """The agency hands the case back."""

    model_config = _examples("case.returned")

    type: Literal["case.returned"]
    data: CaseReturnedData


class CaseClosed(_Event):
    """The case is finished at the agency."""

    model_config = _examples("case.closed")

    type: Literal["case.closed"]
    data: CaseClosedData


class ComplaintReceived(_Event):
    """The debtor complained about the agency's conduct."""

    model_config = _examples("complaint.received")

    type: Literal["complaint.received"]
    data: ComplaintReceivedData


class StatementSubmitted(_Event):
    """The agency's inventory of the placements it holds, for a period."""

    model_config = _examples("statement.submitted")

    type: Literal["statement.submitted"]
    data: StatementSubmittedData


class AttributionDisputed(_Event):
    """The agency disputes how a lender receipt was attributed (who was credited, or how
    much): the lender reviews it as an ``attribution_disputed`` mismatch."""

    model_config = _examples("attribution.disputed")

    type: Literal["attribution.disputed"]
    data: AttributionDisputedData


class SettlementConfirmed(_Event):
    """The agency confirms a settlement statement (佣金结算单) as issued: the revision and the
    SHA-256 of its canonical JSON must be the ones sent; the statement is then locked."""

    model_config = _examples("settlement.confirmed")

    type: Literal["settlement.confirmed"]
    data: SettlementConfirmedData


class SettlementDisputed(_Event):
    """The agency disputes lines of a settlement statement, with the commission it claims;
    the lender reviews it as a ``settlement_disputed`` mismatch and issues a new revision."""

    model_config = _examples("settlement.disputed")

    type: Literal["settlement.disputed"]
    data: SettlementDisputedData


class DataDeleted(_Event):
    """The agency confirms it no longer holds the case's personal data (the answer to
    ``data.deletion_requested``); the event's timestamp is when that was done."""

    model_config = _examples("data.deleted")

    type: Literal["data.deleted"]
    data: DataDeletedData


class WaiverRequested(_Event):
    """The agency asks the lender to waive part of the balance (减免)."""

    model_config = _examples("waiver.requested")

    type: Literal["waiver.requested"]
    data: WaiverRequestedData


class InstalmentRequested(_Event):
    """The agency asks the lender to accept an instalment plan (分期)."""

    model_config = _examples("instalment.requested")

    type: Literal["instalment.requested"]
    data: InstalmentRequestedData


class PauseRequested(_Event):
    """The agency asks the lender to pause collection for a while (停催)."""

    model_config = _examples("pause.requested")

    type: Literal["pause.requested"]
    data: PauseRequestedData


AgencyEvent = Annotated[
    PlacementAcknowledged
    | PlacementRejected
    | ContactAttempted
    | PromiseMade
    | PaymentReported
    | PaymentReversed
    | DisputeOpened
    | LegalActionTaken
    | CaseReturned
    | CaseClosed
    | ComplaintReceived
    | StatementSubmitted
    | DataDeleted
    | AttributionDisputed
    | WaiverRequested
    | InstalmentRequested
    | PauseRequested
    | SettlementConfirmed
    | SettlementDisputed,
    Field(discriminator="type"),
]

EVENT_TYPES: tuple[str, ...] = (
    "placement.acknowledged",
    "placement.rejected",
    "contact.attempted",
    "promise.made",
    "payment.reported",
    "payment.reversed",
    "dispute.opened",
    "legal.action",
    "case.returned",
    "case.closed",
    "complaint.received",
    "statement.submitted",
    "data.deleted",
    "attribution.disputed",
    "waiver.requested",
    "instalment.requested",
    "pause.requested",
    "settlement.confirmed",
    "settlement.disputed",
)

AGENCY_EVENT_ADAPTER: TypeAdapter[AgencyEvent] = TypeAdapter(AgencyEvent)
"""Validates raw JSON into the right event model: ``AGENCY_EVENT_ADAPTER.validate_json(body)``."""

__all__ = [
    "AGENCY_EVENT_ADAPTER",
    "EVENT_EXAMPLES",
    "EVENT_TYPES",
    "AgencyEvent",
    "AttributionDisputed",
    "AttributionDisputedData",
    "CaseClosed",
    "CaseClosedData",
    "CaseReturned",
    "CaseReturnedData",
    "ComplaintReceived",
    "ComplaintReceivedData",
    "ConcessionFrequency",
    "ContactAttempted",
    "ContactAttemptedData",
    "ContactParty",
    "DataDeleted",
    "DataDeletedData",
    "DisputeOpened",
    "DisputeOpenedData",
    "InstalmentRequested",
    "InstalmentRequestedData",
    "LegalActionData",
    "LegalActionTaken",
    "PauseRequested",
    "PauseRequestedData",
    "PaymentReported",
    "PaymentReportedData",
    "PaymentReversed",
    "PaymentReversedData",
    "PlacementAcknowledged",
    "PlacementAcknowledgedData",
    "PlacementRejected",
    "PlacementRejectedData",
    "PromiseMade",
    "PromiseMadeData",
    "ScheduledInstalment",
    "SettlementConfirmed",
    "SettlementConfirmedData",
    "SettlementDisputed",
    "SettlementDisputedData",
    "StatementItem",
    "StatementSubmitted",
    "StatementSubmittedData",
    "ThirdPartyPurpose",
    "WaiverRequested",
    "WaiverRequestedData",
    "example_event",
]
