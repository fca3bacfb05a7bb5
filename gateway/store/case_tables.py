"""Tables of the case lifecycle: history, holds, allocation decisions and escalations.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.

* ``case_history``: every change of a case's status (gateway.lifecycle.CASE_TRANSITIONS) with
  the event, who or what made it (``intake``, ``allocation``, ``expiry``, ``agency:ID``,
  ``ops:NAME``) and why.
* ``case_holds``: reasons a case must not be worked (deceased, bankrupt, dispute, ...), from
  the lender's intake file, from ops or from an agency's return; a hold stands until released.
* ``allocation_decisions``: per debtor group and allocation round, the candidates with their
  verdicts and weights, the draw and the agency chosen (or why none), so "why this agency"
  has an answer.
* ``escalations``: a placed case that crossed the legal threshold, proposed for recall to
  the legal tier and approved or rejected by ops (or done at once by rule).
"""

# No `from __future__ import annotations` here: SQLModel needs runtime annotations.
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class CaseHistory(SQLModel, table=True):
    """One change of a case's status."""

    __tablename__ = "case_history"
    __table_args__ = (sa.Index("ix_case_history_case", "case_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=128)
    from_status: str = Field(max_length=16)
    to_status: str = Field(max_length=16)
    event: str = Field(max_length=16)
    actor: str = Field(max_length=64)
    reason: str | None = Field(default=None, max_length=500)
    placement_id: str | None = Field(default=None, max_length=128)
    at: datetime = Field(sa_column=_ts())


class CaseHold(SQLModel, table=True):
    """A reason not to work a case; active while ``released_at`` is empty."""

    __tablename__ = "case_holds"
    __table_args__ = (sa.Index("ix_case_holds_case_open", "case_id", "released_at"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=128)
    code: str = Field(max_length=32)
    source: str = Field(max_length=16, description="intake | ops | agency")
    note: str | None = Field(default=None, max_length=500)
    placed_by: str = Field(max_length=64)
    placed_at: datetime = Field(sa_column=_ts())
    released_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    released_by: str | None = Field(default=None, max_length=64)
    release_note: str | None = Field(default=None, max_length=500)


class AllocationDecision(SQLModel, table=True):
    """Why a debtor group's cases went where they went in one allocation round."""

    __tablename__ = "allocation_decisions"

    id: int | None = Field(default=None, primary_key=True)
    round_id: str = Field(max_length=40, index=True)
    debtor_id: str = Field(max_length=128, index=True)
    case_ids: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    """JSON list of the group's case ids."""
    bucket: str = Field(max_length=8, description="the bucket the group was placed by")
    tier: str | None = Field(default=None, max_length=32)
    rule: str = Field(max_length=16, description="mixed-debtor rule: single, worst or split")
    strategy: str = Field(max_length=16)
    seed: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    candidates: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    """JSON list of {agency, tier, verdict, weight, factor}; verdict is "eligible" or why not."""
    draw: float | None = None
    chosen_agency: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    decided_at: datetime = Field(sa_column=_ts())


class Escalation(SQLModel, table=True):
    """A placed case past the legal threshold: proposed → approved (recalled) | rejected."""

    __tablename__ = "escalations"
    __table_args__ = (
        sa.Index("ix_escalations_state", "state"),
        # At most one per placement: a rejected one is never proposed again.
        sa.Index("uq_escalations_placement", "placement_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=128, index=True)
    placement_id: str = Field(max_length=128)
    agency_id: str = Field(max_length=32)
    state: str = Field(max_length=16, description="proposed | approved | rejected")
    reason: str = Field(max_length=500)
    proposed_at: datetime = Field(sa_column=_ts())
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    note: str | None = Field(default=None, max_length=500)


__all__ = ["AllocationDecision", "CaseHistory", "CaseHold", "Escalation"]
