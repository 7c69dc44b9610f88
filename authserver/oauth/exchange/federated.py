"""Federated access tokens from the vault, through token exchange.

`requested_token_type=urn:authserver:token-type:federated-access-token` with
`connection=<name>` returns an upstream access token for the subject token's user.
Only clients registered for the connection may ask; the refresh token never
leaves the vault. When the user has no usable account the error carries the
`connect_uri` to send them to.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError

from vault.accounts import FederatedToken, federated_token
from vault.errors import ConnectionRequired, DecryptionError, UpstreamError
from vault.models import Connection

from ..errors import ConnectionRequiredError, InvalidTargetError, TemporarilyUnavailableError
from ..scopes import scope_list

log = logging.getLogger(__name__)

FEDERATED_TOKEN_TYPE = "urn:authserver:token-type:federated-access-token"
MAX_CONNECTION_NAME = 64


def load_connection(session: Any, form: Any, client_id: str) -> Connection:
    name = form.get("connection")
    if not name or len(name) > MAX_CONNECTION_NAME:
        raise InvalidRequestError("'connection' is required for federated access tokens.")
    if form.getlist("audience") or form.getlist("resource"):
        raise InvalidRequestError("A federated token names its 'connection', not an audience.")
    connection = session.get(Connection, name)
    if connection is None:
        raise InvalidTargetError("Unknown connection.")
    if client_id not in (connection.allowed_clients or []):
        raise InvalidTargetError("This client may not use that connection.")
    # A scope the connection never offers cannot be fixed by connecting: no connect_uri.
    if not set(scope_list(form.get("scope"))) <= set(connection.scopes):
        raise InvalidScopeError("The connection does not offer the requested scope.")
    return connection


def connect_uri(issuer: str, connection: str, scopes: list[str]) -> str:
    query = urlencode({"scope": " ".join(scopes)}) if scopes else ""
    return f"{issuer}/connections/{quote(connection)}/connect" + (f"?{query}" if query else "")


def serve(
    vault: Any, issuer: str, connection: Connection, user_id: str, scope: str | None
) -> FederatedToken:
    try:
        return federated_token(vault, connection, user_id, scope_list(scope))
    except ConnectionRequired as needed:
        raise ConnectionRequiredError(
            "The user has to connect this account first.",
            {
                "connection": needed.connection,
                "reason": needed.reason,
                "scope": " ".join(needed.scopes),
                "connect_uri": connect_uri(issuer, needed.connection, needed.scopes),
            },
        ) from None
    except UpstreamError as error:
        raise TemporarilyUnavailableError(
            f"The upstream provider failed ({error.kind}); no token was issued."
        ) from None
    except DecryptionError:
        # A sealed token or client secret that does not open: its key was withdrawn from
        # the key ring, or the row was altered. Nothing the agent or the person can fix;
        # the operator must (the audit row and this log line say which account).
        log.error(
            "vault: a sealed value of connection %r for user %s does not open",
            connection.name,
            user_id,
            exc_info=True,  # DecryptionError's message is fixed and opaque: no secret in it
        )
        raise TemporarilyUnavailableError(
            "The connected account cannot be opened right now; no token was issued."
        ) from None


def token_body(token: FederatedToken) -> dict[str, Any]:
    return {
        "access_token": token.access_token,
        "issued_token_type": FEDERATED_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "scope": " ".join(token.scopes),
    }
