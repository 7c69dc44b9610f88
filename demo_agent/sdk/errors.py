"""Typed errors: one exception class per OAuth error code, as the server sends them.

Error responses are RFC 6749 §5.2 JSON objects (`error`, `error_description`);
CIBA Core §11 and §13, RFC 8693 §2.2.2, RFC 8707 §2 and RFC 9396 §5 add codes, and
the token vault adds `connection_required` (with `connect_uri`, `connection`,
`reason`, `scope`). `raise_for_error` turns a body into the matching class, so an
agent writes `except AccessDenied:` instead of comparing strings. Problems the SDK
finds itself (a wrong `state`, a bad ID token, a timeout) are `SdkError`s.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SdkError(Exception):
    """A problem found on the client side; the message never contains a secret."""


class SignInError(SdkError):
    """The authorization response or the ID token failed a check (state, iss, nonce...)."""


class TransportError(SdkError):
    """The server could not be reached or did not answer with JSON."""


class OAuthError(SdkError):
    """An RFC-shaped error response: `error` (the code), `description`, HTTP `status`."""

    ERROR: ClassVar[str] = ""

    def __init__(
        self,
        error: str | None = None,
        description: str | None = None,
        status: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.error = error or self.ERROR or "unknown_error"
        self.description = description or ""
        self.status = status
        self.body = dict(body or {})
        super().__init__(f"{self.error}: {self.description}" if description else self.error)


class InvalidRequest(OAuthError):
    """RFC 6749 §5.2: a parameter is missing, repeated, malformed or unacceptable."""

    ERROR = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: client authentication failed."""

    ERROR = "invalid_client"


class InvalidGrant(OAuthError):
    """RFC 6749 §5.2: the code, refresh token or auth_req_id is invalid, expired or used."""

    ERROR = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """RFC 6749 §5.2: the client is not registered for this grant type."""

    ERROR = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """RFC 6749 §5.2: the server does not support this grant type."""

    ERROR = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """RFC 6749 §5.2 / RFC 8693 §2.2.2: the scope is unknown or exceeds what is allowed."""

    ERROR = "invalid_scope"


class InvalidTarget(OAuthError):
    """RFC 8707 §2: the audience or resource is unknown or not allowed for this client."""

    ERROR = "invalid_target"


class InvalidAuthorizationDetails(OAuthError):
    """RFC 9396 §5: an authorization_details entry is of an unknown type or invalid."""

    ERROR = "invalid_authorization_details"


class AccessDenied(OAuthError):
    """RFC 6749 §4.1.2.1 / CIBA Core §11: the user said no."""

    ERROR = "access_denied"


class AuthorizationPending(OAuthError):
    """CIBA Core §11: the user has not decided yet; poll again after the interval."""

    ERROR = "authorization_pending"


class SlowDown(OAuthError):
    """CIBA Core §11: polling too fast; the interval grows by 5 seconds."""

    ERROR = "slow_down"


class ExpiredToken(OAuthError):
    """CIBA Core §11: the auth_req_id expired before the user decided."""

    ERROR = "expired_token"


class UnknownUserId(OAuthError):
    """CIBA Core §13: the login hint does not name a known user."""

    ERROR = "unknown_user_id"


class InvalidBindingMessage(OAuthError):
    """CIBA Core §13: the binding message is invalid or unacceptable."""

    ERROR = "invalid_binding_message"


class LoginRequired(OAuthError):
    """OIDC Core §3.1.2.6: prompt=none but the user is not signed in."""

    ERROR = "login_required"


class ConsentRequired(OAuthError):
    """OIDC Core §3.1.2.6: prompt=none but the user has not consented."""

    ERROR = "consent_required"


class InvalidToken(OAuthError):
    """RFC 6750 §3.1: the access token is invalid, expired or revoked."""

    ERROR = "invalid_token"


class InsufficientScope(OAuthError):
    """RFC 6750 §3.1: the access token lacks the scope the resource needs."""

    ERROR = "insufficient_scope"


class ServerError(OAuthError):
    """RFC 6749 §4.1.2.1: the server failed; details are in its log, not here."""

    ERROR = "server_error"


class TemporarilyUnavailable(OAuthError):
    """RFC 6749 §4.1.2.1: the server (here: the upstream provider) is unavailable; retry."""

    ERROR = "temporarily_unavailable"


class ConnectionRequired(OAuthError):
    """Token vault interrupt: the user must connect (or reconnect) an upstream account.

    `connect_uri` is the page to send the user to; `reason` is not_connected,
    missing_scopes or reconnect_required; `scope` lists the scopes that are needed.
    """

    ERROR = "connection_required"

    @property
    def connect_uri(self) -> str:
        return str(self.body.get("connect_uri", ""))

    @property
    def connection(self) -> str:
        return str(self.body.get("connection", ""))

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", ""))

    @property
    def scope(self) -> str:
        return str(self.body.get("scope", ""))


ERRORS: dict[str, type[OAuthError]] = {
    cls.ERROR: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        InvalidGrant,
        UnauthorizedClient,
        UnsupportedGrantType,
        InvalidScope,
        InvalidTarget,
        InvalidAuthorizationDetails,
        AccessDenied,
        AuthorizationPending,
        SlowDown,
        ExpiredToken,
        UnknownUserId,
        InvalidBindingMessage,
        LoginRequired,
        ConsentRequired,
        InvalidToken,
        InsufficientScope,
        ServerError,
        TemporarilyUnavailable,
        ConnectionRequired,
    )
}


def error_for(body: dict[str, Any], status: int | None = None) -> OAuthError:
    """The typed exception for an error body (unknown codes give a plain `OAuthError`)."""
    code = str(body.get("error") or "server_error")
    description = body.get("error_description")
    cls = ERRORS.get(code, OAuthError)
    return cls(code, str(description) if description else None, status, body)
