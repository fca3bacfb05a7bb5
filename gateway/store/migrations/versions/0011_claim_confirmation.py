"""claim confirmation batches and four-eyes approvals

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STR = sqlmodel.sql.sqltypes.AutoString
_TS = gateway.store.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "claim_batches",
        sa.Column("id", _STR(length=40), nullable=False),
        sa.Column("file_name", _STR(length=255), nullable=False),
        sa.Column("file_sha256", _STR(length=64), nullable=False),
        sa.Column("maker", _STR(length=64), nullable=False),
        sa.Column("status", _STR(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.Column("holds", sa.Text(), nullable=False),
        sa.Column("differences", sa.Text(), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _TS(timezone=True), nullable=False),
        sa.Column("imported_at", _TS(timezone=True), nullable=True),
        sa.Column("decided_by", _STR(length=64), nullable=True),
        sa.Column("decided_at", _TS(timezone=True), nullable=True),
        sa.Column("note", _STR(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_claim_batches_status", "claim_batches", ["status", "created_at"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", _STR(length=32), nullable=False),
        sa.Column("subject", _STR(length=160), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_sha256", _STR(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", _STR(length=3), nullable=True),
        sa.Column("maker", _STR(length=64), nullable=False),
        sa.Column("made_at", _TS(timezone=True), nullable=False),
        sa.Column("status", _STR(length=16), nullable=False),
        sa.Column("checker", _STR(length=64), nullable=True),
        sa.Column("checked_at", _TS(timezone=True), nullable=True),
        sa.Column("executed_at", _TS(timezone=True), nullable=True),
        sa.Column("note", _STR(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_approvals_status", "approvals", ["status", "made_at"])
    op.create_index("ix_approvals_subject", "approvals", ["action", "subject"])
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("principal_due_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("interest_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("penalty_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("fees_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("contract_no", _STR(length=64), nullable=True))
        batch_op.add_column(sa.Column("disbursed_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("annual_rate_bp", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("claim_batch_id", _STR(length=40), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_cases_claim_batch_id"), ["claim_batch_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_claim_batch_id"))
        batch_op.drop_column("claim_batch_id")
        batch_op.drop_column("annual_rate_bp")
        batch_op.drop_column("disbursed_on")
        batch_op.drop_column("contract_no")
        batch_op.drop_column("fees_minor")
        batch_op.drop_column("penalty_minor")
        batch_op.drop_column("interest_minor")
        batch_op.drop_column("principal_due_minor")
    op.drop_index("ix_approvals_subject", table_name="approvals")
    op.drop_index("ix_approvals_status", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_claim_batches_status", table_name="claim_batches")
    op.drop_table("claim_batches")
