"""The stack's floor: a Flask + Authlib token endpoint that only signs an ES256 JWT.

The foundation issue quotes this figure: "a Flask + Authlib endpoint that only signs an
ES256 JWT reaches about 2,400 requests/s on one core" where node-oidc-provider does
about 5,400 (`../shared/peer-bench` lists it as Authlib's `AuthorizationServer` under
gunicorn's sync worker). `make bench` measures it in every round, under the same gunicorn
worker, core pinning and wrk load as our server, so the report can say how much of the
gap to the reference server is the stack itself (gunicorn, Flask, Authlib, PyJWT) and
how much is what our grant does on top (registered clients and resources, the policy
checks, the token's record and audit row, the durable COMMIT).

Authlib's own client-credentials grant and `client_secret_basic` authentication run as
in our server; the one client lives in memory, nothing is written, and the token is
signed with a key made at start.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.typing import ResponseReturnValue

CLIENT_ID = "floor-client"
CLIENT_SECRET = "floor-secret-0123456789abcdef0123456789abcdef"
ISSUER = "http://127.0.0.1"
LIFETIME = 300

app = Flask(__name__)
_key = ec.generate_private_key(ec.SECP256R1())


class _Client(ClientMixin):  # type: ignore[misc]
    """One confidential client allowed the client-credentials grant, any scope."""

    client_id = CLIENT_ID

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), CLIENT_SECRET.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


_client = _Client()


def _signed_token(
    grant_type: str,
    client: _Client,
    user: Any = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = True,
) -> dict[str, Any]:
    issued_at = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": client.client_id,
        "client_id": client.client_id,
        "scope": scope or "",
        "iat": issued_at,
        "exp": issued_at + LIFETIME,
        "jti": secrets.token_urlsafe(18),
    }
    signed = jwt.encode(claims, _key, algorithm="ES256", headers={"typ": "at+jwt", "kid": "floor"})
    return {"access_token": signed, "token_type": "Bearer", "expires_in": LIFETIME, "scope": scope}


server = AuthorizationServer(
    app,
    query_client=lambda client_id: _client if client_id == CLIENT_ID else None,
    save_token=lambda token, request: None,
)
server.register_token_generator("default", _signed_token)
server.register_grant(grants.ClientCredentialsGrant)


@app.get("/ready")
def ready() -> ResponseReturnValue:
    return "ok"


@app.post("/token")
def token() -> ResponseReturnValue:
    return server.create_token_response()
