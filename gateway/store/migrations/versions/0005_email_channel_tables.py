"""email channel tables

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mail_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('attempt_no', sa.Integer(), nullable=False),
    sa.Column('envelope_from', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('recipients', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('body_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('possible_duplicate', sa.Boolean(), nullable=False),
    sa.Column('dsn', sa.Boolean(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('smtp_code', sa.Integer(), nullable=True),
    sa.Column('smtp_answer', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('bounce_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('answered_at', gateway.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_messages_agency_id'), ['agency_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_messages_message_id'), ['message_id'], unique=False)

    op.create_table('mail_dispatches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('placement_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('created_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id', 'outbox_id', name='uq_mail_dispatch')
    )
    with op.batch_alter_table('mail_dispatches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_dispatches_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_dispatches_outbox_id'), ['outbox_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_dispatches_placement_id'), ['placement_id'], unique=False)

    op.create_table('mailbox_state',
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('agency_id', 'mailbox')
    )

    op.create_table('mail_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('inbound_id', sa.Integer(), nullable=True),
    sa.Column('rfc_message_id', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('matched_message_id', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('received_at', gateway.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbound_id'], ['inbound_messages.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('agency_id', 'mailbox', 'uidvalidity', 'uid', name='uq_mail_reply')
    )
    with op.batch_alter_table('mail_replies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_replies_agency_id'), ['agency_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mail_replies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_replies_agency_id'))
    op.drop_table('mail_replies')
    op.drop_table('mailbox_state')
    with op.batch_alter_table('mail_dispatches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_dispatches_placement_id'))
        batch_op.drop_index(batch_op.f('ix_mail_dispatches_outbox_id'))
        batch_op.drop_index(batch_op.f('ix_mail_dispatches_message_id'))
    op.drop_table('mail_dispatches')
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_messages_message_id'))
        batch_op.drop_index(batch_op.f('ix_mail_messages_agency_id'))
    op.drop_table('mail_messages')
