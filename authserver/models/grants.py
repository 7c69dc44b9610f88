"""What users granted, and the credentials issued from it.

A `Grant` is one authorization (user, client, scopes). Refresh tokens form a
family under it; revoking the grant revokes every token issued from it. Codes,
refresh tokens and access-token records are looked up by hash or `jti`; the
plaintext of a code or refresh token is never stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JsonValue, new_id, now


class Grant(Base):
    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(1000), default="")
    resources: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    authorization_details: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonValue)
    auth_time: Mapped[int | None] = mapped_column()
    created_at: Mapped[int] = mapped_column(default=now)
    expires_at: Mapped[int] = mapped_column()
    revoked_at: Mapped[int | None] = mapped_column()
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(1000), default="")
    nonce: Mapped[str | None] = mapped_column(String(500))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    resources: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    authorization_details: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonValue)
    auth_time: Mapped[int] = mapped_column()
    created_at: Mapped[int] = mapped_column(default=now)
    expires_at: Mapped[int] = mapped_column()
    consumed_at: Mapped[int | None] = mapped_column()
    # The grant the code was redeemed into; revoked if the code is presented again.
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("grants.id", ondelete="SET NULL"))

    # The accessors Authlib's grant reads (its AuthorizationCodeMixin protocol).
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(1000), default="")
    issued_at: Mapped[int] = mapped_column(default=now)
    expires_at: Mapped[int] = mapped_column()
    # Set when the token is exchanged for its successor; a second use is reuse.
    used_at: Mapped[int | None] = mapped_column()


class AccessTokenRecord(Base):
    """Server-side record of a JWT access token, so revocation and introspection work."""

    __tablename__ = "access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str | None] = mapped_column(
        ForeignKey("grants.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[int] = mapped_column(index=True)
    revoked_at: Mapped[int | None] = mapped_column()


class Consent(Base):
    """Scopes a user has already approved for a client, so consent is asked once."""

    __tablename__ = "consents"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(1000), default="")
    # The scopes approved for each resource server ("" for requests naming none): approving
    # `read` at one API is not approving it at another that also defines `read`.
    scopes_by_resource: Mapped[dict[str, list[str]]] = mapped_column(
        JsonValue, default=dict, server_default="{}"
    )
    updated_at: Mapped[int] = mapped_column(default=now)


class PushedAuthorizationRequest(Base):
    """An authorization request a client pushed to /par (RFC 9126), until it is answered.

    The browser then carries only `client_id` and the `request_uri` naming this row, so a
    request of any size survives the trip through sign-in and consent. The reference is
    stored as a digest, like every other bearer value.
    """

    __tablename__ = "pushed_authorization_requests"

    reference_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    # [name, value] pairs in the order pushed: `resource` may repeat (RFC 8707).
    parameters: Mapped[list[list[str]]] = mapped_column(JsonValue)
    created_at: Mapped[int] = mapped_column(default=now)
    expires_at: Mapped[int] = mapped_column(index=True)
    used_at: Mapped[int | None] = mapped_column()
