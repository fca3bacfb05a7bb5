"""concession_requests: agencies' waiver, instalment and pause requests and their decisions

An agency asks for a waiver (减免), an instalment plan (分期) or a pause of collection (停催);
the lender approves within the limits of the person's role (four eyes above a threshold) or
rejects with a reason (gateway.concessions).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "concession_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("request_id", _S(length=128), nullable=False),
        sa.Column("placement_id", _S(length=128), nullable=False),
        sa.Column("case_id", _S(length=128), nullable=False),
        sa.Column("kind", _S(length=16), nullable=False),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("currency", _S(length=3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("waive_minor", sa.BigInteger(), nullable=True),
        sa.Column("settle_minor", sa.BigInteger(), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.Column("pause_from", sa.Date(), nullable=True),
        sa.Column("pause_until", sa.Date(), nullable=True),
        sa.Column("reason", _S(length=500), nullable=False),
        sa.Column("evidence_ref", _S(length=64), nullable=True),
        sa.Column("problems", _S(length=1000), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("first_by", _S(length=64), nullable=True),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", _S(length=64), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("decision_reason", _S(length=500), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("lifted_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "request_id", name="uq_concession_requests_agency_ref"),
    )
    op.create_index("ix_concession_requests_placement_id", "concession_requests", ["placement_id"])
    op.create_index("ix_concession_requests_case_id", "concession_requests", ["case_id"])
    op.create_index("ix_concession_requests_state", "concession_requests", ["state", "id"])


def downgrade() -> None:
    op.drop_table("concession_requests")
