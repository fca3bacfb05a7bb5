"""Tables of agencies' waiver, instalment and pause requests and the lender's decisions
(gateway.concessions).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


def _minor() -> sa.Column[int]:
    return sa.Column(sa.BigInteger, nullable=True)


class ConcessionRequest(SQLModel, table=True):
    """One request of an agency (its ``request_id`` is unique per agency) and its decision.

    ``state`` moves by gateway.concessions.rules.REQUEST_TRANSITIONS. The terms are those
    asked for; an approval approves them exactly. ``schedule`` is the plan as JSON
    (``[["2026-02-10", 48952], ...]``); ``problems`` says why the terms as asked cannot be
    approved. ``first_by`` is who approved first when four eyes asked for a second person
    (``approval_id`` the approvals row); ``decided_by`` made the final decision."""

    __tablename__ = "concession_requests"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "request_id", name="uq_concession_requests_agency_ref"),
        sa.Index("ix_concession_requests_state", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    request_id: str = Field(max_length=128)
    placement_id: str = Field(max_length=128, index=True)
    case_id: str = Field(max_length=128, index=True)
    kind: str = Field(max_length=16, description="waiver|instalment|pause")
    state: str = Field(default="pending", max_length=16)
    currency: str = Field(max_length=3)
    balance_minor: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    waive_minor: int | None = Field(default=None, sa_column=_minor())
    settle_minor: int | None = Field(default=None, sa_column=_minor())
    total_minor: int | None = Field(default=None, sa_column=_minor())
    schedule: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    pause_from: date | None = None
    pause_until: date | None = None
    reason: str = Field(max_length=500)
    evidence_ref: str | None = Field(default=None, max_length=64)
    problems: str | None = Field(default=None, max_length=1000)
    event_id: int | None = Field(default=None, description="agency_events.id")
    requested_at: datetime = Field(sa_column=_ts())
    first_by: str | None = Field(default=None, max_length=64)
    approval_id: int | None = None
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    decision_reason: str | None = Field(default=None, max_length=500)
    valid_until: date | None = None
    lifted_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=True), description="an approved pause's hold lifted"
    )


__all__ = ["ConcessionRequest"]
