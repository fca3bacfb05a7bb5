"""reconciliation engine tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Lender payment feed, payment matches, statements reconciled, run records; bounds on
    # expectations (amount range, window start, currency).
    op.create_table('payment_feeds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('format', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('imported', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('imported_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payment_feeds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_feeds_sha256'), ['sha256'], unique=False)

    op.create_table('payment_matches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('match_key', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('pass_name', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('lender_payment_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('expected_minor', sa.BigInteger(), nullable=False),
    sa.Column('received_minor', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payment_matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_matches_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_matches_lender_payment_id'), ['lender_payment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_matches_match_key'), ['match_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_matches_run_id'), ['run_id'], unique=False)

    op.create_table('recon_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('rules_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('settings', sa.Text(), nullable=False),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.Column('counts', sa.Text(), nullable=False),
    sa.Column('checkpoint', sa.Text(), nullable=False),
    sa.Column('after_event_id', sa.BigInteger(), nullable=False),
    sa.Column('upto_event_id', sa.BigInteger(), nullable=False),
    sa.Column('upto_payment_id', sa.BigInteger(), nullable=False),
    sa.Column('as_of', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('started_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('resumes', sa.Integer(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('recon_statements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('statement_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('counts', sa.Text(), nullable=False),
    sa.Column('reconciled_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('recon_statements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recon_statements_agency_id'), ['agency_id'], unique=False)

    op.create_table('lender_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('line_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('placement_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('agency_payment_ref', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('remittance_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=True),
    sa.Column('period_end', sa.Date(), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('received_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['feed_id'], ['payment_feeds.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('payment_id')
    )
    with op.batch_alter_table('lender_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lender_payments_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lender_payments_feed_id'), ['feed_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lender_payments_placement_id'), ['placement_id'], unique=False)

    with op.batch_alter_table('expectations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amount_lower_minor', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('amount_upper_minor', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True))
        batch_op.add_column(sa.Column('window_start', gateway.store.types.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('expectations', schema=None) as batch_op:
        batch_op.drop_column('window_start')
        batch_op.drop_column('currency')
        batch_op.drop_column('amount_upper_minor')
        batch_op.drop_column('amount_lower_minor')

    with op.batch_alter_table('lender_payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lender_payments_placement_id'))
        batch_op.drop_index(batch_op.f('ix_lender_payments_feed_id'))
        batch_op.drop_index(batch_op.f('ix_lender_payments_case_id'))

    op.drop_table('lender_payments')
    with op.batch_alter_table('recon_statements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recon_statements_agency_id'))

    op.drop_table('recon_statements')
    op.drop_table('recon_runs')
    with op.batch_alter_table('payment_matches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_matches_run_id'))
        batch_op.drop_index(batch_op.f('ix_payment_matches_match_key'))
        batch_op.drop_index(batch_op.f('ix_payment_matches_lender_payment_id'))
        batch_op.drop_index(batch_op.f('ix_payment_matches_event_id'))

    op.drop_table('payment_matches')
    with op.batch_alter_table('payment_feeds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_feeds_sha256'))

    op.drop_table('payment_feeds')
