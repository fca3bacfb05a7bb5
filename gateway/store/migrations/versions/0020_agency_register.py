"""agency register: admitted agencies, their qualifications, history and expiry reminders

The lender's register of agencies (gateway.register): legal identity, contract, data-
processing agreement, deposit, admission review, status and allocation share per agency;
qualification documents by SHA-256 with their expiry; every change with who, when and why;
the expiry reminders already given.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "agency_register",
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("legal_name", _S(length=200), nullable=False),
        sa.Column("registration_number", _S(length=64), nullable=False),
        sa.Column("business_scope", sa.Text(), nullable=False),
        sa.Column("licence", _S(length=200), nullable=True),
        sa.Column("contract_ref", _S(length=128), nullable=True),
        sa.Column("contract_start", sa.Date(), nullable=False),
        sa.Column("contract_end", sa.Date(), nullable=True),
        sa.Column("dpa_ref", _S(length=128), nullable=True),
        sa.Column("dpa_signed_on", sa.Date(), nullable=True),
        sa.Column("deposit_minor", sa.BigInteger(), nullable=False),
        sa.Column("deposit_currency", _S(length=3), nullable=False),
        sa.Column("review_by", _S(length=64), nullable=True),
        sa.Column("review_on", sa.Date(), nullable=True),
        sa.Column("review_conclusion", _S(length=500), nullable=True),
        sa.Column("review_ref", _S(length=128), nullable=True),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("status_reason", _S(length=500), nullable=True),
        sa.Column("status_since", UtcDateTime(), nullable=False),
        sa.Column("share_bps", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("lapse_recalled_on", sa.Date(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", _S(length=64), nullable=False),
        sa.PrimaryKeyConstraint("agency_id"),
    )
    op.create_table(
        "agency_qualifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("kind", _S(length=64), nullable=False),
        sa.Column("reference", _S(length=200), nullable=True),
        sa.Column("sha256", _S(length=64), nullable=False),
        sa.Column("file_name", _S(length=255), nullable=True),
        sa.Column("issued_on", sa.Date(), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by", _S(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_agency_qualifications_agency_kind", "agency_qualifications", ["agency_id", "kind"]
    )
    op.create_table(
        "agency_register_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", _S(length=32), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("reason", _S(length=500), nullable=True),
        sa.Column("actor", _S(length=64), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "revision", name="uq_agency_register_history_rev"),
    )
    op.create_table(
        "agency_register_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("subject", _S(length=80), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "agency_id", "subject", "expires_on", "days", name="uq_agency_register_reminders"
        ),
    )


def downgrade() -> None:
    op.drop_table("agency_register_reminders")
    op.drop_table("agency_register_history")
    op.drop_index("ix_agency_qualifications_agency_kind", table_name="agency_qualifications")
    op.drop_table("agency_qualifications")
    op.drop_table("agency_register")
