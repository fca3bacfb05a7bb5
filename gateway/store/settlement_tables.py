"""Tables of the money model (issue: money as Chinese lenders run it): each lender receipt
attributed to the placement that held the case when it was paid, or named unattributable.

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


class Attribution(SQLModel, table=True):
    """One share of a lender receipt credited to one placement (and so one agency), or the
    receipt named unattributable (``placement_id`` and ``agency_id`` empty, ``reason`` says
    why). A receipt shared between an old and a new agency has one row per share; the shares'
    ``amount_minor`` add up to the receipt exactly. ``rule`` records which contract rule
    decided it, so a statement line can always be explained."""

    __tablename__ = "attributions"
    __table_args__ = (
        sa.UniqueConstraint("receipt_id", "placement_id", name="uq_attributions_receipt_share"),
        sa.Index("ix_attributions_agency_paid", "agency_id", "paid_on"),
    )

    id: int | None = Field(default=None, primary_key=True)
    receipt_id: int = Field(index=True, description="lender_payments.id")
    case_id: str | None = Field(default=None, max_length=128, index=True)
    placement_id: str | None = Field(default=None, max_length=128, index=True)
    agency_id: str | None = Field(default=None, max_length=32)
    amount_minor: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    share_bps: int = Field(description="this row's share of the receipt, basis points")
    paid_on: date = Field(description="the day the lender received the money")
    rule: str = Field(
        max_length=32,
        description="held | grace_old | grace_shared | unattributable | moved (by the lender, "
        "after a dispute: gateway.settlement.disputes.move_share)",
    )
    reason: str | None = Field(default=None, max_length=500)
    state: str = Field(default="active", max_length=16, description="active|disputed|settled")
    statement_id: int | None = Field(default=None, index=True, description="settled on")
    run_id: int | None = Field(default=None, description="reconciliation_runs.id")
    created_at: datetime = Field(sa_column=_ts())


__all__ = ["Attribution"]
