"""The OAuth 2.0 / OpenID Connect protocol surface.

`build_authorization_server` is the one place where every grant, extension and
endpoint is registered: read it to see the whole protocol surface.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from authlib.oauth2.rfc9207 import IssuerParameter
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from ..runtime import Runtime
from .ciba.endpoint import BackchannelAuthenticationEndpoint
from .endpoints.introspection import IntrospectionEndpoint
from .endpoints.revocation import RevocationEndpoint
from .extensions.authorization_request import AuthorizationRequestChecks
from .extensions.oidc import OpenIDConnect
from .extensions.pkce import S256CodeChallenge
from .grants.authorization_code import AuthorizationCodeGrant
from .grants.ciba import CibaGrant
from .grants.client_credentials import ClientCredentialsGrant
from .grants.refresh_token import RefreshTokenGrant
from .grants.token_exchange import TokenExchangeGrant
from .server import AuthorizationServer


class _Issuer(IssuerParameter):
    """RFC 9207: `iss` in every authorization response, errors included."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime

    def get_issuer(self) -> str:
        return self._runtime().settings.issuer


def build_authorization_server(
    runtime: Callable[[], Runtime],
    session: Callable[[], Session],
    record: Callable[..., None],
    commit: Callable[[], None],
    *,
    reading: Callable[[], AbstractContextManager[Session]],
    insert: Callable[[Insert, dict[str, Any]], None],
) -> AuthorizationServer:
    server = AuthorizationServer(runtime, session, record, commit, reading=reading, insert=insert)
    server.register_extension(_Issuer(runtime))
    server.register_grant(
        AuthorizationCodeGrant,
        [AuthorizationRequestChecks(), S256CodeChallenge(required=True), OpenIDConnect()],
    )
    server.register_grant(RefreshTokenGrant, [OpenIDConnect()])
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(TokenExchangeGrant)
    server.register_grant(CibaGrant)
    server.register_endpoint(IntrospectionEndpoint)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(BackchannelAuthenticationEndpoint)
    return server
