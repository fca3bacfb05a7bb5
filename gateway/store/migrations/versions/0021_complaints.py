"""complaints: complaints about collection, with a deadline, an owner, an outcome and a hold

A complaint opens from an agency's ``complaint.received``, the lender's complaint channel
(file import or webhook) or ops; it is answered by a deadline from ``[complaints]`` and
attributed to the agency and collector (gateway.complaints).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", _S(length=16), nullable=False),
        sa.Column("source_ref", _S(length=128), nullable=False),
        sa.Column("case_id", _S(length=128), nullable=False),
        sa.Column("placement_id", _S(length=128), nullable=True),
        sa.Column("agency_id", _S(length=32), nullable=True),
        sa.Column("collector_id", _S(length=64), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("channel", _S(length=32), nullable=False),
        sa.Column("category", _S(length=32), nullable=False),
        sa.Column("summary_enc", sa.LargeBinary(), nullable=True),
        sa.Column("contact_at", UtcDateTime(), nullable=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("deadline_at", UtcDateTime(), nullable=False),
        sa.Column("extended", sa.Boolean(), nullable=False),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("outcome", _S(length=16), nullable=True),
        sa.Column("outcome_note", _S(length=500), nullable=True),
        sa.Column("owner", _S(length=64), nullable=True),
        sa.Column("hold_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", _S(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "source_ref", name="uq_complaints_source_ref"),
    )
    op.create_index("ix_complaints_case_id", "complaints", ["case_id"])
    op.create_index("ix_complaints_placement_id", "complaints", ["placement_id"])
    op.create_index("ix_complaints_state_deadline", "complaints", ["state", "deadline_at"])
    op.create_index("ix_complaints_agency_received", "complaints", ["agency_id", "received_at"])


def downgrade() -> None:
    op.drop_table("complaints")
