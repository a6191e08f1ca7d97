"""The human-agent desk: skill groups, desk users and sessions, the handoff queue, chat messages, blacklist,
follow-ups. The service creates the default skill groups at start-up.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('desk_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('agent', 'supervisor', 'editor', 'admin', name='desk_role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('state', sa.Enum('online', 'busy', 'away', 'offline', name='agent_state', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('state_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('max_chats', sa.Integer(), nullable=False),
    sa.Column('active_chats', sa.Integer(), nullable=False),
    sa.Column('idle_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_desk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_desk_users_username'))
    )
    op.create_table('skill_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('strategy', sa.Enum('round_robin', 'least_busy', 'longest_idle', name='strategy', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('hours', sa.String(length=200), nullable=True),
    sa.Column('last_agent_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_skill_groups')),
    sa.UniqueConstraint('code', name=op.f('uq_skill_groups_code'))
    )
    op.create_table('agent_skills',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['skill_groups.id'], name=op.f('fk_agent_skills_group_id_skill_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['desk_users.id'], name=op.f('fk_agent_skills_user_id_desk_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'group_id', name=op.f('pk_agent_skills'))
    )
    op.create_table('desk_blacklist',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=160), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['desk_users.id'], name=op.f('fk_desk_blacklist_created_by_desk_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_desk_blacklist'))
    )
    with op.batch_alter_table('desk_blacklist', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_desk_blacklist_subject'), ['subject'], unique=False)

    op.create_table('desk_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['desk_users.id'], name=op.f('fk_desk_sessions_user_id_desk_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_desk_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_desk_sessions_token_hash'))
    )
    with op.batch_alter_table('desk_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_desk_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('chat_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.String(length=128), nullable=False),
    sa.Column('handoff_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('user', 'bot', 'agent', 'system', 'note', name='message_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=True),
    sa.Column('reply_to', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['desk_users.id'], name=op.f('fk_chat_messages_author_id_desk_users')),
    sa.ForeignKeyConstraint(['handoff_id'], ['handoff_requests.id'], name=op.f('fk_chat_messages_handoff_id_handoff_requests'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_messages')),
    sa.UniqueConstraint('conversation_id', 'client_id', name=op.f('uq_chat_messages_conversation_id_client_id'))
    )
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_messages_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chat_messages_handoff_id'), ['handoff_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chat_messages_reply_to'), ['reply_to'], unique=False)

    op.create_table('follow_ups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=24), nullable=True),
    sa.Column('handoff_id', sa.Integer(), nullable=True),
    sa.Column('conversation_id', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('contact_phone', sa.String(length=11), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['handoff_id'], ['handoff_requests.id'], name=op.f('fk_follow_ups_handoff_id_handoff_requests'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_follow_ups')),
    sa.UniqueConstraint('reference', name=op.f('uq_follow_ups_reference'))
    )
    with op.batch_alter_table('follow_ups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_follow_ups_conversation_id'), ['conversation_id'], unique=False)

    with op.batch_alter_table('handoff_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel_user_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('taxpayer_pk', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('vip', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('agent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('offered_to', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('offered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disposition', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('position', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rating', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rating_asked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resume_pending', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('context', sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f('ix_handoff_requests_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_handoff_requests_channel_user_id'), ['channel_user_id'], unique=False)
        batch_op.create_index('ix_handoff_requests_queue', ['status', 'group_id', 'priority', 'enqueued_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_handoff_requests_taxpayer_pk'), ['taxpayer_pk'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_handoff_requests_group_id_skill_groups'), 'skill_groups', ['group_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_handoff_requests_taxpayer_pk_taxpayers'), 'taxpayers', ['taxpayer_pk'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_handoff_requests_agent_id_desk_users'), 'desk_users', ['agent_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_handoff_requests_offered_to_desk_users'), 'desk_users', ['offered_to'], ['id'])



    # Handoffs recorded before the desk existed ("pending"): those users were told a person would follow up.
    # They become follow-up items, and their handoffs are closed.
    op.execute(sa.text(
        "INSERT INTO follow_ups (reference, handoff_id, conversation_id, channel, message, contact_phone, status, "
        "created_at) SELECT 'LY' || substr(reference, 3), id, conversation_id, channel, COALESCE(last_message, ''), "
        "contact_phone, 'open', created_at FROM handoff_requests WHERE status = 'pending'"))
    op.execute(sa.text("UPDATE handoff_requests SET status = 'closed', disposition = 'callback', closed_at = created_at "
                       "WHERE status = 'pending'"))


def downgrade() -> None:
    with op.batch_alter_table('handoff_requests', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_handoff_requests_offered_to_desk_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_handoff_requests_agent_id_desk_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_handoff_requests_taxpayer_pk_taxpayers'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_handoff_requests_group_id_skill_groups'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_handoff_requests_taxpayer_pk'))
        batch_op.drop_index('ix_handoff_requests_queue')
        batch_op.drop_index(batch_op.f('ix_handoff_requests_channel_user_id'))
        batch_op.drop_index(batch_op.f('ix_handoff_requests_agent_id'))
        batch_op.drop_column('context')
        batch_op.drop_column('resume_pending')
        batch_op.drop_column('rating_asked_at')
        batch_op.drop_column('rating')
        batch_op.drop_column('position')
        batch_op.drop_column('disposition')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('assigned_at')
        batch_op.drop_column('enqueued_at')
        batch_op.drop_column('offered_at')
        batch_op.drop_column('offered_to')
        batch_op.drop_column('agent_id')
        batch_op.drop_column('group_id')
        batch_op.drop_column('priority')
        batch_op.drop_column('vip')
        batch_op.drop_column('taxpayer_pk')
        batch_op.drop_column('channel_user_id')

    with op.batch_alter_table('follow_ups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_follow_ups_conversation_id'))

    op.drop_table('follow_ups')
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chat_messages_reply_to'))
        batch_op.drop_index(batch_op.f('ix_chat_messages_handoff_id'))
        batch_op.drop_index(batch_op.f('ix_chat_messages_conversation_id'))

    op.drop_table('chat_messages')
    with op.batch_alter_table('desk_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_desk_sessions_user_id'))

    op.drop_table('desk_sessions')
    with op.batch_alter_table('desk_blacklist', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_desk_blacklist_subject'))

    op.drop_table('desk_blacklist')
    op.drop_table('agent_skills')
    op.drop_table('skill_groups')
    op.drop_table('desk_users')
