"""Authlib's AuthorizationServer bound to our storage, Flask and audit log."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, UnsupportedResponseTypeError
from flask import Response
from flask import request as flask_request
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from ..registry import ResourceSnapshot
from ..runtime import Runtime
from .clients import OAuthClient
from .requests import StrictOAuth2Request

JSON_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
]


class AuthorizationServer(_AuthorizationServer):
    """Grants reach storage only through what the app injects: `db` (the request's
    transaction), `reading` (a short read outside it, closed at once), `record` (audit
    entries), `insert` (rows that no read must stay true for: committed with the audit
    rows, in a group commit when the request's transaction never began) and `commit`."""

    JSON_HEADERS = JSON_HEADERS

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        session: Callable[[], Session],
        record: Callable[..., None],
        commit: Callable[[], None],
        *,
        reading: Callable[[], AbstractContextManager[Session]],
        insert: Callable[[Insert, dict[str, Any]], None],
    ) -> None:
        super().__init__()
        self._runtime = runtime
        self.db = session
        self.reading = reading
        self.record = record
        self.insert = insert
        self.commit = commit

    @property
    def runtime(self) -> Runtime:
        return self._runtime()

    def query_client(self, client_id: str) -> OAuthClient | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
            return None
        registry = self.runtime.registry
        # A registration snapshot: read outside the request's transaction, which then stays
        # unbegun for grants that only insert (they commit in a group commit).
        model = registry.client(self.reading, client_id)
        if model is None:
            return None
        return OAuthClient(model, reload=lambda: registry.fresh_client(self.reading, client_id))

    def resource(self, identifier: str) -> ResourceSnapshot | None:
        """The registered resource server (RFC 8707) named `identifier`, if any."""
        return self.runtime.registry.resource(self.reading, identifier)

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        """Authlib's lookup, except that a missing `response_type` is invalid_request (RFC 6749
        §4.1.2.1) and an unsupported one is not echoed raw: Authlib put it in error_description
        unfiltered, and a value with a character RFC 6749 §5.2 forbids there became a 500."""
        response_type = request.payload.response_type
        for grant_cls, extensions in self._authorization_grants:
            if response_type and grant_cls.check_authorization_endpoint(request):
                grant = grant_cls(request, self)
                for extension in extensions or []:
                    extension(grant)
                return grant
        redirect_uri = self._registered_redirect_uri(request)
        if not response_type:
            raise InvalidRequestError("Missing 'response_type'.", redirect_uri=redirect_uri)
        shown = "".join(c for c in response_type[:64] if 0x20 <= ord(c) <= 0x7E and c not in '"\\')
        raise UnsupportedResponseTypeError(shown, redirect_uri=redirect_uri)

    def _registered_redirect_uri(self, request: OAuth2Request) -> str | None:
        """The redirect URI only if the client exists and registered it (RFC 6749 §4.1.2.1)."""
        datalist = request.payload.datalist
        if any(len(datalist.get(name, [])) != 1 for name in ("client_id", "redirect_uri")):
            return None
        client = self.query_client(request.payload.client_id)
        uri = request.payload.redirect_uri
        return str(uri) if client is not None and client.check_redirect_uri(uri) else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are persisted by the grants themselves (they know the grant row)."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return StrictOAuth2Request(flask_request)

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("JSON requests are not used by this server")

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        # RFC 6749 §5.2: say what went wrong; some Authlib errors (unsupported_grant_type)
        # leave the description empty rather than echo the input.
        if not error.description:
            error.description = f"The request was refused: {error.error}."
        response: Response = super().handle_error_response(request, error)
        return response

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict):
            body = json.dumps(body)
        return Response(body, status=status, headers=headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib signals are not used; audit entries are recorded explicitly."""
