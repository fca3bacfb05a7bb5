"""Tables of what the borrower and the public are told: borrower notices and collector checks.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.

* ``borrower_notices``: one row per (placement, kind) notice queued to the lender's messaging
  service, with the outbox item that carries it; ``state`` follows that item (``queued`` →
  ``delivered`` or ``failed`` when it was given up). The unique (placement, kind) pair is what
  makes the scan idempotent.
* ``verification_checks``: every check made on the public verification page or API: when, a
  keyed hash of the client, the letter number as typed (truncated) and the outcome. Never the
  digits the client typed.
* ``verification_windows``: fixed-window counters of checks per client and per letter number,
  shared by every process (the rate limit).
"""

# No `from __future__ import annotations` here: SQLModel needs runtime annotations.
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class BorrowerNotice(SQLModel, table=True):
    """A notice to the borrower about one placement (see the module docstring)."""

    __tablename__ = "borrower_notices"
    __table_args__ = (
        sa.UniqueConstraint("placement_id", "kind", name="uq_borrower_notices_placement_kind"),
        sa.Index("ix_borrower_notices_state", "state", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    placement_id: str = Field(max_length=128)
    case_id: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=16, description="placed, moved or recalled")
    agency_id: str = Field(max_length=32)
    letter_no: str | None = Field(default=None, max_length=32)
    dedupe_key: str = Field(unique=True, max_length=64)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    state: str = Field(max_length=16, description="queued, delivered or failed")
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_column=_ts())
    delivered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    failed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class VerificationCheck(SQLModel, table=True):
    """One check on the public verification page or API (see the module docstring)."""

    __tablename__ = "verification_checks"
    __table_args__ = (sa.Index("ix_verification_checks_outcome_at", "outcome", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_ts())
    client: str = Field(max_length=64, description="keyed hash of the client's address")
    letter_no: str = Field(max_length=40, description="as typed, truncated")
    outcome: str = Field(
        max_length=16,
        description="authorised, expired, revoked, superseded, no_match, invalid or limited",
    )
    channel: str = Field(max_length=8, description="page or api")


class VerificationWindow(SQLModel, table=True):
    """Checks counted in one fixed window for one client or letter number."""

    __tablename__ = "verification_windows"

    key: str = Field(primary_key=True, max_length=80)
    window_start: datetime = Field(sa_column=sa.Column(UtcDateTime(), primary_key=True))
    count: int = Field(default=0)


__all__ = ["BorrowerNotice", "VerificationCheck", "VerificationWindow"]
