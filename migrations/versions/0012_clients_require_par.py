"""clients that must push their authorization requests (RFC 9126 §6)

Existing clients keep sending requests through the browser (the column defaults to
false).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 14:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch: on SQLite a batch would copy the table and drop the
    # old one, and with foreign keys on that drop deletes every client's tokens and consents.
    op.add_column(
        'clients',
        sa.Column(
            'require_pushed_authorization_requests',
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+) for the same reason as above.
    op.drop_column('clients', 'require_pushed_authorization_requests')
