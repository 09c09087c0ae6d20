"""API token roles; system messages remember their token, and idempotency keys are unique per token

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=16), nullable=False, server_default='client'))
    with op.batch_alter_table('system_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_token_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_system_messages_api_token_id_api_tokens'),
                                    'api_tokens', ['api_token_id'], ['id'])
    # Messages sent so far through the API belong to the token named in created_by ("api:<token name>"),
    # so a key already used keeps answering its own token's replays.
    tokens = sa.table('api_tokens', sa.column('id', sa.Integer), sa.column('name', sa.String))
    messages = sa.table('system_messages', sa.column('id', sa.Integer), sa.column('created_by', sa.String),
                        sa.column('api_token_id', sa.Integer))
    connection = op.get_bind()
    for token in connection.execute(sa.select(tokens.c.id, tokens.c.name)).all():
        connection.execute(messages.update().where(messages.c.created_by == f"api:{token.name}")
                           .values(api_token_id=token.id))
    with op.batch_alter_table('system_messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_system_messages_idempotency_key'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_system_messages_api_token_id'),
                                          ['api_token_id', 'idempotency_key'])


def downgrade():
    # Keys used by two tokens cannot both survive a global unique constraint: the later ones are dropped.
    messages = sa.table('system_messages', sa.column('id', sa.Integer), sa.column('idempotency_key', sa.String))
    connection = op.get_bind()
    first = sa.select(sa.func.min(messages.c.id)).where(messages.c.idempotency_key.is_not(None)) \
        .group_by(messages.c.idempotency_key)
    connection.execute(messages.update().where(messages.c.idempotency_key.is_not(None), messages.c.id.not_in(first))
                       .values(idempotency_key=None))
    with op.batch_alter_table('system_messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_system_messages_api_token_id'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_system_messages_idempotency_key'), ['idempotency_key'])
        batch_op.drop_constraint(batch_op.f('fk_system_messages_api_token_id_api_tokens'), type_='foreignkey')
        batch_op.drop_column('api_token_id')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('role')
