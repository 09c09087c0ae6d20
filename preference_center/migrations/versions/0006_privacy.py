"""Privacy (issue 14): erased addresses waiting to be erased at the mail provider

Revision ID: 0006_privacy
Revises: 0004
Create Date: 2026-11-30 07:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0006_privacy'
down_revision = '0004'
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


def downgrade():
    op.drop_table('provider_erasures')
