"""ops console tables: users, sessions, API tokens, login attempts, mismatch assignments,
comments and actions, PII reveals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('console_login_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('remote', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('console_login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_name_at', ['name', 'at'], unique=False)
        batch_op.create_index('ix_login_attempts_remote_at', ['remote', 'at'], unique=False)

    op.create_table('console_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('pii_reveals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('fields', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('remote', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('evidence_seq', sa.BigInteger(), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pii_reveals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pii_reveals_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pii_reveals_user_name'), ['user_name'], unique=False)

    op.create_table('console_api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['console_users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('console_api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('console_sessions',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('remote', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['console_users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('mismatch_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mismatch_id', sa.Integer(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('from_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('to_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('batch', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('evidence_seq', sa.BigInteger(), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['mismatch_id'], ['mismatches.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mismatch_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mismatch_actions_batch'), ['batch'], unique=False)
        batch_op.create_index(batch_op.f('ix_mismatch_actions_mismatch_id'), ['mismatch_id'], unique=False)

    op.create_table('mismatch_assignments',
    sa.Column('mismatch_id', sa.Integer(), nullable=False),
    sa.Column('assignee', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('assigned_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('assigned_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['mismatch_id'], ['mismatches.id'], ),
    sa.PrimaryKeyConstraint('mismatch_id')
    )
    with op.batch_alter_table('mismatch_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mismatch_assignments_assignee'), ['assignee'], unique=False)

    op.create_table('mismatch_comments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mismatch_id', sa.Integer(), nullable=False),
    sa.Column('author', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('evidence_seq', sa.BigInteger(), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['mismatch_id'], ['mismatches.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mismatch_comments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mismatch_comments_mismatch_id'), ['mismatch_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mismatch_comments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mismatch_comments_mismatch_id'))

    op.drop_table('mismatch_comments')
    with op.batch_alter_table('mismatch_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mismatch_assignments_assignee'))

    op.drop_table('mismatch_assignments')
    with op.batch_alter_table('mismatch_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mismatch_actions_mismatch_id'))
        batch_op.drop_index(batch_op.f('ix_mismatch_actions_batch'))

    op.drop_table('mismatch_actions')
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_console_sessions_expires_at'))

    op.drop_table('console_sessions')
    with op.batch_alter_table('console_api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_api_tokens_user_id'))

    op.drop_table('console_api_tokens')
    with op.batch_alter_table('pii_reveals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pii_reveals_user_name'))
        batch_op.drop_index(batch_op.f('ix_pii_reveals_case_id'))

    op.drop_table('pii_reveals')
    op.drop_table('console_users')
    with op.batch_alter_table('console_login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_remote_at')
        batch_op.drop_index('ix_login_attempts_name_at')

    op.drop_table('console_login_attempts')
