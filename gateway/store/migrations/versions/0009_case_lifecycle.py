"""case lifecycle

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types


revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "allocation_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("debtor_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("case_ids", sa.Text(), nullable=False),
        sa.Column("bucket", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("strategy", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("candidates", sa.Text(), nullable=False),
        sa.Column("draw", sa.Float(), nullable=True),
        sa.Column("chosen_agency", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("decided_at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("allocation_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_allocation_decisions_debtor_id"), ["debtor_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_allocation_decisions_round_id"), ["round_id"], unique=False
        )

    op.create_table(
        "case_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("from_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("to_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("placement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_history", schema=None) as batch_op:
        batch_op.create_index("ix_case_history_case", ["case_id", "id"], unique=False)

    op.create_table(
        "case_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("placed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("placed_at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("released_at", gateway.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("release_note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_holds", schema=None) as batch_op:
        batch_op.create_index("ix_case_holds_case_open", ["case_id", "released_at"], unique=False)

    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("placement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("proposed_at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("decided_at", gateway.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_escalations_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_escalations_state", ["state"], unique=False)
        batch_op.create_index("uq_escalations_placement", ["placement_id"], unique=True)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "unallocated_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True
            )
        )

    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(sa.Column("decision_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "expiry_warned_at", gateway.store.types.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("renewals", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.drop_column("renewals")
        batch_op.drop_column("expiry_warned_at")
        batch_op.drop_column("decision_id")
        batch_op.drop_column("tier")

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("unallocated_reason")

    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("uq_escalations_placement")
        batch_op.drop_index("ix_escalations_state")
        batch_op.drop_index(batch_op.f("ix_escalations_case_id"))

    op.drop_table("escalations")
    with op.batch_alter_table("case_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_case_holds_case_open")

    op.drop_table("case_holds")
    with op.batch_alter_table("case_history", schema=None) as batch_op:
        batch_op.drop_index("ix_case_history_case")

    op.drop_table("case_history")
    with op.batch_alter_table("allocation_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocation_decisions_round_id"))
        batch_op.drop_index(batch_op.f("ix_allocation_decisions_debtor_id"))

    op.drop_table("allocation_decisions")
