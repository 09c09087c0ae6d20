"""command layer: audit actor kind, consent wording hashes, data request outcomes, import queue time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 04:00:00

"""
import hashlib

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_kind', sa.String(length=16), nullable=False, server_default='system'))
    with op.batch_alter_table('consent_texts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('published_by', sa.String(length=200), nullable=True))
    with op.batch_alter_table('consent_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consent_text_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('wording_hash', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_consent_events_consent_text_id_consent_texts'),
                                    'consent_texts', ['consent_text_id'], ['id'])
    op.create_table('staff_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['staff_users.id'], name=op.f('fk_staff_sessions_user_id_staff_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_sessions'))
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refusal_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('extension_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('extended_at', sa.DateTime(timezone=True), nullable=True))
    # Wordings published before this revision get their hash now; events that
    # cited them keep their chain hashes (they were hashed without one).
    texts = sa.table('consent_texts', sa.column('id', sa.Integer), sa.column('text', sa.Text),
                     sa.column('text_hash', sa.String))
    connection = op.get_bind()
    for row in connection.execute(sa.select(texts.c.id, texts.c.text)).all():
        connection.execute(texts.update().where(texts.c.id == row.id)
                           .values(text_hash=hashlib.sha256(row.text.encode()).hexdigest()))


def downgrade():
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_user_id'))
    op.drop_table('staff_sessions')
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_column('queued_at')
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.drop_column('extended_at')
        batch_op.drop_column('extension_reason')
        batch_op.drop_column('refusal_reason')
    with op.batch_alter_table('consent_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_consent_events_consent_text_id_consent_texts'), type_='foreignkey')
        batch_op.drop_column('wording_hash')
        batch_op.drop_column('consent_text_id')
    with op.batch_alter_table('consent_texts', schema=None) as batch_op:
        batch_op.drop_column('published_by')
        batch_op.drop_column('text_hash')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('actor_kind')
