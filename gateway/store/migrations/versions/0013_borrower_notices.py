"""borrower notices and collector verification checks

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "borrower_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("placement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("letter_no", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", gateway.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", gateway.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
        sa.UniqueConstraint("placement_id", "kind", name="uq_borrower_notices_placement_kind"),
    )
    with op.batch_alter_table("borrower_notices", schema=None) as batch_op:
        batch_op.create_index("ix_borrower_notices_state", ["state", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_borrower_notices_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_borrower_notices_outbox_id"), ["outbox_id"], unique=False
        )
    op.create_table(
        "verification_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("client", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("letter_no", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("verification_checks", schema=None) as batch_op:
        batch_op.create_index("ix_verification_checks_outcome_at", ["outcome", "at"], unique=False)
    op.create_table(
        "verification_windows",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("window_start", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start"),
    )


def downgrade() -> None:
    op.drop_table("verification_windows")
    with op.batch_alter_table("verification_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_verification_checks_outcome_at")
    op.drop_table("verification_checks")
    with op.batch_alter_table("borrower_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_borrower_notices_outbox_id"))
        batch_op.drop_index(batch_op.f("ix_borrower_notices_case_id"))
        batch_op.drop_index("ix_borrower_notices_state")
    op.drop_table("borrower_notices")
