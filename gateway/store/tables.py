"""The record of what was sent and received: SQLModel tables (private; not wire models).

Money is integer minor units plus a currency code. Times are UTC. Bytes we sent or received
are stored exactly, with their SHA-256, so the evidence log can attest them.
"""

# No `from __future__ import annotations` here: SQLModel needs runtime annotations.
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import AutoString

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable, index=index)


class Case(SQLModel, table=True):
    """One overdue account from the lender. PII lives only in ``pii`` (AES-GCM, key ring)."""

    __tablename__ = "cases"

    id: str = Field(primary_key=True, max_length=128)
    debtor_id: str = Field(index=True, max_length=128)
    debtor_key: str | None = Field(
        default=None,
        index=True,
        max_length=64,
        description="keyed hash of debtor_id (PiiKeyRing.debtor_key): the console finds by it",
    )
    pii: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    content_mac: str = Field(max_length=64, description="keyed hash of the intake row")
    region: str = Field(max_length=16)
    product: str = Field(max_length=64)
    currency: str = Field(max_length=3)
    principal_minor: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    balance_minor: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    dpd: int
    credit_grade: str = Field(max_length=1)
    due_date: date
    bucket: str = Field(max_length=8, index=True)
    status: str = Field(default="open", max_length=16, index=True)
    unallocated_reason: str | None = Field(default=None, max_length=500)
    """Why the last allocation round left the case unplaced (cleared when it is placed)."""
    # The lender's breakdown and loan details from intake (optional columns; not PII).
    principal_due_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    interest_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    penalty_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    fees_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    contract_no: str | None = Field(default=None, max_length=64)
    disbursed_on: date | None = None
    annual_rate_bp: int | None = None
    claim_batch_id: str | None = Field(default=None, max_length=40, index=True)
    """The confirmation batch (``claim_batches``) of the intake that last created or changed
    the case; it is allocated only once that batch is approved."""
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())


class Placement(SQLModel, table=True):
    """A case handed to one agency. ``version`` grows with every amendment sent."""

    __tablename__ = "placements"
    __table_args__ = (
        sa.Index("ix_placements_agency_state", "agency_id", "state"),
        sa.Index("ix_placements_agency_case_ref", "agency_case_ref"),  # the console's search
    )

    id: str = Field(primary_key=True, max_length=128)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=128)
    agency_id: str = Field(max_length=32)
    state: str = Field(max_length=16)
    version: int = 1
    currency: str = Field(max_length=3)
    balance_minor: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    acked_balance_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    collected_minor: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    agency_case_ref: str | None = Field(default=None, max_length=64)
    placed_at: datetime = Field(sa_column=_ts())
    return_by: date
    recalled_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    recall_reason: str | None = Field(default=None, max_length=32)
    strategy: str = Field(
        default="champion",
        sa_column=sa.Column(AutoString(length=16), nullable=False, server_default="champion"),
        description="how allocation drew the agency: champion or challenger",
    )
    tier: str | None = Field(default=None, max_length=32)
    decision_id: int | None = Field(default=None, description="allocation_decisions.id")
    expiry_warned_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    renewals: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    updated_at: datetime = Field(sa_column=_ts())


class OutboxItem(SQLModel, table=True):
    """A packet waiting to be sent, or sent. ``payload`` is the exact body on the wire.

    The claim index order (run_at, id) equals the claim's ORDER BY; see gateway/dispatch/outbox.py.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index(
            "ix_outbox_due",
            "run_at",
            "id",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        ),
        sa.Index("ix_outbox_state_lease", "state", "lease_expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=64)
    agency_id: str = Field(max_length=32, index=True)
    placement_id: str = Field(max_length=128, index=True)
    packet_type: str = Field(max_length=32)
    packet_version: int
    payload: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    payload_sha256: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    max_attempts: int = 8
    run_at: datetime = Field(sa_column=_ts())
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_token: int = 0
    lease_expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_column=_ts())
    delivered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    payload_purged_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    """When the packet's bytes were purged after their retention (``payload_sha256`` stays)."""


class DeliveryAttempt(SQLModel, table=True):
    """One try at sending an outbox item, with the agency's receipt."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    agency_id: str = Field(max_length=32)
    attempt_no: int
    lease_token: int
    outcome: str = Field(max_length=16, description="delivered|transient|permanent|unknown")
    started_at: datetime = Field(sa_column=_ts())
    duration_ms: int
    request_timestamp: int = Field(description="webhook-timestamp of this attempt")
    http_status: int | None = None
    response_sha256: str | None = Field(default=None, max_length=64)
    response_excerpt: str | None = Field(default=None, max_length=2000)
    error: str | None = Field(default=None, max_length=2000)


class InboundMessage(SQLModel, table=True):
    """A raw inbound message exactly as received, stored before we answer."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "channel", "external_id", name="uq_inbound_external"),
        # The console's search finds a webhook id, and an agency's inbound health reads by time.
        sa.Index("ix_inbound_external_id", "external_id"),
        sa.Index("ix_inbound_agency_received", "agency_id", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    external_id: str = Field(max_length=300)
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    body_sha256: str = Field(max_length=64)
    signature_scheme: str = Field(max_length=8)
    event_type: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16, description="accepted|invalid")
    response_status: int
    response_body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    received_at: datetime = Field(sa_column=_ts())


