"""keyed hash of the debtor id for the console search

The key is a secret (derived from the PII key ring), so this migration only adds the column
and its index; the gateway fills it (gateway.privacy.debtor_keys): intake writes it for every
row, and ``serve`` on start, or ``agency-gateway privacy debtor-keys``, keys the rows written
before.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("debtor_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_cases_debtor_key"), ["debtor_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_debtor_key"))
        batch_op.drop_column("debtor_key")
