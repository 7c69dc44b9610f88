"""Token revocation (RFC 7009).

Revoking a refresh token revokes its grant: the whole refresh-token family and
every access token issued from it (RFC 7009 §2.1 SHOULD). Revoking an access
token revokes that token. A token that is unknown, or belongs to another
client, gets the same 200 and changes nothing (RFC 7009 §2.2).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.token_endpoint import TokenEndpoint
from sqlalchemy import update

from ...models import AccessTokenRecord, now
from ..issuance import revoke_grant
from .lookup import FoundToken, find_token


class RevocationEndpoint(TokenEndpoint):
    ENDPOINT_NAME = "revocation"
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        client = self.authenticate_endpoint_client(request)
        token = request.form.get("token")
        if not token or len(request.form.getlist("token")) > 1:
            raise InvalidRequestError("Exactly one 'token' parameter is required.")
        found = find_token(
            self.server.db(), self.server.runtime.minter, token, request.form.get("token_type_hint")
        )
        if found is not None and found.client_id == client.client_id:
            self._revoke(found)
            self.server.record(
                "token.revoked",
                client_id=client.client_id,
                user_id=found.claims.get("sub") if found.grant_id else None,
                details={"token_type": found.kind},
            )
            self.server.commit()
        return 200, {}, self.server.JSON_HEADERS

    def _revoke(self, found: FoundToken) -> None:
        if found.kind == "refresh_token" and found.grant is not None:
            revoke_grant(self.server.db(), found.grant.id, "revoked_by_client")
        elif found.kind == "access_token" and found.access_jti is not None:
            self.server.db().execute(
                update(AccessTokenRecord)
                .where(
                    AccessTokenRecord.jti == found.access_jti,
                    AccessTokenRecord.revoked_at.is_(None),
                )
                .values(revoked_at=now())
            )
