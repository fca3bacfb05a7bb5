"""attributions: each lender receipt credited to the placement that held the case

Under the ``lender_collects`` money model the borrower repays the lender and the agency is
paid commission on repayments attributed to the placement it held; one row per share of a
receipt, or one unattributable row with the reason.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "attributions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("receipt_id", sa.Integer(), nullable=False),
        sa.Column("case_id", _S(length=128), nullable=True),
        sa.Column("placement_id", _S(length=128), nullable=True),
        sa.Column("agency_id", _S(length=32), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", _S(length=3), nullable=False),
        sa.Column("share_bps", sa.Integer(), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.Column("rule", _S(length=32), nullable=False),
        sa.Column("reason", _S(length=500), nullable=True),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("receipt_id", "placement_id", name="uq_attributions_receipt_share"),
    )
    op.create_index("ix_attributions_receipt_id", "attributions", ["receipt_id"])
    op.create_index("ix_attributions_case_id", "attributions", ["case_id"])
    op.create_index("ix_attributions_placement_id", "attributions", ["placement_id"])
    op.create_index("ix_attributions_statement_id", "attributions", ["statement_id"])
    op.create_index("ix_attributions_agency_paid", "attributions", ["agency_id", "paid_on"])


def downgrade() -> None:
    op.drop_table("attributions")
