"""OAuth clients and the resource servers (APIs) tokens are issued for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JsonValue, new_id, now


class Client(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_name: Mapped[str] = mapped_column(String(200))
    # SHA-256 hex digest of a 256-bit random secret; None for public clients.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    redirect_uris: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    response_types: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="RS256")
    skip_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Token exchange (RFC 8693): may this client act for users. allowed_audiences: the APIs
    # (resource identifiers) it may get tokens for, by token exchange or client credentials.
    may_delegate: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_audiences: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    # CIBA: poll, ping or push, and where ping/push notifications go.
    backchannel_token_delivery_mode: Mapped[str | None] = mapped_column(String(8))
    backchannel_client_notification_endpoint: Mapped[str | None] = mapped_column(String(2000))
    # Registered by anyone through RFC 7591 /register, not by an operator: its name and
    # links are unverified, and the consent page says so (RFC 7591 §5).
    self_registered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # RFC 9126 §6: its authorization requests are accepted only when pushed to /par, so
    # nothing in them can be read or changed in the browser on the way.
    require_pushed_authorization_requests: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[int] = mapped_column(default=now)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"  # noqa: S105 (a method name)

    @property
    def allowed_scopes(self) -> set[str]:
        return set(self.scope.split())


class ResourceServer(Base):
    """An API protected by this server; `identifier` is its RFC 8707 resource URI (token `aud`)."""

    __tablename__ = "resource_servers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    identifier: Mapped[str] = mapped_column(String(500), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    # The API's own client, allowed to introspect tokens issued for this audience.
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("clients.client_id", ondelete="SET NULL")
    )
    created_at: Mapped[int] = mapped_column(default=now)

    def describe(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "name": self.name,
            "scopes": list(self.scopes),
            "client_id": self.client_id,
        }
