"""document fetches by agencies

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_fetches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("placement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("document_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("document_fetches", schema=None) as batch_op:
        batch_op.create_index("ix_document_fetches_agency_at", ["agency_id", "at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_document_fetches_placement_id"), ["placement_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_document_fetches_request_id"), ["request_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("document_fetches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_fetches_request_id"))
        batch_op.drop_index(batch_op.f("ix_document_fetches_placement_id"))
        batch_op.drop_index("ix_document_fetches_agency_at")
    op.drop_table("document_fetches")
