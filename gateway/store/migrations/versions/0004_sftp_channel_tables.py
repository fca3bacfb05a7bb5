"""sftp channel tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('file_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('file_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('base_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('record_count', sa.Integer(), nullable=False),
    sa.Column('totals', sa.Text(), nullable=False),
    sa.Column('resend_of', sa.Text(), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('agency_id', 'file_type', 'business_date', 'seq', name='uq_file_batch_seq'),
    sa.UniqueConstraint('base_name')
    )
    with op.batch_alter_table('file_batches', schema=None) as batch_op:
        batch_op.create_index('ix_file_batches_agency_state', ['agency_id', 'state'], unique=False)

    op.create_table('file_sequences',
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('file_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('updated_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('agency_id', 'file_type', 'business_date')
    )
    op.create_table('file_batch_items',
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('record_no', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['file_batches.id'], ),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('batch_id', 'outbox_id'),
    sa.UniqueConstraint('batch_id', 'record_no', name='uq_file_batch_record')
    )
    with op.batch_alter_table('file_batch_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_file_batch_items_outbox_id'), ['outbox_id'], unique=False)

    op.create_table('file_pickups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('remote_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('mtime', sa.BigInteger(), nullable=False),
    sa.Column('stable_polls', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('inbound_id', sa.Integer(), nullable=True),
    sa.Column('duplicate_of', sa.Integer(), nullable=True),
    sa.Column('rows_total', sa.Integer(), nullable=False),
    sa.Column('rows_ok', sa.Integer(), nullable=False),
    sa.Column('rows_failed', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Text(), nullable=True),
    sa.Column('final_path', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('first_seen_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['inbound_id'], ['inbound_messages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('file_pickups', schema=None) as batch_op:
        batch_op.create_index('ix_file_pickups_agency_sha256', ['agency_id', 'sha256'], unique=False)
        batch_op.create_index('ix_file_pickups_agency_state', ['agency_id', 'state'], unique=False)

    op.create_table('remote_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('remote_path', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('plaintext_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('record_count', sa.Integer(), nullable=True),
    sa.Column('recipient_fpr', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('uploaded_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['file_batches.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('agency_id', 'remote_path', name='uq_remote_file_path')
    )
    with op.batch_alter_table('remote_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_remote_files_batch_id'), ['batch_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('remote_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_remote_files_batch_id'))

    op.drop_table('remote_files')
    with op.batch_alter_table('file_pickups', schema=None) as batch_op:
        batch_op.drop_index('ix_file_pickups_agency_state')
        batch_op.drop_index('ix_file_pickups_agency_sha256')

    op.drop_table('file_pickups')
    with op.batch_alter_table('file_batch_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_file_batch_items_outbox_id'))

    op.drop_table('file_batch_items')
    op.drop_table('file_sequences')
    with op.batch_alter_table('file_batches', schema=None) as batch_op:
        batch_op.drop_index('ix_file_batches_agency_state')

    op.drop_table('file_batches')
