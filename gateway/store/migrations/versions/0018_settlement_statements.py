"""settlement statements: monthly commission statements, their lines, adjustments, legal
fees and documents

Each agency's month is settled on a statement (佣金结算单) built from its ``attributions``
rows; a confirmed statement is locked and its attributions are marked settled.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def _money(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "settlement_statements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("month", _S(length=7), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("currency", _S(length=3), nullable=False),
        sa.Column("rule_period", _S(length=32), nullable=False),
        sa.Column("tier", _S(length=48), nullable=True),
        _money("recovered_minor"),
        _money("lines_minor"),
        _money("floor_topup_minor"),
        _money("ceiling_cut_minor"),
        _money("adjustments_minor"),
        _money("fees_minor"),
        _money("total_minor"),
        _money("withheld_minor"),
        sa.Column("canonical_sha256", _S(length=64), nullable=True),
        sa.Column("canonical_json", sa.Text(), nullable=True),
        sa.Column("dispute", sa.Text(), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("created_by", _S(length=64), nullable=False),
        sa.Column("issued_by", _S(length=64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("issued_at", UtcDateTime(), nullable=True),
        sa.Column("answered_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "month", "revision", name="uq_settlement_revision"),
    )
    op.create_index("ix_settlement_statements_agency_id", "settlement_statements", ["agency_id"])
    op.create_table(
        "settlement_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("withheld", sa.Boolean(), nullable=False),
        sa.Column("attribution_id", sa.Integer(), nullable=False),
        sa.Column("receipt_id", sa.Integer(), nullable=False),
        sa.Column("case_id", _S(length=128), nullable=True),
        sa.Column("placement_id", _S(length=128), nullable=True),
        sa.Column("paid_on", sa.Date(), nullable=False),
        _money("amount_minor"),
        sa.Column("currency", _S(length=3), nullable=False),
        sa.Column("attribution_rule", _S(length=32), nullable=False),
        sa.Column("bucket", _S(length=8), nullable=False),
        sa.Column("dpd_at_placement", sa.Integer(), nullable=False),
        sa.Column("age_days", sa.Integer(), nullable=False),
        sa.Column("legal", sa.Boolean(), nullable=False),
        sa.Column("rule", _S(length=48), nullable=True),
        sa.Column("rate_bps", sa.Integer(), nullable=True),
        _money("commission_minor", nullable=True),
        sa.Column("capped", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("statement_id", "line_no", name="uq_settlement_line_no"),
    )
    op.create_index("ix_settlement_lines_statement_id", "settlement_lines", ["statement_id"])
    op.create_table(
        "settlement_adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=False),
        _money("amount_minor"),
        sa.Column("reason", _S(length=500), nullable=False),
        sa.Column("actor", _S(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_settlement_adjustments_statement_id", "settlement_adjustments", ["statement_id"]
    )
    op.create_table(
        "settlement_fees",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", _S(length=32), nullable=False),
        sa.Column("case_id", _S(length=128), nullable=False),
        sa.Column("kind", _S(length=16), nullable=False),
        _money("advanced_minor"),
        sa.Column("currency", _S(length=3), nullable=False),
        sa.Column("receipt_ref", _S(length=128), nullable=False),
        sa.Column("incurred_on", sa.Date(), nullable=False),
        sa.Column("actor", _S(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_settlement_fees_agency_on", "settlement_fees", ["agency_id", "incurred_on"])
    op.create_table(
        "settlement_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=False),
        sa.Column("kind", _S(length=8), nullable=False),
        sa.Column("name", _S(length=128), nullable=False),
        sa.Column("sha256", _S(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("statement_id", "kind", name="uq_settlement_document_kind"),
    )
    op.create_index(
        "ix_settlement_documents_statement_id", "settlement_documents", ["statement_id"]
    )


def downgrade() -> None:
    op.drop_table("settlement_documents")
    op.drop_table("settlement_fees")
    op.drop_table("settlement_adjustments")
    op.drop_table("settlement_lines")
    op.drop_table("settlement_statements")
