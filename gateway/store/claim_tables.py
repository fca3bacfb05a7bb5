"""Tables of claim confirmation (债权确认) and four-eyes approvals.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.

* ``claim_batches``: one per intake run: the file's name and SHA-256, who imported it, the
  totals per currency, product and bucket, the holds applied, the differences from the cases
  known before, and its review (gateway.claims.states). Cases point at their latest batch
  (``cases.claim_batch_id``) and are allocated only once it is approved.
* ``approvals``: an action one person made and a second must approve before it runs
  (gateway.approvals.states): the canonical JSON payload and its SHA-256, a summary (count,
  amount), the maker, the checker and the outcome.
"""

# No `from __future__ import annotations` here: SQLModel needs runtime annotations.
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class ClaimBatch(SQLModel, table=True):
    """One intake run's claims, for confirmation: importing → pending → approved | rejected."""

    __tablename__ = "claim_batches"
    __table_args__ = (sa.Index("ix_claim_batches_status", "status", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    file_name: str = Field(max_length=255)
    file_sha256: str = Field(default="", max_length=64)
    maker: str = Field(max_length=64, description="who imported the file")
    status: str = Field(max_length=16)
    rows: int = 0
    cases: int = Field(default=0, description="valid rows (cases the file lists)")
    balance_minor: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    totals: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False))
    """JSON list of {currency, product, bucket, cases, principal_due_minor, interest_minor,
    penalty_minor, fees_minor, balance_minor, unbroken}."""
    holds: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    """JSON object: hold code → cases listing it."""
    differences: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    """JSON object: new, gone, balance up and down (counts and totals)."""
    approval_id: int | None = Field(default=None, description="approvals.id of its review")
    created_at: datetime = Field(sa_column=_ts())
    imported_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    note: str | None = Field(default=None, max_length=500)


class Approval(SQLModel, table=True):
    """An action waiting for (or given) a second person's approval."""

    __tablename__ = "approvals"
    __table_args__ = (
        sa.Index("ix_approvals_status", "status", "made_at"),
        sa.Index("ix_approvals_subject", "action", "subject"),
    )

    id: int | None = Field(default=None, primary_key=True)
    action: str = Field(max_length=32)
    subject: str = Field(max_length=160, description="what it acts on, e.g. claim_batch:ID")
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    """Canonical JSON (sorted keys, no spaces) of exactly what is approved."""
    payload_sha256: str = Field(max_length=64)
    count: int = Field(default=0, description="cases or placements it touches")
    amount_minor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    currency: str | None = Field(default=None, max_length=3)
    maker: str = Field(max_length=64)
    made_at: datetime = Field(sa_column=_ts())
    status: str = Field(max_length=16)
    checker: str | None = Field(default=None, max_length=64)
    checked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    executed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    note: str | None = Field(default=None, max_length=500)


__all__ = ["Approval", "ClaimBatch"]
