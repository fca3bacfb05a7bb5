"""Outbound case packets: what the gateway sends to an agency.

Every packet travels in the same envelope as inbound events::

    {"type": "placement.created", "timestamp": "2026-01-15T08:30:00Z", "data": {...}}

The ``webhook-id`` header (and the ``packet_id`` field) is stable across retries; agencies
deduplicate on it. Debtor fields appear only when the agency's contract allows them.

``placement.created`` (and a renewal's ``placement.amended``) carry the placement's signed
authorisation letter (``authorisation``) and its document pack (``documents``): each
document's kind, name, size and SHA-256. A webhook agency fetches the bytes from
``POST /v1/agencies/{agency_id}/documents`` while the placement is open, and checks them
against the descriptor (docs/agency-protocol.md, "Documents").
"""

from datetime import date
from typing import Annotated, Literal

from pydantic import Field

from schemas.base import (
    Identifier,
    Money,
    NonNegativeMoney,
    PositiveMoney,
    StrictModel,
    UtcDatetime,
)

Bucket = Literal["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"]


class Debtor(StrictModel):
    """Debtor details, each present only if the agency's field allowlist names it."""

    debtor_id: Identifier
    name: str | None = None
    national_id: str | None = None
    phones: tuple[str, ...] | None = None
    address: str | None = None
    region: str | None = None


DocumentKind = Literal[
    "authorisation_letter",
    "loan_contract",
    "repayment_history",
    "balance_breakdown",
    "notarisation",
    "preservation",
    "other",
]


class Authorisation(StrictModel):
    """The signed authorisation letter (授权委托书) that lets the agency act on this case."""

    letter_no: str = Field(
        min_length=4, max_length=32, description="The letter's number, printed on it"
    )
    valid_from: date
    valid_until: date = Field(description="Last day the letter authorises the agency")
    verify_url: str = Field(
        pattern=r"^https?://",
        description="The lender's public verification page for this letter (also its QR code)",
    )


class DocumentDescriptor(StrictModel):
    """One document of the placement's pack. Fetch its bytes by ``document_id`` and check
    them against ``size`` and ``sha256`` before use."""

    document_id: int = Field(ge=1)
    kind: DocumentKind
    name: str = Field(min_length=1, max_length=255, description="File name to save it under")
    media_type: str = Field(max_length=100)
    size: int = Field(ge=0, description="Bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lowercase hex SHA-256")
    reference: str | None = Field(
        default=None,
        max_length=255,
        description="Notarisation certificate number or electronic preservation (存证) "
        "platform and deposit id, when the lender has one",
    )


class PlacementCreatedData(StrictModel):
    packet_id: Identifier = Field(description="Stable id of this packet; equals the webhook-id")
    placement_id: Identifier
    case_id: Identifier = Field(description="The lender's account number")
    bucket: Bucket
    dpd: int = Field(ge=0)
    balance: NonNegativeMoney
    principal: NonNegativeMoney
    due_date: date
    product: str
    credit_grade: str
    debtor: Debtor
    placed_at: UtcDatetime
    return_by: date = Field(description="Date the placement ends unless renewed")
    authorisation: Authorisation | None = Field(
        default=None, description="The letter authorising you for this placement"
    )
    documents: tuple[DocumentDescriptor, ...] | None = Field(
        default=None, description="The placement's document pack, letter first"
    )


class PlacementAmendedData(StrictModel):
    packet_id: Identifier
    placement_id: Identifier
    case_id: Identifier
    version: int = Field(ge=2, description="Placement version this amendment brings the agency to")
    balance: NonNegativeMoney
    previous_balance: NonNegativeMoney
    reason: str = Field(max_length=200)
    return_by: date | None = Field(
        default=None,
        description="The placement's new end date, when this amendment renews it (absent "
        "when the end date is unchanged)",
    )
    authorisation: Authorisation | None = Field(
        default=None, description="A renewal's new letter; it supersedes the previous one"
    )
    documents: tuple[DocumentDescriptor, ...] | None = Field(
        default=None, description="A renewal's document pack, in full"
    )


class PlacementExpiringData(StrictModel):
    packet_id: Identifier
    placement_id: Identifier
    case_id: Identifier
    return_by: date = Field(description="Date the placement ends unless it is renewed")
    recall_on: date = Field(
        description="Date the lender recalls the case automatically (UTC) unless it is "
        "renewed before: return_by plus the lender's grace days, plus one"
    )


class PlacementRecalledData(StrictModel):
    packet_id: Identifier
    placement_id: Identifier
    case_id: Identifier
    reason_code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")
    recalled_at: UtcDatetime
    revoked_letters: tuple[str, ...] | None = Field(
        default=None,
        description="Authorisation letters revoked by this recall: stop using them now; the "
        "placement's documents can no longer be fetched",
    )


