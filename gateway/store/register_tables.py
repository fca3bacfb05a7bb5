"""Tables of the agency register (gateway.register): who the lender admitted, on what
contract and qualifications, in what standing, and every change made to it.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.

* ``agency_register``: one row per agency id, its legal identity, contract, data-processing
  agreement, deposit, admission review, ``status`` (admitted | suspended | terminated |
  blacklisted) and ``share_bps`` (its allocation weight factor); ``revision`` grows with
  every change.
* ``agency_qualifications``: the documents an agency holds (licence, business scope, ...),
  each by the SHA-256 of its file (the file itself is not stored), with its issue and expiry
  days; the latest row of a kind stands for that kind.
* ``agency_register_history``: who changed what, when and why (one row per revision).
* ``agency_register_reminders``: the expiry reminders already given (one per subject, expiry
  day and threshold), so each is logged once.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class AgencyRegisterRow(SQLModel, table=True):
    """One admitted (or once admitted) agency."""

    __tablename__ = "agency_register"

    agency_id: str = Field(primary_key=True, max_length=32)
    legal_name: str = Field(max_length=200)
    registration_number: str = Field(max_length=64, description="统一社会信用代码")
    business_scope: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False))
    licence: str | None = Field(default=None, max_length=200)
    contract_ref: str | None = Field(default=None, max_length=128)
    contract_start: date
    contract_end: date | None = Field(default=None, description="last day of the contract")
    dpa_ref: str | None = Field(default=None, max_length=128)
    dpa_signed_on: date | None = None
    deposit_minor: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    deposit_currency: str = Field(default="CNY", max_length=3)
    review_by: str | None = Field(default=None, max_length=64)
    review_on: date | None = None
    review_conclusion: str | None = Field(default=None, max_length=500)
    review_ref: str | None = Field(default=None, max_length=128)
    status: str = Field(max_length=16)
    status_reason: str | None = Field(default=None, max_length=500)
    status_since: datetime = Field(sa_column=_ts())
    share_bps: int = Field(default=10_000)
    revision: int = Field(default=1)
    lapse_recalled_on: date | None = Field(
        default=None, description="the lapse day whose recall the lapse job has done"
    )
    updated_at: datetime = Field(sa_column=_ts())
    updated_by: str = Field(max_length=64)


class AgencyQualificationRow(SQLModel, table=True):
    """One qualification document of an agency, by its file's hash."""

    __tablename__ = "agency_qualifications"
    __table_args__ = (sa.Index("ix_agency_qualifications_agency_kind", "agency_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    kind: str = Field(max_length=64)
    reference: str | None = Field(default=None, max_length=200)
    sha256: str = Field(max_length=64)
    file_name: str | None = Field(default=None, max_length=255)
    issued_on: date | None = None
    expires_on: date | None = Field(default=None, description="last day it is valid")
    required: bool = Field(default=True, description="allocation stops when it lapses")
    recorded_at: datetime = Field(sa_column=_ts())
    recorded_by: str = Field(max_length=64)


class AgencyRegisterHistoryRow(SQLModel, table=True):
    """One change of the register: the revision it made, what changed, who, when, why."""

    __tablename__ = "agency_register_history"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "revision", name="uq_agency_register_history_rev"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    revision: int
    action: str = Field(max_length=32)
    changes: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    """JSON: field → [before, after]."""
    reason: str | None = Field(default=None, max_length=500)
    actor: str = Field(max_length=64)
    at: datetime = Field(sa_column=_ts())


class AgencyRegisterReminderRow(SQLModel, table=True):
    """An expiry reminder given: ``subject`` is ``contract`` or ``qualification:<kind>``."""

    __tablename__ = "agency_register_reminders"
    __table_args__ = (
        sa.UniqueConstraint(
            "agency_id", "subject", "expires_on", "days", name="uq_agency_register_reminders"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    subject: str = Field(max_length=80)
    expires_on: date
    days: int = Field(description="the threshold (days before expiry) this reminder is for")
    sent_at: datetime = Field(sa_column=_ts())


__all__ = [
    "AgencyQualificationRow",
    "AgencyRegisterHistoryRow",
    "AgencyRegisterReminderRow",
    "AgencyRegisterRow",
]
