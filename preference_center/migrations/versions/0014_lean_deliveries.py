"""Delivery rows cost less to write: no foreign keys on campaign and contact, no index nobody reads

Revision ID: 0014_lean_deliveries
Revises: 0010_batch_is_the_plan
Create Date: 2026-12-06 10:30:00

A campaign writes one delivery row per recipient (5,000 per batch, COPY). On
PostgreSQL about half of that cost was the two foreign keys: each row's
check looked up and locked (FOR KEY SHARE) its contact and its campaign.
They go, because nothing can break them:

- contacts are never deleted: erasure blanks the row in place (the id stays,
  and every table that names a contact keeps naming it);
- campaigns are deleted only as drafts (`campaigns.delete_draft`, whose DELETE
  itself requires the status), and a draft has no delivery: campaign rows are
  written only for a batch, planned only once the campaign is sending. Every
  campaign row names its batch, whose campaign_id keeps its foreign key.

No query reads deliveries by provider message id (provider events carry our
delivery id), so that index goes. Only system deliveries are looked up by
status (queued or sending: the scheduler's stale and stuck queries and the
queue gauge): the status index becomes a partial index on those rows. The
one-delivery-per-system-message constraint becomes a unique index on the
rows that have a system message, so campaign rows stay out of it. The
unique (campaign_id, contact_id) stays: it is the at-most-once guarantee.
"""
import sqlalchemy as sa
from alembic import op

revision = '0014_lean_deliveries'
down_revision = '0010_batch_is_the_plan'
branch_labels = None
depends_on = None

SYSTEM = "system_message_id IS NOT NULL"
SYSTEM_OPEN = "system_message_id IS NOT NULL AND status IN ('queued', 'sending')"
# SQLite rebuilds the table: it must stay AUTOINCREMENT (delivery ids are taken before rows are written).
TABLE = {'table_kwargs': {'sqlite_autoincrement': True}}


def upgrade():
    with op.batch_alter_table('deliveries', schema=None, **TABLE) as batch_op:
        batch_op.drop_constraint('fk_deliveries_campaign_id_campaigns', type_='foreignkey')
        batch_op.drop_constraint('fk_deliveries_contact_id_contacts', type_='foreignkey')
        batch_op.drop_constraint('uq_deliveries_system_message_id', type_='unique')
        batch_op.drop_index('ix_deliveries_provider_message_id')
        batch_op.drop_index('ix_deliveries_status')
        batch_op.create_index('uq_deliveries_system_message', ['system_message_id'], unique=True,
                              postgresql_where=sa.text(SYSTEM), sqlite_where=sa.text(SYSTEM))
        batch_op.create_index('ix_deliveries_system_open', ['status', 'updated_at'], unique=False,
                              postgresql_where=sa.text(SYSTEM_OPEN), sqlite_where=sa.text(SYSTEM_OPEN))


def downgrade():
    with op.batch_alter_table('deliveries', schema=None, **TABLE) as batch_op:
        batch_op.drop_index('ix_deliveries_system_open')
        batch_op.drop_index('uq_deliveries_system_message')
        batch_op.create_index('ix_deliveries_status', ['status'], unique=False)
        batch_op.create_index('ix_deliveries_provider_message_id', ['provider_message_id'], unique=False)
        batch_op.create_unique_constraint('uq_deliveries_system_message_id', ['system_message_id'])
        batch_op.create_foreign_key('fk_deliveries_contact_id_contacts', 'contacts', ['contact_id'], ['id'])
        batch_op.create_foreign_key('fk_deliveries_campaign_id_campaigns', 'campaigns', ['campaign_id'], ['id'])
