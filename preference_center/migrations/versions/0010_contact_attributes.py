"""Contacts carry custom attributes (a JSON object of free keys, see attributes.py)

Revision ID: 0010_contact_attributes
Revises: 0009_speed
Create Date: 2026-12-06 07:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0010_contact_attributes'
down_revision = '0009_speed'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attributes', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('attributes')
