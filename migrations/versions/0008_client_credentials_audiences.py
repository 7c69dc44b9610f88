"""client credentials audiences: a client gets tokens only for the APIs it is allowed

From this revision a client-credentials request naming a `resource` must name one of the
client's `allowed_audiences` (until now only token exchange read that list). So that an
upgrade changes no running integration, each client that has the client-credentials
grant but not token exchange is allowed every API it could reach before: those offering
one of its scopes. Clients with token exchange keep their list as it is (it also says
for which APIs they may exchange tokens, and must not grow); their client-credentials
requests are narrowed to it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 23:40:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLIENT_CREDENTIALS = 'client_credentials'
TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):  # JSON stored as text
        value = json.loads(value)
    return [str(item) for item in value] if isinstance(value, list) else []


def upgrade() -> None:
    clients = sa.table(
        'clients',
        sa.column('client_id', sa.String),
        sa.column('scope', sa.String),
        sa.column('grant_types', sa.JSON),
        sa.column('allowed_audiences', sa.JSON),
    )
    resources = sa.table(
        'resource_servers',
        sa.column('identifier', sa.String),
        sa.column('scopes', sa.JSON),
    )
    connection = op.get_bind()
    offered = {
        identifier: set(_as_list(scopes))
        for identifier, scopes in connection.execute(
            sa.select(resources.c.identifier, resources.c.scopes)
        )
    }
    for client_id, scope, grant_types, audiences in connection.execute(
        sa.select(
            clients.c.client_id, clients.c.scope, clients.c.grant_types, clients.c.allowed_audiences
        )
    ).all():
        grants = _as_list(grant_types)
        if CLIENT_CREDENTIALS not in grants or TOKEN_EXCHANGE in grants:
            continue
        own = set((scope or '').split())
        reachable = {identifier for identifier, scopes in offered.items() if scopes & own}
        allowed = sorted(set(_as_list(audiences)) | reachable)
        connection.execute(
            clients.update().where(clients.c.client_id == client_id).values(allowed_audiences=allowed)
        )


def downgrade() -> None:
    # Nothing to undo: before this revision the list was read only by token exchange, which
    # the clients changed here do not have.
    pass
