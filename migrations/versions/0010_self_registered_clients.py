"""self-registered clients: RFC 7591 dynamic registration marks what it registers

Clients registered before this revision were all registered by an operator.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 10:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch: on SQLite a batch would copy the table and drop the
    # old one, and with foreign keys on that drop deletes every client's tokens and consents.
    op.add_column(
        'clients',
        sa.Column('self_registered', sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+) for the same reason as above.
    op.drop_column('clients', 'self_registered')
