"""console saved views, and indexes for the console's search and agency health

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_saved_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("query", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("created_at", gateway.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_name", "name", name="uq_saved_views_user_name"),
    )
    with op.batch_alter_table("console_saved_views", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_saved_views_user_name"), ["user_name"], unique=False
        )
    op.create_index("ix_inbound_external_id", "inbound_messages", ["external_id"])
    op.create_index("ix_inbound_agency_received", "inbound_messages", ["agency_id", "received_at"])
    op.create_index("ix_events_ref", "agency_events", ["ref"])
    op.create_index("ix_placements_agency_case_ref", "placements", ["agency_case_ref"])


def downgrade() -> None:
    op.drop_index("ix_placements_agency_case_ref", table_name="placements")
    op.drop_index("ix_events_ref", table_name="agency_events")
    op.drop_index("ix_inbound_agency_received", table_name="inbound_messages")
    op.drop_index("ix_inbound_external_id", table_name="inbound_messages")
    with op.batch_alter_table("console_saved_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_saved_views_user_name"))

    op.drop_table("console_saved_views")
