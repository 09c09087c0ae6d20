"""Privacy (issue 14): erased addresses waiting to be erased at the mail provider; legitimate-interest assessments;
an import's third party and its evidence of consent to share; first-contact notices

Revision ID: 0006_privacy
Revises: 0004
Create Date: 2026-11-30 07:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0006_privacy'
down_revision = '0005_consent_service'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'provider_erasures',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_erasures')),
    )
    op.create_table(
        'interest_assessments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('topic_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('purpose', sa.String(length=300), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('text_hash', sa.String(length=64), nullable=False),
        sa.Column('approved_by', sa.String(length=200), nullable=False),
        sa.Column('approved_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_interest_assessments_topic_id_topics')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_interest_assessments')),
        sa.UniqueConstraint('topic_id', 'version', name=op.f('uq_interest_assessments_topic_id')),
    )
    with op.batch_alter_table('interest_assessments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interest_assessments_topic_id'), ['topic_id'], unique=False)
    op.create_table(
        'first_contact_notices',
        sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('import_job_id', sa.Integer(), nullable=True),
        sa.Column('third_party', sa.String(length=200), nullable=False),
        sa.Column('legal_basis', sa.String(length=32), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'],
                                name=op.f('fk_first_contact_notices_contact_id_contacts'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('contact_id', name=op.f('pk_first_contact_notices')),
    )
    with op.batch_alter_table('first_contact_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_first_contact_notices_sent_at'), ['sent_at'], unique=False)
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('third_party', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('share_evidence', sa.String(length=500), nullable=True))


def downgrade():
    with op.batch_alter_table('first_contact_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_first_contact_notices_sent_at'))
    op.drop_table('first_contact_notices')
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_column('share_evidence')
        batch_op.drop_column('third_party')
    with op.batch_alter_table('interest_assessments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interest_assessments_topic_id'))
    op.drop_table('interest_assessments')
    op.drop_table('provider_erasures')