class AgencyEventRow(SQLModel, table=True):
    """A parsed agency event, linked to its raw message."""

    __tablename__ = "agency_events"
    __table_args__ = (
        sa.Index("ix_events_agency_type_ref", "agency_id", "event_type", "ref"),
        sa.Index("ix_events_ref", "ref"),  # the console's search by payment id
    )

    id: int | None = Field(default=None, primary_key=True)
    inbound_id: int = Field(foreign_key="inbound_messages.id", index=True)
    agency_id: str = Field(max_length=32)
    placement_id: str | None = Field(default=None, max_length=128, index=True)
    event_type: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_column=_ts())
    ref: str | None = Field(default=None, max_length=128, description="payment/promise id")
    amount_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    currency: str | None = Field(default=None, max_length=3)
    data: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    applied: bool = Field(description="False when reconciliation refused to apply it")
    received_at: datetime = Field(sa_column=_ts())


class Expectation(SQLModel, table=True):
    """Something we expect back from an agency, and by when."""

    __tablename__ = "expectations"
    __table_args__ = (
        sa.UniqueConstraint("placement_id", "kind", "ref", name="uq_expectation"),
        sa.Index("ix_expectations_open_due", "state", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    placement_id: str = Field(max_length=128)
    agency_id: str = Field(max_length=32)
    kind: str = Field(max_length=32, description="ack|first_activity|promise_payment|statement")
    ref: str = Field(default="", max_length=128)
    due_at: datetime = Field(sa_column=_ts())
    amount_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    # Bounds (Modern Treasury style): what meets the expectation. A payment expectation is
    # met by payments in [window_start, due_at] totalling at least amount_lower_minor.
    amount_lower_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    amount_upper_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    currency: str | None = Field(default=None, max_length=3)
    window_start: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    state: str = Field(default="open", max_length=16)
    met_by_event_id: int | None = None
    created_at: datetime = Field(sa_column=_ts())


class Mismatch(SQLModel, table=True):
    """A disagreement between our record and an agency's report, waiting for ops."""

    __tablename__ = "mismatches"
    __table_args__ = (sa.Index("ix_mismatches_state_kind", "state", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=128)
    kind: str = Field(max_length=40)
    severity: str = Field(max_length=8)
    state: str = Field(default="open", max_length=16)
    agency_id: str = Field(max_length=32, index=True)
    placement_id: str | None = Field(default=None, max_length=128, index=True)
    event_id: int | None = None
    outbox_id: int | None = None
    rule: str = Field(max_length=64)
    rule_version: int = 1
    ours: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    theirs: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    delta_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    detail: str = Field(max_length=1000)
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())


class EvidenceLeaf(SQLModel, table=True):
    """An RFC 9162 Merkle leaf; ``seq`` is the leaf index, assigned in commit order."""

    __tablename__ = "evidence_leaves"
    __table_args__ = (sa.Index("ix_evidence_ref", "kind", "ref"),)

    # INTEGER on SQLite makes seq the rowid: leaves are stored in seq order, one index less.
    seq: int = Field(
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        )
    )
    kind: str = Field(max_length=32)
    ref: str = Field(max_length=160)
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class Checkpoint(SQLModel, table=True):
    """A signed tree head in the C2SP signed-note format."""

    __tablename__ = "checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    tree_size: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))
    root_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))
    note: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class AgencyStatus(SQLModel, table=True):
    """Per-agency operational switches that must survive restarts."""

    __tablename__ = "agency_status"

    agency_id: str = Field(primary_key=True, max_length=32)
    endpoint_disabled: bool = False
    disabled_reason: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(sa_column=_ts())


# Each feature keeps its tables in its own module; importing them here registers them in
# the one metadata that migrations and tests use.
from gateway.store import (  # noqa: E402
    case_tables as case_tables,
    claim_tables as claim_tables,
    cluster_tables as cluster_tables,
    complaint_tables as complaint_tables,
    concession_tables as concession_tables,
    conduct_tables as conduct_tables,
    console_tables as console_tables,
    document_tables as document_tables,
    evaluation_tables as evaluation_tables,
    mail_tables as mail_tables,
    notice_tables as notice_tables,
    recon_tables as recon_tables,
    register_tables as register_tables,
    settlement_tables as settlement_tables,
    statement_tables as statement_tables,
    transfer_tables as transfer_tables,
)

METADATA = SQLModel.metadata

__all__ = [
    "METADATA",
    "AgencyEventRow",
    "AgencyStatus",
    "Case",
    "Checkpoint",
    "DeliveryAttempt",
    "EvidenceLeaf",
    "Expectation",
    "InboundMessage",
    "Mismatch",
    "OutboxItem",
    "Placement",
]
