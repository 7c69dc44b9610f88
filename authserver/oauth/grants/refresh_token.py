"""Refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).

Every use returns a new refresh token and retires the presented one. A retired
token presented again means the family leaked: the whole grant is revoked,
including the legitimate holder's newest tokens and their access tokens.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.hooks import hooked
from sqlalchemy import select

from ...credentials import digest
from ...models import Grant, RefreshToken, User, now
from ..errors import InvalidTargetError
from ..issuance import issue_from_grant, revoke_reused_family
from ..scopes import resolve_resources, scope_list

log = logging.getLogger(__name__)

INVALID = "The refresh token is invalid, expired or revoked."


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_request_token(self, client: Any) -> RefreshToken:
        value = self.request.form.get("refresh_token")
        if not value:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        if len(self.request.form.getlist("refresh_token")) > 1 or len(value) > 512:
            raise InvalidRequestError("Exactly one 'refresh_token' is expected.")
        session = self.server.db()
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == digest(value)).with_for_update()
        )
        if row is None or row.client_id != client.client_id:
            raise InvalidGrantError(INVALID)
        grant = session.get(Grant, row.grant_id)
        if row.used_at is not None:
            self._handle_reuse(grant)
            raise InvalidGrantError(INVALID)
        if (
            grant is None
            or grant.revoked_at is not None
            or min(row.expires_at, grant.expires_at) <= now()
        ):
            raise InvalidGrantError(INVALID)
        self.request.grant = grant
        return row

    def _handle_reuse(self, grant: Grant | None) -> None:
        revoke_reused_family(self.server, grant)

    def _validate_token_scope(self, token: RefreshToken) -> None:
        asked = scope_list(self.request.payload.scope)
        if asked and not set(asked) <= set(scope_list(token.scope)):
            raise InvalidScopeError("A refresh may only narrow the originally granted scope.")

    def _resources(self, grant: Grant) -> list[Any]:
        asked = self.request.form.getlist("resource")
        if asked and not set(asked) <= set(grant.resources):
            raise InvalidTargetError("The 'resource' was not part of the original grant.")
        return resolve_resources(self.server.resource, asked or grant.resources)

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        row: RefreshToken = self.request.refresh_token
        grant: Grant = self.request.grant
        user = self.server.db().get(User, grant.user_id) if grant.user_id else None
        if user is None or not user.is_active:
            raise InvalidGrantError(INVALID)
        self.request.user = user
        resources = self._resources(grant)
        row.used_at = now()
        client = self.request.client.model
        # Scopes the client is no longer registered for end at its next refresh: narrowing a
        # client's registration must not wait for its refresh tokens to expire.
        still_allowed = [s for s in scope_list(row.scope) if s in client.allowed_scopes]
        asked = scope_list(self.request.payload.scope)
        scope = " ".join(s for s in asked if s in still_allowed) if asked else None
        token = issue_from_grant(
            self.server,
            grant=grant,
            client=client,
            user=user,
            scope=scope if scope is not None else " ".join(still_allowed),
            resources=resources,
            with_refresh_token=True,
            refresh_scope=" ".join(still_allowed),
        )
        self.server.record(
            "token.refreshed",
            user_id=user.id,
            client_id=grant.client_id,
            details={"grant_id": grant.id, "scope": token["scope"]},
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER
