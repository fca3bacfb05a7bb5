"""Tables of complaints about collection (gateway.complaints).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.

* ``complaints``: one complaint, from an agency's ``complaint.received`` event, the lender's
  complaint channel (a file import or its webhook) or ops; ``(source, source_ref)`` is unique,
  so the same reference never opens two. The summary is personal data: sealed with the PII
  key ring (``summary_enc``, bound to ``complaint:<source>:<source_ref>``); an agency's summary
  stays in its event (``event_id``) and is not copied.
"""

# No `from __future__ import annotations` here: SQLModel needs runtime annotations.
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class Complaint(SQLModel, table=True):
    """A complaint: open → investigating → resolved (with an outcome) → closed; reopenable."""

    __tablename__ = "complaints"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_ref", name="uq_complaints_source_ref"),
        sa.Index("ix_complaints_state_deadline", "state", "deadline_at"),
        sa.Index("ix_complaints_agency_received", "agency_id", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16, description="agency | lender_import | lender_webhook | ops")
    source_ref: str = Field(max_length=128, description="the source's own reference")
    case_id: str = Field(max_length=128, index=True)
    placement_id: str | None = Field(default=None, max_length=128, index=True)
    agency_id: str | None = Field(default=None, max_length=32)
    collector_id: str | None = Field(default=None, max_length=64)
    event_id: int | None = Field(default=None, description="agency_events.id (agency source)")
    channel: str = Field(max_length=32, description="how the debtor complained")
    category: str = Field(max_length=32)
    summary_enc: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary))
    contact_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    received_at: datetime = Field(sa_column=_ts())
    deadline_at: datetime = Field(sa_column=_ts())
    extended: bool = False
    state: str = Field(max_length=16, description="open | investigating | resolved | closed")
    outcome: str | None = Field(
        default=None, max_length=16, description="upheld | partly_upheld | not_upheld | withdrawn"
    )
    outcome_note: str | None = Field(default=None, max_length=500)
    owner: str | None = Field(default=None, max_length=64)
    hold_id: int | None = Field(default=None, description="case_holds.id of its COMPLAINT hold")
    resolved_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    reopened: int = 0
    revision: int = 1
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())
    updated_by: str = Field(max_length=64)


__all__ = ["Complaint"]
