"""Tables of the reconciliation engine: the lender's payment feed, matches between it and the
agencies' reported payments, the statements reconciled, and the run records.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


def _money() -> sa.Column[int]:
    return sa.Column(sa.BigInteger, nullable=False)


class PaymentFeed(SQLModel, table=True):
    """One import of the lender's payment feed file (``agency-gateway payments import``)."""

    __tablename__ = "payment_feeds"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=500, description="the file as named on the command line")
    sha256: str = Field(max_length=64, index=True, description="of the file's bytes")
    format: str = Field(max_length=8)
    lines: int
    imported: int
    duplicates: int
    errors: int
    imported_at: datetime = Field(sa_column=_ts())


class LenderPayment(SQLModel, table=True):
    """Money the lender received: from the debtor (``debtor``) or remitted by an agency
    (``remittance``, net or gross of commission, for a period)."""

    __tablename__ = "lender_payments"

    id: int | None = Field(default=None, primary_key=True)
    payment_id: str = Field(unique=True, max_length=128, description="the lender's receipt id")
    feed_id: int = Field(foreign_key="payment_feeds.id", index=True)
    line_no: int
    line_sha256: str = Field(max_length=64, description="of the line's canonical content")
    kind: str = Field(max_length=16, description="debtor|remittance")
    case_id: str | None = Field(default=None, max_length=128, index=True)
    placement_id: str | None = Field(default=None, max_length=128, index=True)
    agency_id: str | None = Field(default=None, max_length=32)
    agency_payment_ref: str | None = Field(default=None, max_length=128)
    remittance_id: str | None = Field(default=None, max_length=128)
    period_start: date | None = None
    period_end: date | None = None
    amount_minor: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    received_at: datetime = Field(sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts())


class PaymentMatch(SQLModel, table=True):
    """One link of a match between lender receipts and agency-reported payments. A 1:1 match
    is one row; N:1 and 1:N matches are N rows sharing ``match_key``. A record with a link is
    consumed: no later pass or run matches it again. When: see the run."""

    __tablename__ = "payment_matches"

    id: int | None = Field(default=None, primary_key=True)
    match_key: str = Field(max_length=96, index=True)
    run_id: int = Field(index=True)
    pass_name: str = Field(max_length=16, description="exact|keyed|tolerance|grouped")
    lender_payment_id: int = Field(index=True)
    event_id: int = Field(index=True, description="the agency's payment.reported event")
    expected_minor: int = Field(sa_column=_money())
    received_minor: int = Field(sa_column=_money())


class StatementRecord(SQLModel, table=True):
    """An agency inventory statement that a run reconciled against our placements."""

    __tablename__ = "recon_statements"

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(unique=True, description="the statement.submitted agency event")
    agency_id: str = Field(max_length=32, index=True)
    statement_id: str = Field(max_length=128)
    period_start: date
    period_end: date
    items: int
    sha256: str = Field(max_length=64, description="of the statement's data as stored")
    run_id: int
    counts: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    reconciled_at: datetime = Field(sa_column=_ts())


class ReconRun(SQLModel, table=True):
    """One reconciliation run: what it read (with hashes), what it found, how far it got."""

    __tablename__ = "recon_runs"

    id: int | None = Field(default=None, primary_key=True)
    state: str = Field(max_length=16, description="running|completed|failed")
    dry_run: bool
    rule_version: int
    rules_sha256: str = Field(max_length=64, description="of the rules and settings applied")
    settings: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    inputs: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    counts: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    checkpoint: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    after_event_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    upto_event_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    upto_payment_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    as_of: datetime = Field(sa_column=_ts())
    started_at: datetime = Field(sa_column=_ts())
    finished_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    resumes: int = 0
    error: str | None = Field(default=None, max_length=2000)


__all__ = ["LenderPayment", "PaymentFeed", "PaymentMatch", "ReconRun", "StatementRecord"]
