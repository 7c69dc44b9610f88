"""Authorization code grant (RFC 6749 §4.1, OAuth 2.1 draft §4.1).

Codes are single-use, 256-bit, stored as SHA-256 digests, bound to the client,
the redirect URI, the PKCE challenge and the resources asked for. Redemption is
atomic (a row lock on PostgreSQL, the write lock on SQLite): of concurrent
redemptions exactly one succeeds. A code presented again revokes the grant it
produced (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc6749.hooks import hooked
from sqlalchemy import select

from ...credentials import digest, fingerprint, new_secret_value
from ...models import AuthorizationCode, User, now
from ..errors import InvalidTargetError
from ..issuance import issue_for_new_grant, revoke_grant
from ..scopes import resolve_resources

log = logging.getLogger(__name__)

# Repeated, these make the redirect untrustworthy (an error page, RFC 6749 §4.1.2.1); other
# repeated parameters are refused with a redirect by the authorization request checks.
UNREDIRECTABLE_SINGLE_VALUED = ("client_id", "redirect_uri")


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def __init__(self, request: Any, server: Any) -> None:
        super().__init__(request, server)
        # Authlib keeps hooks in a set: extensions would run in an arbitrary order, so the
        # first error reported for a request with several problems would vary between runs.
        self._hooks = defaultdict(list)

    def register_hook(self, hook_type: str, hook: Any) -> None:
        self._hooks[hook_type].append(hook)

    def validate_no_multiple_request_parameter(self, request: Any) -> None:
        for name in UNREDIRECTABLE_SINGLE_VALUED:
            if len(request.payload.datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"Multiple '{name}' in request.")

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: Any) -> str:
        """RFC 6749 §3.1.2.3; the URI is not echoed (Authlib's message did, and a URI with a
        character RFC 6749 §5.2 forbids in error_description became a 500)."""
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri:
            raise InvalidRequestError("Missing 'redirect_uri' in request.")
        if not client.check_redirect_uri(redirect_uri):
            raise InvalidRequestError("The 'redirect_uri' is not registered for this client.")
        return str(redirect_uri)

    def generate_authorization_code(self) -> str:
        return new_secret_value()

    def save_authorization_code(self, code: str, request: Any) -> None:
        runtime = self.server.runtime
        moment = now()
        self.server.db().add(
            AuthorizationCode(
                code_hash=digest(code),
                client_id=request.client.client_id,
                user_id=request.user.id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope or "",
                nonce=request.payload.data.get("nonce"),
                code_challenge=request.payload.data.get("code_challenge"),
                code_challenge_method=request.payload.data.get("code_challenge_method"),
                resources=[server.identifier for server in getattr(request, "resources", [])],
                authorization_details=getattr(request, "authorization_details", None),
                auth_time=getattr(request, "auth_time", moment),
                expires_at=moment + runtime.settings.authorization_code_ttl,
            )
        )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        if not isinstance(code, str) or not code or len(code) > 512:
            return None
        session = self.server.db()
        row = session.scalar(
            select(AuthorizationCode)
            .where(AuthorizationCode.code_hash == digest(code))
            .with_for_update()
        )
        if row is None or row.client_id != client.client_id:
            return None
        if row.consumed_at is not None:
            self._handle_replay(row)
            return None
        if row.expires_at <= now():
            return None
        return row

    def _handle_replay(self, row: AuthorizationCode) -> None:
        """A redeemed code came back: revoke what it issued, keep that even though we refuse."""
        log.warning("authorization code replayed (%s)", fingerprint(row.code_hash))
        if row.grant_id:
            revoke_grant(self.server.db(), row.grant_id, "code_replayed")
        self.server.record(
            "token.code_replayed",
            "refused",
            user_id=row.user_id,
            client_id=row.client_id,
            details={"grant_id": row.grant_id},
        )
        self.server.commit()

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        authorization_code.consumed_at = now()

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        user = self.server.db().get(User, authorization_code.user_id)
        return user if user is not None and user.is_active else None

    def validate_token_request(self) -> None:
        super().validate_token_request()
        code: AuthorizationCode = self.request.authorization_code
        self.request.resources = self._token_resources(code)

    def _token_resources(self, code: AuthorizationCode) -> list[Any]:
        """RFC 8707 §2.2: `resource` at the token endpoint may only narrow the authorized set."""
        asked = self.request.form.getlist("resource")
        if not asked:
            return resolve_resources(self.server.resource, code.resources)
        if not set(asked) <= set(code.resources):
            raise InvalidTargetError("The 'resource' was not part of the authorization request.")
        return resolve_resources(self.server.resource, asked)

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: AuthorizationCode = self.request.authorization_code
        user = self.authenticate_user(code)
        if user is None:
            raise InvalidGrantError("The user of this code is no longer active.")
        self.request.user = user
        self.delete_authorization_code(code)
        token, grant = issue_for_new_grant(
            self.server,
            client=self.request.client.model,
            user=user,
            scope=code.scope,
            resources=self.request.resources,
            authorization_details=code.authorization_details,
            auth_time=code.auth_time,
        )
        code.grant_id = grant.id
        self.request.grant = grant
        self.request.issued_token = token
        self.server.record(
            "token.issued",
            user_id=user.id,
            client_id=code.client_id,
            details={
                "grant_type": "authorization_code",
                "scope": token["scope"],
                "grant_id": grant.id,
            },
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER
