"""Contacts carry their folded search text (accent- and case-insensitive search on every database)

Revision ID: 0007_staff_side
Revises: 0004
Create Date: 2026-11-30 07:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0007_staff_side'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
    from preference_center.folding import contact_text

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
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('search_text')
