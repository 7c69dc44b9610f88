"""vault connection issuer: RFC 9207 `iss` checked in authorization responses

Connections registered before this revision have no issuer recorded and do not
require `iss`: their callbacks behave as before (each connection's callback URL and
state stay its own). Registering the connection again, or setting the two columns,
turns the check on.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 10:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch: on SQLite a batch would copy the table and drop the
    # old one, and with foreign keys on that drop deletes every connected account.
    op.add_column('vault_connections', sa.Column('issuer', sa.String(length=2000), nullable=True))
    op.add_column(
        'vault_connections',
        sa.Column('require_iss', sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+) for the same reason as above.
    op.drop_column('vault_connections', 'require_iss')
    op.drop_column('vault_connections', 'issuer')
