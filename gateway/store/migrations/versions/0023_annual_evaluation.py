"""evaluation_reports, evaluation_documents, data_incidents: the annual agency evaluation

Each generated evaluation of an agency (figures, recommendation, the four-eyes decision),
its documents (PDF zh/en, XLSX) and the data incidents ops record (gateway.evaluation).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "evaluation_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("trigger", _S(length=16), nullable=False),
        sa.Column("recommendation", _S(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.Column("canonical_sha256", _S(length=64), nullable=False),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("decision", _S(length=16), nullable=True),
        sa.Column("decision_reason", _S(length=500), nullable=True),
        sa.Column("decision_share_bps", sa.Integer(), nullable=True),
        sa.Column("extend_to", sa.Date(), nullable=True),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("proposed_by", _S(length=64), nullable=True),
        sa.Column("decided_by", _S(length=64), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("generated_by", _S(length=64), nullable=False),
        sa.Column("generated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_evaluation_reports_agency", "evaluation_reports", ["agency_id", "period_end"]
    )
    op.create_table(
        "evaluation_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("kind", _S(length=8), nullable=False),
        sa.Column("name", _S(length=128), nullable=False),
        sa.Column("sha256", _S(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id", "kind", name="uq_evaluation_document"),
    )
    op.create_index("ix_evaluation_documents_report_id", "evaluation_documents", ["report_id"])
    op.create_table(
        "data_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("severity", _S(length=8), nullable=False),
        sa.Column("summary", _S(length=500), nullable=False),
        sa.Column("ref", _S(length=128), nullable=True),
        sa.Column("recorded_by", _S(length=64), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_data_incidents_agency_on", "data_incidents", ["agency_id", "occurred_on"])


def downgrade() -> None:
    op.drop_table("data_incidents")
    op.drop_table("evaluation_documents")
    op.drop_table("evaluation_reports")
