"""Tables of the annual agency evaluation (gateway.evaluation): each generated report with its
figures, recommendation and the reviewer's decision (four eyes), the report's documents (PDF
in Chinese and in English, XLSX), and the data incidents ops record against an agency.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class EvaluationReport(SQLModel, table=True):
    """One generated evaluation of one agency over ``[period_start, period_end)``. ``figures``
    is the report's canonical JSON (what the documents show); ``state`` follows the table in
    ``gateway.evaluation.decisions``: generated → proposed → decided (or back to generated
    when the checker rejects the proposal)."""

    __tablename__ = "evaluation_reports"
    __table_args__ = (sa.Index("ix_evaluation_reports_agency", "agency_id", "period_end"),)

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    period_start: date
    period_end: date = Field(description="exclusive")
    trigger: str = Field(max_length=16, description="on_demand|contract_end|demo")
    recommendation: str = Field(max_length=16, description="renew|reduce_share|terminate")
    reasons: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    figures: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    canonical_sha256: str = Field(max_length=64)
    state: str = Field(default="generated", max_length=16)
    decision: str | None = Field(default=None, max_length=16)
    decision_reason: str | None = Field(default=None, max_length=500)
    decision_share_bps: int | None = None
    extend_to: date | None = None
    approval_id: int | None = None
    proposed_by: str | None = Field(default=None, max_length=64)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    generated_by: str = Field(max_length=64)
    generated_at: datetime = Field(sa_column=_ts())


class EvaluationDocument(SQLModel, table=True):
    """A report's document: ``pdf_zh``, ``pdf_en`` or ``xlsx``, its bytes and SHA-256."""

    __tablename__ = "evaluation_documents"
    __table_args__ = (sa.UniqueConstraint("report_id", "kind", name="uq_evaluation_document"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(index=True)
    kind: str = Field(max_length=8)
    name: str = Field(max_length=128)
    sha256: str = Field(max_length=64)
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class DataIncident(SQLModel, table=True):
    """An information-security incident ops record against an agency (a leak, a lost device,
    data sent to the wrong party). ``summary`` describes the incident, never the people in it
    (no personal data: names and ids stay in the lender's incident file, ``ref`` points
    there)."""

    __tablename__ = "data_incidents"
    __table_args__ = (sa.Index("ix_data_incidents_agency_on", "agency_id", "occurred_on"),)

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    occurred_on: date
    severity: str = Field(max_length=8, description="low|medium|high")
    summary: str = Field(max_length=500)
    ref: str | None = Field(default=None, max_length=128)
    recorded_by: str = Field(max_length=64)
    recorded_at: datetime = Field(sa_column=_ts())


__all__ = ["DataIncident", "EvaluationDocument", "EvaluationReport"]
