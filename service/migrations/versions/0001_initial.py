"""Initial schema: taxpayer records, identity verification, grants, tickets and hand-off requests.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('handoff_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=24), nullable=True),
    sa.Column('conversation_id', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Enum('user_request', 'low_confidence', 'complaint_escalation', 'verification_failed', 'knowledge_gap', 'other', name='handoff_reason', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('last_message', sa.Text(), nullable=True),
    sa.Column('contact_phone', sa.String(length=11), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoff_requests')),
    sa.UniqueConstraint('reference', name=op.f('uq_handoff_requests_reference'))
    )
    op.create_index(op.f('ix_handoff_requests_conversation_id'), 'handoff_requests', ['conversation_id'], unique=False)
    op.create_table('taxpayers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('taxpayer_id', sa.String(length=18), nullable=True),
    sa.Column('id_number', sa.String(length=18), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('enterprise', 'individual', 'household', name='taxpayer_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('category', sa.Enum('normal', 'VIP', name='taxpayer_category', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('phone', sa.String(length=11), nullable=False),
    sa.Column('email', sa.String(length=120), nullable=True),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('tax_office', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('taxpayer_id IS NOT NULL OR id_number IS NOT NULL', name=op.f('ck_taxpayers_identified')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_taxpayers')),
    sa.UniqueConstraint('id_number', name=op.f('uq_taxpayers_id_number')),
    sa.UniqueConstraint('taxpayer_id', name=op.f('uq_taxpayers_taxpayer_id'))
    )
    op.create_index(op.f('ix_taxpayers_phone'), 'taxpayers', ['phone'], unique=False)
    op.create_table('tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=24), nullable=True),
    sa.Column('kind', sa.Enum('complaint', 'report', 'suggestion', name='ticket_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('contact_phone', sa.String(length=11), nullable=True),
    sa.Column('conversation_id', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('opening_message', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('reference', name=op.f('uq_tickets_reference'))
    )
    op.create_index(op.f('ix_tickets_conversation_id'), 'tickets', ['conversation_id'], unique=False)
    op.create_table('verification_starts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('identifier_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verification_starts'))
    )
    op.create_index(op.f('ix_verification_starts_created_at'), 'verification_starts', ['created_at'], unique=False)
    op.create_index(op.f('ix_verification_starts_identifier_hash'), 'verification_starts', ['identifier_hash'], unique=False)
    op.create_table('grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('taxpayer_pk', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['taxpayer_pk'], ['taxpayers.id'], name=op.f('fk_grants_taxpayer_pk_taxpayers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grants')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_grants_token_hash'))
    )
    op.create_index(op.f('ix_grants_taxpayer_pk'), 'grants', ['taxpayer_pk'], unique=False)
    op.create_table('payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('taxpayer_pk', sa.Integer(), nullable=False),
    sa.Column('tax_type', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('voucher_no', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('success', 'processing', 'failed', name='payment_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.ForeignKeyConstraint(['taxpayer_pk'], ['taxpayers.id'], name=op.f('fk_payments_taxpayer_pk_taxpayers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('voucher_no', name=op.f('uq_payments_voucher_no'))
    )
    op.create_index(op.f('ix_payments_taxpayer_pk'), 'payments', ['taxpayer_pk'], unique=False)
    op.create_table('refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('taxpayer_pk', sa.Integer(), nullable=False),
    sa.Column('tax_type', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('submitted', 'reviewing', 'approved', 'paid', 'rejected', 'returned', name='refund_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['taxpayer_pk'], ['taxpayers.id'], name=op.f('fk_refunds_taxpayer_pk_taxpayers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('taxpayer_pk', 'tax_type', 'period', name=op.f('uq_refunds_taxpayer_pk_tax_type_period'))
    )
    op.create_index(op.f('ix_refunds_taxpayer_pk'), 'refunds', ['taxpayer_pk'], unique=False)
    op.create_table('tax_due',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('taxpayer_pk', sa.Integer(), nullable=False),
    sa.Column('tax_type', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('status', sa.Enum('unpaid', 'overdue', 'paid', name='due_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.ForeignKeyConstraint(['taxpayer_pk'], ['taxpayers.id'], name=op.f('fk_tax_due_taxpayer_pk_taxpayers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tax_due')),
    sa.UniqueConstraint('taxpayer_pk', 'tax_type', 'period', name=op.f('uq_tax_due_taxpayer_pk_tax_type_period'))
    )
    op.create_index(op.f('ix_tax_due_taxpayer_pk'), 'tax_due', ['taxpayer_pk'], unique=False)
    op.create_table('verifications',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('taxpayer_pk', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('conversation_id', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['taxpayer_pk'], ['taxpayers.id'], name=op.f('fk_verifications_taxpayer_pk_taxpayers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verifications'))
    )
    op.create_index(op.f('ix_verifications_taxpayer_pk'), 'verifications', ['taxpayer_pk'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_verifications_taxpayer_pk'), table_name='verifications')
    op.drop_table('verifications')
    op.drop_index(op.f('ix_tax_due_taxpayer_pk'), table_name='tax_due')
    op.drop_table('tax_due')
    op.drop_index(op.f('ix_refunds_taxpayer_pk'), table_name='refunds')
    op.drop_table('refunds')
    op.drop_index(op.f('ix_payments_taxpayer_pk'), table_name='payments')
    op.drop_table('payments')
    op.drop_index(op.f('ix_grants_taxpayer_pk'), table_name='grants')
    op.drop_table('grants')
    op.drop_index(op.f('ix_verification_starts_identifier_hash'), table_name='verification_starts')
    op.drop_index(op.f('ix_verification_starts_created_at'), table_name='verification_starts')
    op.drop_table('verification_starts')
    op.drop_index(op.f('ix_tickets_conversation_id'), table_name='tickets')
    op.drop_table('tickets')
    op.drop_index(op.f('ix_taxpayers_phone'), table_name='taxpayers')
    op.drop_table('taxpayers')
    op.drop_index(op.f('ix_handoff_requests_conversation_id'), table_name='handoff_requests')
    op.drop_table('handoff_requests')