class AttributionTerms(StrictModel):
    """How much of a lender receipt is credited to the placement the packet is about, and
    by which contract rule (docs/agency-protocol.md, "Attribution")."""

    rule: Literal["held", "grace_old", "grace_shared"] = Field(
        description="held: the placement held the case when the lender received the money; "
        "grace_old / grace_shared: received in the grace window after the old placement "
        "ended, credited wholly to the old agency or shared with the new holder"
    )
    share_bps: int = Field(ge=0, le=10_000, description="This placement's share, basis points")
    amount: NonNegativeMoney = Field(description="The amount credited to this placement")


class PaymentDirectData(StrictModel):
    packet_id: Identifier
    placement_id: Identifier
    case_id: Identifier
    payment_id: Identifier
    amount: PositiveMoney
    paid_at: UtcDatetime
    attribution: AttributionTerms | None = Field(
        default=None,
        description="Under the lender_collects money model: what of this payment is "
        "credited to the placement (absent under agency_remits)",
    )


class PaymentAttributedData(StrictModel):
    packet_id: Identifier
    placement_id: Identifier = Field(description="The agency's ended placement credited")
    case_id: Identifier
    payment_id: Identifier = Field(description="The lender's receipt id (quote it to dispute)")
    amount: PositiveMoney = Field(description="What the lender received")
    paid_at: UtcDatetime
    attribution: AttributionTerms


DeletionReason = Literal["recalled", "returned", "closed", "rejected"]


class DataDeletionRequestedData(StrictModel):
    packet_id: Identifier
    placement_id: Identifier
    case_id: Identifier
    reason: DeletionReason = Field(description="How the placement ended")
    ended_at: UtcDatetime
    delete_by: date = Field(description="Confirm with data.deleted by this date (UTC)")
    categories: tuple[str, ...] = Field(
        description="The personal data categories we sent for this case (the contract's "
        "field allowlist, plus the debtor id that every packet carries)"
    )
    legal_basis: str = Field(max_length=200)


RequestType = Literal["waiver", "instalment", "pause"]
RequestDecision = Literal["approved", "rejected"]


class InstalmentTerm(StrictModel):
    due_date: date
    amount: PositiveMoney


class ApprovedTerms(StrictModel):
    """Exactly what the lender approved; only the fields of the request's type are present."""

    waive_amount: PositiveMoney | None = Field(
        default=None, description="Waived part of the balance"
    )
    settlement_amount: NonNegativeMoney | None = Field(
        default=None, description="What the debtor pays to settle the case"
    )
    schedule: tuple[InstalmentTerm, ...] | None = Field(
        default=None, description="Each instalment's due date and amount"
    )
    total: PositiveMoney | None = Field(default=None, description="The instalment plan's total")
    pause_from: date | None = None
    pause_until: date | None = Field(default=None, description="Collection resumes the day after")


class RequestDecidedData(StrictModel):
    packet_id: Identifier
    placement_id: Identifier
    case_id: Identifier
    request_id: Identifier = Field(description="The agency's request id")
    request_type: RequestType
    decision: RequestDecision
    terms: ApprovedTerms | None = Field(default=None, description="Present when approved")
    reason: str | None = Field(
        default=None, max_length=500, description="Why it was rejected (always given then)"
    )
    decided_at: UtcDatetime
    valid_until: date | None = Field(
        default=None,
        description="An approved waiver or plan lapses unless the debtor starts paying by then",
    )


class PlacementCreated(StrictModel):
    """A new case handed to the agency."""

    type: Literal["placement.created"]
    timestamp: UtcDatetime
    data: PlacementCreatedData


class PlacementAmended(StrictModel):
    """The balance of a placed case changed at the lender, or the placement was renewed
    (``return_by``)."""

    type: Literal["placement.amended"]
    timestamp: UtcDatetime
    data: PlacementAmendedData


class PlacementExpiring(StrictModel):
    """The placement ends soon: on ``recall_on`` the lender recalls the case unless it
    renews the placement first (a ``placement.amended`` with a later ``return_by``)."""

    type: Literal["placement.expiring"]
    timestamp: UtcDatetime
    data: PlacementExpiringData


class PlacementRecalled(StrictModel):
    """The lender takes the case back; the agency must stop all activity."""

    type: Literal["placement.recalled"]
    timestamp: UtcDatetime
    data: PlacementRecalledData


class PaymentDirect(StrictModel):
    """The debtor paid the lender directly; the agency should credit the case."""

    type: Literal["payment.direct"]
    timestamp: UtcDatetime
    data: PaymentDirectData


