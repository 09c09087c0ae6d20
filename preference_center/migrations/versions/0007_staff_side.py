"""Contacts carry their folded search text (accent- and case-insensitive search on every database);
the organisation's branding; topic names and descriptions per language; engagement events per campaign;
the topics whose campaigns may track opens and clicks; reusable mail layouts; saved segments

Revision ID: 0007_staff_side
Revises: 0004
Create Date: 2026-11-30 07:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0007_staff_side'
down_revision = '0006_privacy'
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
    from preference_center.folding import contact_text

    op.create_table(
        'branding',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('org_name', sa.String(length=200), nullable=True),
        sa.Column('accent', sa.String(length=7), nullable=True),
        sa.Column('privacy_url', sa.String(length=500), nullable=True),
        sa.Column('postal_address', sa.String(length=500), nullable=True),
        sa.Column('sender_name', sa.String(length=200), nullable=True),
        sa.Column('sender_email', sa.String(length=320), nullable=True),
        sa.Column('logo', sa.LargeBinary(), nullable=True),
        sa.Column('logo_type', sa.String(length=32), nullable=True),
        sa.Column('updated_by', sa.String(length=200), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_branding')),
    )
    op.create_table(
        'topic_translations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('topic_id', sa.Integer(), nullable=False),
        sa.Column('locale', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_topic_translations_topic_id_topics'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_topic_translations')),
        sa.UniqueConstraint('topic_id', 'locale', name=op.f('uq_topic_translations_topic_id')),
    )

    op.create_table(
        'engagement_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=True),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_engagement_events')),
    )
    op.create_index('ix_engagement_events_campaign', 'engagement_events', ['campaign_id', 'kind'], unique=False)
    op.create_table(
        'segments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('topic_id', sa.Integer(), nullable=False),
        sa.Column('filters', sa.JSON(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_segments_topic_id_topics')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
        sa.UniqueConstraint('name', name=op.f('uq_segments_name')),
    )
    op.create_table(
        'mail_templates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('html', sa.Text(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_templates')),
        sa.UniqueConstraint('name', name=op.f('uq_mail_templates_name')),
    )
    op.create_table(
        'topic_tracking',
        sa.Column('topic_id', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_topic_tracking_topic_id_topics'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('topic_id', name=op.f('pk_topic_tracking')),
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=True))
    contacts = sa.table('contacts', sa.column('id', sa.BigInteger), sa.column('email', sa.String),
                        sa.column('name', sa.String), sa.column('company', sa.String),
                        sa.column('search_text', sa.Text))
    connection = op.get_bind()
    last = 0
    while True:  # existing contacts, folded in Python as new writes are
        rows = connection.execute(sa.select(contacts.c.id, contacts.c.email, contacts.c.name, contacts.c.company)
                                  .where(contacts.c.id > last).order_by(contacts.c.id).limit(BATCH)).all()
        if not rows:
            break
        connection.execute(contacts.update().where(contacts.c.id == sa.bindparam('b_id')),
                           [{'b_id': r.id, 'search_text': contact_text(r.email, r.name, r.company)} for r in rows])
        last = rows[-1].id


def downgrade():
    op.drop_table('topic_tracking')
    op.drop_table('mail_templates')
    op.drop_table('segments')
    op.drop_index('ix_engagement_events_campaign', table_name='engagement_events')
    op.drop_table('engagement_events')
    op.drop_table('topic_translations')
    op.drop_table('branding')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('search_text')
