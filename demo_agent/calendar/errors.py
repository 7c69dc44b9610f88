"""OAuth 2.0 errors, one class per RFC error code, each with its HTTP status.

Token and revocation endpoints answer with RFC 6749 §5.2 JSON; the resource API
answers with RFC 6750 §3 bearer errors (``WWW-Authenticate``). Errors of the
authorization endpoint are redirected (RFC 6749 §4.1.2.1) except ``PageError``,
which is shown to the person and never redirects (§4.1.2.1, first paragraph).
"""

from __future__ import annotations

import json

from flask import Response

REALM = "calendar"


class OAuthError(Exception):
    error = "invalid_request"
    status_code = 400

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def headers(self) -> dict[str, str]:
        return {}

    def response(self) -> Response:
        """RFC 6749 §5.2 error body; never cached (§5.1)."""
        body = {"error": self.error, "error_description": self.description}
        response = Response(json.dumps(body), self.status_code, mimetype="application/json")
        response.headers.update(self.headers())
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response


class InvalidRequest(OAuthError):
    """§5.2: missing or repeated parameter, unsupported value, malformed request."""


class InvalidClient(OAuthError):
    """§5.2: client authentication failed; 401 with the supported scheme."""

    error = "invalid_client"
    status_code = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{REALM}"'}


class InvalidGrant(OAuthError):
    """§5.2: code or refresh token invalid, expired, revoked, or bound to something else."""

    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """§5.2: the client may not use this grant type."""

    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """§5.2: the grant type is not supported."""

    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """§5.2 / §4.1.2.1: the requested scope is invalid, unknown or exceeds the grant."""

    error = "invalid_scope"


class AccessDenied(OAuthError):
    """§4.1.2.1: the resource owner denied the request."""

    error = "access_denied"


class UnsupportedResponseType(OAuthError):
    """§4.1.2.1: the response type is not supported."""

    error = "unsupported_response_type"


class ServerError(OAuthError):
    """§4.1.2.1 / §5.2 practice: an internal failure; details go to the log only."""

    error = "server_error"
    status_code = 500


class BearerError(OAuthError):
    """RFC 6750 §3: errors of the protected resource, described in WWW-Authenticate."""

    scope: str | None = None

    def headers(self) -> dict[str, str]:
        params = [f'realm="{REALM}"', f'error="{self.error}"']
        params.append(f'error_description="{self.description}"')
        if self.scope:
            params.append(f'scope="{self.scope}"')
        return {"WWW-Authenticate": "Bearer " + ", ".join(params)}


class MissingToken(BearerError):
    """RFC 6750 §3.1: no credentials at all, so the challenge carries no error code."""

    error = "invalid_token"
    status_code = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}


class InvalidBearerRequest(BearerError):
    """RFC 6750 §3.1 invalid_request: malformed Authorization header or parameters."""


class InvalidToken(BearerError):
    """RFC 6750 §3.1 invalid_token: expired, revoked, malformed or unknown."""

    error = "invalid_token"
    status_code = 401


class InsufficientScope(BearerError):
    """RFC 6750 §3.1 insufficient_scope: 403 naming the scope that would suffice."""

    error = "insufficient_scope"
    status_code = 403

    def __init__(self, description: str, scope: str) -> None:
        super().__init__(description)
        self.scope = scope


class PageError(Exception):
    """A browser-facing error that must not redirect (bad client_id or redirect_uri)."""

    def __init__(self, title: str, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.title, self.message, self.status_code = title, message, status_code
