"""Token introspection (RFC 7662).

Answers the client the token was issued to, and the clients of the resource
servers the token is addressed to; anyone else learns only `active: false`
(RFC 7662 §4: the server must not reveal tokens to unauthorized callers).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.token_endpoint import TokenEndpoint

from .lookup import FoundToken, audience_clients, find_token

INACTIVE = {"active": False}
CLAIMS_SHOWN = (
    "scope",
    "client_id",
    "sub",
    "aud",
    "iss",
    "exp",
    "iat",
    "nbf",
    "jti",
    "act",
    "authorization_details",
    "auth_time",
)


class IntrospectionEndpoint(TokenEndpoint):
    ENDPOINT_NAME = "introspection"
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        client = self.authenticate_endpoint_client(request)
        token = request.form.get("token")
        if not token or len(request.form.getlist("token")) > 1:
            raise InvalidRequestError("Exactly one 'token' parameter is required.")
        session = self.server.db()
        found = find_token(
            session, self.server.runtime.minter, token, request.form.get("token_type_hint")
        )
        body = self._describe(found, client.client_id)
        self.server.record(
            "token.introspected", client_id=client.client_id, details={"active": body["active"]}
        )
        return 200, body, self.server.JSON_HEADERS

    def _allowed(self, found: FoundToken, client_id: str) -> bool:
        if found.client_id == client_id:
            return True
        if found.kind != "access_token":
            return False
        return client_id in audience_clients(self.server.db(), found.claims.get("aud"))

    def _describe(self, found: FoundToken | None, client_id: str) -> dict[str, Any]:
        if found is None or not found.active or not self._allowed(found, client_id):
            return dict(INACTIVE)
        body: dict[str, Any] = {"active": True, "token_type": _token_type(found)}
        body.update({name: found.claims[name] for name in CLAIMS_SHOWN if name in found.claims})
        body.setdefault("client_id", found.client_id)
        return body


def _token_type(found: FoundToken) -> str:
    return "Bearer" if found.kind == "access_token" else "refresh_token"
