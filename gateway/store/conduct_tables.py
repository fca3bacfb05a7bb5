"""Tables of collector conduct (gateway.conduct): the monthly QA sample of call recordings.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class QaSample(SQLModel, table=True):
    """One call recording drawn for review in an agency's monthly QA sample.

    ``state`` follows gateway.conduct.sampling.QA_TRANSITIONS: ``drawn`` → ``requested``
    (the recording was asked of the agency) → ``passed`` | ``failed`` | ``unavailable``
    (reviewed). The reviewer's note is sealed with the PII keys (it may quote the call)."""

    __tablename__ = "qa_samples"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "month", "event_id", name="uq_qa_samples_item"),
        sa.Index("ix_qa_samples_agency_month", "agency_id", "month", "rank"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    month: str = Field(max_length=7, description="YYYY-MM, the month the calls were made")
    rank: int = Field(description="position in the draw, from 1")
    event_id: int = Field(description="agency_events.id of the contact attempt")
    placement_id: str = Field(max_length=128)
    collector_id: str | None = Field(default=None, max_length=128)
    recording_ref: str = Field(max_length=200)
    attempted_at: datetime = Field(sa_column=_ts())
    state: str = Field(default="drawn", max_length=16)
    drawn_at: datetime = Field(sa_column=_ts())
    drawn_by: str = Field(max_length=64)
    requested_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    reviewed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    reviewer: str | None = Field(default=None, max_length=64)
    note_sealed: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary()))


__all__ = ["QaSample"]
