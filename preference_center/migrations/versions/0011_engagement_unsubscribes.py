"""A one-click opt-out remembers the campaign delivery whose link was used (the campaign report counts it)

Revision ID: 0010_engagement_unsubscribes
Revises: 0010_contact_attributes
Create Date: 2026-12-06 07:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0010_engagement_unsubscribes'
down_revision = '0010_contact_attributes'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('opt_out_inbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))


def downgrade():
    with op.batch_alter_table('opt_out_inbox', schema=None) as batch_op:
        batch_op.drop_column('delivery_id')
