"""A campaign batch is its plan: planned recipients on the batch row, delivery rows written once at send time

Revision ID: 0010_batch_is_the_plan
Revises: 0009_speed
Create Date: 2026-12-06 07:00:00

Batches still open keep their recipients: the contact ids of their rows go on
the batch (`contact_ids`), a request in flight becomes [delivery id, contact
id, event] triples, and the rows still `queued` are deleted (they are written
again, with their outcome, when the batch is sent). On SQLite `deliveries`
becomes AUTOINCREMENT so that ids can be taken before rows are written.
"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0010_batch_is_the_plan'
down_revision = '0010_engagement_folding'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign_batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_ids', sa.JSON(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        with op.batch_alter_table('deliveries', recreate='always', table_kwargs={'sqlite_autoincrement': True}):
            pass
    batches = bind.execute(sa.text("SELECT id, in_flight FROM campaign_batches WHERE status != 'done'")).all()
    for batch_id, in_flight in batches:
        rows = bind.execute(sa.text("SELECT id, contact_id, event_id, status FROM deliveries WHERE batch_id = :b "
                                    "ORDER BY contact_id"), {"b": batch_id}).all()
        if isinstance(in_flight, str):
            in_flight = json.loads(in_flight)
        held = {int(i) for i in in_flight or []}
        triples = [[r.id, r.contact_id, r.event_id] for r in rows if r.id in held and r.status == 'queued']
        bind.execute(sa.text("UPDATE campaign_batches SET contact_ids = :ids, in_flight = :flight WHERE id = :b")
                     .bindparams(sa.bindparam("ids", type_=sa.JSON(none_as_null=True)),
                                 sa.bindparam("flight", type_=sa.JSON(none_as_null=True))),
                     {"ids": [r.contact_id for r in rows], "flight": triples or None, "b": batch_id})
        bind.execute(sa.text("DELETE FROM deliveries WHERE batch_id = :b AND status = 'queued'"), {"b": batch_id})


def downgrade():
    with op.batch_alter_table('campaign_batches', schema=None) as batch_op:
        batch_op.drop_column('contact_ids')
