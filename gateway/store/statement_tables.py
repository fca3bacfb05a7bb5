"""Tables of the monthly settlement statement (佣金结算单): one statement per agency, month and
revision, its commission lines, ops' adjustments, legal fees a firm advanced, and the
statement's documents (XLSX and signed PDF).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


def _money(nullable: bool = False) -> sa.Column[int]:
    return sa.Column(sa.BigInteger, nullable=nullable)


class SettlementStatement(SQLModel, table=True):
    """One revision of an agency's statement for one month. ``state`` follows the table in
    ``gateway.settlement.statements``; a confirmed one is locked."""

    __tablename__ = "settlement_statements"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "month", "revision", name="uq_settlement_revision"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32, index=True)
    month: str = Field(max_length=7, description="YYYY-MM")
    revision: int = 1
    state: str = Field(max_length=16, description="draft|issued|confirmed|disputed|superseded")
    currency: str = Field(max_length=3)
    rule_period: str = Field(max_length=32, description="the schedule's period, from..to")
    tier: str | None = Field(default=None, max_length=48)
    recovered_minor: int = Field(sa_column=_money())
    lines_minor: int = Field(sa_column=_money())
    floor_topup_minor: int = Field(sa_column=_money())
    ceiling_cut_minor: int = Field(sa_column=_money())
    adjustments_minor: int = Field(sa_column=_money())
    fees_minor: int = Field(sa_column=_money())
    total_minor: int = Field(sa_column=_money())
    withheld_minor: int = Field(sa_column=_money(), description="disputed attributions")
    canonical_sha256: str | None = Field(default=None, max_length=64)
    canonical_json: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    dispute: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    supersedes_id: int | None = None
    created_by: str = Field(max_length=64)
    issued_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=_ts())
    issued_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    answered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    updated_at: datetime = Field(sa_column=_ts())


class SettlementLine(SQLModel, table=True):
    """One attributed repayment on a statement: what the schedule saw and what it decided.
    ``withheld`` lines are disputed attributions, listed apart and not paid."""

    __tablename__ = "settlement_lines"
    __table_args__ = (sa.UniqueConstraint("statement_id", "line_no", name="uq_settlement_line_no"),)

    id: int | None = Field(default=None, primary_key=True)
    statement_id: int = Field(index=True)
    line_no: int
    withheld: bool = False
    attribution_id: int
    receipt_id: int
    case_id: str | None = Field(default=None, max_length=128)
    placement_id: str | None = Field(default=None, max_length=128)
    paid_on: date
    amount_minor: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    attribution_rule: str = Field(max_length=32)
    bucket: str = Field(max_length=8)
    dpd_at_placement: int
    age_days: int
    legal: bool
    rule: str | None = Field(default=None, max_length=48)
    rate_bps: int | None = None
    commission_minor: int | None = Field(default=None, sa_column=_money(nullable=True))
    capped: bool = False


class SettlementAdjustment(SQLModel, table=True):
    """An ops adjustment on a draft statement (signed amount, reason, who)."""

    __tablename__ = "settlement_adjustments"

    id: int | None = Field(default=None, primary_key=True)
    statement_id: int = Field(index=True)
    amount_minor: int = Field(sa_column=_money())
    reason: str = Field(max_length=500)
    actor: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_ts())


class SettlementFee(SQLModel, table=True):
    """A legal fee a firm advanced on a case (court or lawyer), with its receipt reference;
    settled on the statement of the month it was incurred in."""

    __tablename__ = "settlement_fees"
    __table_args__ = (sa.Index("ix_settlement_fees_agency_on", "agency_id", "incurred_on"),)

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    case_id: str = Field(max_length=128)
    kind: str = Field(max_length=16, description="court|lawyer")
    advanced_minor: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    receipt_ref: str = Field(max_length=128)
    incurred_on: date
    actor: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_ts())


class SettlementDocument(SQLModel, table=True):
    """A statement's document (xlsx or pdf), its bytes and SHA-256."""

    __tablename__ = "settlement_documents"
    __table_args__ = (
        sa.UniqueConstraint("statement_id", "kind", name="uq_settlement_document_kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    statement_id: int = Field(index=True)
    kind: str = Field(max_length=8, description="xlsx|pdf")
    name: str = Field(max_length=128)
    sha256: str = Field(max_length=64)
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


__all__ = [
    "SettlementAdjustment",
    "SettlementDocument",
    "SettlementFee",
    "SettlementLine",
    "SettlementStatement",
]
