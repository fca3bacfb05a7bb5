"""authorisation letters and case documents

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("placement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("media_type", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("created_at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "placement_id", "name", name="uq_case_documents_name"),
    )
    with op.batch_alter_table("case_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_documents_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_case_documents_placement_id"), ["placement_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_case_documents_sha256"), ["sha256"], unique=False)
    op.create_table(
        "authorisation_letters",
        sa.Column("letter_no", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("placement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", gateway.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.PrimaryKeyConstraint("letter_no"),
    )
    with op.batch_alter_table("authorisation_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_authorisation_letters_case_id"), ["case_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_authorisation_letters_placement_id"), ["placement_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("authorisation_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorisation_letters_placement_id"))
        batch_op.drop_index(batch_op.f("ix_authorisation_letters_case_id"))
    op.drop_table("authorisation_letters")
    with op.batch_alter_table("case_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_documents_sha256"))
        batch_op.drop_index(batch_op.f("ix_case_documents_placement_id"))
        batch_op.drop_index(batch_op.f("ix_case_documents_case_id"))
    op.drop_table("case_documents")