class PaymentAttributed(StrictModel):
    """The lender received a repayment on a case after the agency's placement ended, and
    credits (some of) it to that placement under the contract's grace window."""

    type: Literal["payment.attributed"]
    timestamp: UtcDatetime
    data: PaymentAttributedData


class DataDeletionRequested(StrictModel):
    """The placement has ended: the agency must delete (or hand back) the case's personal
    data and confirm it with ``data.deleted`` by ``delete_by``."""

    type: Literal["data.deletion_requested"]
    timestamp: UtcDatetime
    data: DataDeletionRequestedData


class RequestDecided(StrictModel):
    """The lender's decision on an agency's waiver, instalment or pause request."""

    type: Literal["request.decided"]
    timestamp: UtcDatetime
    data: RequestDecidedData


class SettlementLineItem(StrictModel):
    """One line of a settlement statement: an attributed repayment and its commission."""

    line_no: int = Field(ge=1, description="Quote it to dispute the line")
    placement_id: Identifier
    case_id: Identifier
    payment_id: Identifier = Field(description="The lender's receipt id")
    paid_on: date
    amount: NonNegativeMoney = Field(description="The amount attributed to this placement")
    attribution_rule: str = Field(
        max_length=32,
        description="held, grace_old, grace_shared, or moved (the lender moved the share to "
        "this placement after a dispute)",
    )
    rule: str | None = Field(default=None, max_length=48, description="The commission rule")
    rate_bps: int | None = Field(default=None, ge=0, le=10_000)
    commission: NonNegativeMoney | None = Field(
        default=None, description="Absent on a withheld line (its attribution is disputed)"
    )
    withheld: bool = Field(default=False, description="Disputed attribution: not paid yet")


class SettlementDocumentRef(StrictModel):
    """A document of the statement: kind (xlsx or pdf), file name, SHA-256."""

    kind: Literal["xlsx", "pdf"]
    name: str = Field(max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    fetch: str | None = Field(
        default=None,
        max_length=200,
        description="Webhook agencies: the path (under the gateway's agency API) to POST "
        '{"statement_id": ..., "kind": ...} to, signed like events, for the bytes',
    )


class SettlementStatementData(StrictModel):
    packet_id: Identifier
    statement_id: int = Field(ge=1)
    revision: int = Field(ge=1, description="Confirm or dispute this revision")
    month: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the statement's canonical JSON: settlement.confirmed names it",
    )
    recovered: NonNegativeMoney
    commission: Money = Field(description="Line commission with the monthly minimum/maximum")
    adjustments: Money
    fees: NonNegativeMoney = Field(description="Legal fees reimbursed")
    total: Money = Field(description="What the lender pays for the month")
    withheld: NonNegativeMoney = Field(description="Repayments whose attribution is disputed")
    lines: tuple[SettlementLineItem, ...] = Field(max_length=100_000)
    documents: tuple[SettlementDocumentRef, ...] = ()


class SettlementStatement(StrictModel):
    """The agency's monthly commission statement (佣金结算单); answer it with
    ``settlement.confirmed`` or ``settlement.disputed``."""

    type: Literal["settlement.statement"]
    timestamp: UtcDatetime
    data: SettlementStatementData


CasePacket = Annotated[
    PlacementCreated
    | PlacementAmended
    | PlacementExpiring
    | PlacementRecalled
    | PaymentDirect
    | PaymentAttributed
    | DataDeletionRequested
    | RequestDecided
    | SettlementStatement,
    Field(discriminator="type"),
]
PACKET_TYPES: tuple[str, ...] = (
    "placement.created",
    "placement.amended",
    "placement.expiring",
    "placement.recalled",
    "payment.direct",
    "payment.attributed",
    "data.deletion_requested",
    "request.decided",
    "settlement.statement",
)

__all__ = [
    "PACKET_TYPES",
    "ApprovedTerms",
    "AttributionTerms",
    "Authorisation",
    "Bucket",
    "CasePacket",
    "DataDeletionRequested",
    "DataDeletionRequestedData",
    "Debtor",
    "DeletionReason",
    "DocumentDescriptor",
    "DocumentKind",
    "InstalmentTerm",
    "PaymentAttributed",
    "PaymentAttributedData",
    "PaymentDirect",
    "PaymentDirectData",
    "PlacementAmended",
    "PlacementAmendedData",
    "PlacementCreated",
    "PlacementCreatedData",
    "PlacementExpiring",
    "PlacementExpiringData",
    "PlacementRecalled",
    "PlacementRecalledData",
    "RequestDecided",
    "RequestDecidedData",
    "RequestDecision",
    "RequestType",
    "SettlementDocumentRef",
    "SettlementLineItem",
    "SettlementStatement",
    "SettlementStatementData",
]
