"""The vault's tables: upstream connections, users' connected accounts, connect states.

The vault has its own declarative base (it imports nothing from the authserver);
Alembic migrates both metadata collections. Every secret column holds ciphertext
from :func:`vault.seal`, bound by associated data to its row, user and connection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
ACTIVE = "active"
NEEDS_RECONNECT = "needs_reconnect"


class VaultBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Connection(VaultBase):
    """An upstream OAuth 2.0 / OIDC provider users can link an account of."""

    __tablename__ = "vault_connections"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    authorize_url: Mapped[str] = mapped_column(String(2000))
    token_url: Mapped[str] = mapped_column(String(2000))
    revocation_url: Mapped[str | None] = mapped_column(String(2000))
    discovery_url: Mapped[str | None] = mapped_column(String(2000))
    # RFC 8414 issuer identifier: an authorization response carrying `iss` (RFC 9207) must
    # name exactly this provider, or it is refused before its code is used.
    issuer: Mapped[str | None] = mapped_column(String(2000))
    # The provider sends `iss` in every authorization response (its metadata says
    # `authorization_response_iss_parameter_supported`): a response without it is refused.
    require_iss: Mapped[bool] = mapped_column(default=False, server_default=false())
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSON(none_as_null=True))
    default_scopes: Mapped[list[str]] = mapped_column(JSON(none_as_null=True))
    # Extra authorization parameters an upstream needs (e.g. Google's access_type=offline).
    authorize_params: Mapped[dict[str, Any]] = mapped_column(JSON(none_as_null=True))
    # OAuth clients of this server allowed to obtain federated tokens for this connection.
    allowed_clients: Mapped[list[str]] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[int] = mapped_column()


class ConnectedAccount(VaultBase):
    """One user's link to a connection: sealed refresh token and cached access token."""

    __tablename__ = "vault_accounts"
    __table_args__ = (UniqueConstraint("user_id", "connection_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    connection_name: Mapped[str] = mapped_column(
        ForeignKey("vault_connections.name", ondelete="CASCADE")
    )
    scopes: Mapped[list[str]] = mapped_column(JSON(none_as_null=True))
    refresh_token_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    access_token_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(24))
    # Who is refreshing right now, and until when: one upstream refresh at a time.
    refresh_lease: Mapped[str | None] = mapped_column(String(64))
    refresh_lease_until: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[int] = mapped_column()
    updated_at: Mapped[int] = mapped_column()
    last_used_at: Mapped[int | None] = mapped_column()
    refreshed_at: Mapped[int | None] = mapped_column()


class ConnectState(VaultBase):
    """A connect flow in progress: `state` (as a digest) and the sealed PKCE verifier."""

    __tablename__ = "vault_connect_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    connection_name: Mapped[str] = mapped_column(
        ForeignKey("vault_connections.name", ondelete="CASCADE")
    )
    verifier_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    scopes: Mapped[list[str]] = mapped_column(JSON(none_as_null=True))
    return_to: Mapped[str] = mapped_column(String(2000))
    expires_at: Mapped[int] = mapped_column()
    consumed_at: Mapped[int | None] = mapped_column()
