"""pushed authorization requests: RFC 9126 requests kept until they are answered

A new table only; nothing existing changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 13:51:39.880348
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('pushed_authorization_requests',
    sa.Column('reference_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('parameters', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.Column('used_at', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_pushed_authorization_requests_client_id_clients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('reference_hash', name=op.f('pk_pushed_authorization_requests'))
    )
    op.create_index(op.f('ix_pushed_authorization_requests_client_id'), 'pushed_authorization_requests', ['client_id'], unique=False)
    op.create_index(op.f('ix_pushed_authorization_requests_expires_at'), 'pushed_authorization_requests', ['expires_at'], unique=False)



def downgrade() -> None:
    op.drop_index(op.f('ix_pushed_authorization_requests_expires_at'), table_name='pushed_authorization_requests')
    op.drop_index(op.f('ix_pushed_authorization_requests_client_id'), table_name='pushed_authorization_requests')

    op.drop_table('pushed_authorization_requests')
