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


class DataDeleted(_Event):
    """The agency confirms it no longer holds the case's personal data (the answer to
    ``data.deletion_requested``); the event's timestamp is when that was done."""

    model_config = _examples("data.deleted")

    type: Literal["data.deleted"]
    data: DataDeletedData


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
    | DataDeleted,
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
)

AGENCY_EVENT_ADAPTER: TypeAdapter[AgencyEvent] = TypeAdapter(AgencyEvent)
"""Validates raw JSON into the right event model: ``AGENCY_EVENT_ADAPTER.validate_json(body)``."""

__all__ = [
    "AGENCY_EVENT_ADAPTER",
    "EVENT_EXAMPLES",
    "EVENT_TYPES",
    "AgencyEvent",
    "CaseClosed",
    "CaseClosedData",
    "CaseReturned",
    "CaseReturnedData",
    "ComplaintReceived",
    "ComplaintReceivedData",
    "ContactAttempted",
    "ContactAttemptedData",
    "DataDeleted",
    "DataDeletedData",
    "DisputeOpened",
    "DisputeOpenedData",
    "LegalActionData",
    "LegalActionTaken",
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
    "StatementItem",
    "StatementSubmitted",
    "StatementSubmittedData",
    "example_event",
]
