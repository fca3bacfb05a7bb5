"""qa_samples: the monthly QA sample of call recordings per agency

Each month a reproducible sample of the contact attempts that carry a call recording is drawn
per agency, and each item is tracked from drawn to reviewed (gateway.conduct).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "qa_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("month", _S(length=7), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("placement_id", _S(length=128), nullable=False),
        sa.Column("collector_id", _S(length=128), nullable=True),
        sa.Column("recording_ref", _S(length=200), nullable=False),
        sa.Column("attempted_at", UtcDateTime(), nullable=False),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("drawn_at", UtcDateTime(), nullable=False),
        sa.Column("drawn_by", _S(length=64), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=True),
        sa.Column("reviewed_at", UtcDateTime(), nullable=True),
        sa.Column("reviewer", _S(length=64), nullable=True),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "month", "event_id", name="uq_qa_samples_item"),
    )
    op.create_index("ix_qa_samples_agency_month", "qa_samples", ["agency_id", "month", "rank"])


def downgrade() -> None:
    op.drop_table("qa_samples")
