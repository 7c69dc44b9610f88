"""consent scopes by resource

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 18:40:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes_by_resource', sa.JSON(none_as_null=True), server_default='{}', nullable=False))
    # Existing consents were given without regard to the resource: they keep covering
    # requests that name none, and requests naming a resource are asked again.
    consents = sa.table(
        'consents',
        sa.column('user_id', sa.String),
        sa.column('client_id', sa.String),
        sa.column('scope', sa.String),
        sa.column('scopes_by_resource', sa.JSON),
    )
    connection = op.get_bind()
    for user_id, client_id, scope in connection.execute(
        sa.select(consents.c.user_id, consents.c.client_id, consents.c.scope)
    ):
        connection.execute(
            consents.update()
            .where(consents.c.user_id == user_id, consents.c.client_id == client_id)
            .values(scopes_by_resource=json.loads(json.dumps({'': (scope or '').split()})))
        )


def downgrade() -> None:
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_column('scopes_by_resource')
