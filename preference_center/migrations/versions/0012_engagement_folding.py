"""Anonymous per-campaign, per-hour engagement counts that retention and erasure fold engagement rows into

Revision ID: 0010_engagement_folding
Revises: 0010_engagement_unsubscribes
Create Date: 2026-12-06 07:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0010_engagement_folding'
down_revision = '0010_engagement_unsubscribes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'engagement_stats',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=True),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_engagement_stats')),
    )
    op.create_index('ix_engagement_stats_campaign', 'engagement_stats', ['campaign_id', 'name'], unique=False)
    op.create_index('ix_engagement_events_delivery', 'engagement_events', ['delivery_id'], unique=False)


def downgrade():
    op.drop_index('ix_engagement_events_delivery', table_name='engagement_events')
    op.drop_index('ix_engagement_stats_campaign', table_name='engagement_stats')
    op.drop_table('engagement_stats')
