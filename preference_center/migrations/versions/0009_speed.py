"""Campaign batches carry the delivery ids of their provider request in flight (the claim unit is the batch)

Revision ID: 0009_speed
Revises: 0007_staff_side
Create Date: 2026-11-30 07:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0009_speed'
down_revision = '0007_staff_side'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign_batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('in_flight', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('campaign_batches', schema=None) as batch_op:
        batch_op.drop_column('in_flight')
