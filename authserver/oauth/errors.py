"""RFC error codes Authlib does not define, one class per code.

Descriptions must stay within the RFC 6749 §5.2 character set (no double quote,
no backslash), which Authlib checks when the error is raised.
"""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: "The requested resource is invalid, missing, unknown, or malformed." """

    error = "invalid_target"
    status_code = 400


class InvalidAuthorizationDetailsError(OAuth2Error):
    """RFC 9396 §5: an authorization_details entry has an unknown type or fails its schema."""

    error = "invalid_authorization_details"
    status_code = 400


class LoginRequiredError(OAuth2Error):
    """OIDC Core §3.1.2.6: prompt=none but the End-User is not signed in."""

    error = "login_required"


class ConsentRequiredError(OAuth2Error):
    """OIDC Core §3.1.2.6: prompt=none but the End-User has not consented."""

    error = "consent_required"


class RequestNotSupportedError(OAuth2Error):
    """OIDC Core §6: the `request` parameter is not supported."""

    error = "request_not_supported"


class RequestUriNotSupportedError(OAuth2Error):
    """OIDC Core §6: the `request_uri` parameter is not supported."""

    error = "request_uri_not_supported"


class ServerError(OAuth2Error):
    """RFC 6749 §4.1.2.1: an unexpected condition; details go to the log, not the client."""

    error = "server_error"
    status_code = 500


class UnknownUserIdError(OAuth2Error):
    """CIBA Core §13: the hint does not identify a known, active user."""

    error = "unknown_user_id"
    status_code = 400


class InvalidBindingMessageError(OAuth2Error):
    """CIBA Core §13: the binding message is invalid or unacceptable."""

    error = "invalid_binding_message"
    status_code = 400


class ExpiredLoginHintTokenError(OAuth2Error):
    """CIBA Core §13: the login_hint_token has expired."""

    error = "expired_login_hint_token"
    status_code = 400


class AuthorizationPendingError(OAuth2Error):
    """CIBA Core §11: the user has not decided yet; poll again after the interval."""

    error = "authorization_pending"
    status_code = 400


class SlowDownError(OAuth2Error):
    """CIBA Core §11: polling too fast; the interval is now longer by 5 seconds."""

    error = "slow_down"
    status_code = 400


class ExpiredTokenError(OAuth2Error):
    """CIBA Core §11: the auth_req_id expired before the user decided."""

    error = "expired_token"
    status_code = 400


class CibaAccessDeniedError(OAuth2Error):
    """CIBA Core §11: the user denied the request."""

    error = "access_denied"
    status_code = 400


class ConnectionRequiredError(OAuth2Error):
    """Token vault: the user must connect (or reconnect) the upstream account first.

    Besides `error` and `error_description`, the body carries `connection`, `reason`
    (not_connected, missing_scopes, reconnect_required), `scope` and the `connect_uri`
    the agent should send the user to.
    """

    error = "connection_required"
    status_code = 400

    def __init__(self, description: str, extra: dict[str, str]) -> None:
        super().__init__(description)
        self.extra = extra

    def get_body(self) -> list[tuple[str, str]]:
        return [*super().get_body(), *self.extra.items()]


class TemporarilyUnavailableError(OAuth2Error):
    """RFC 6749 §4.1.2.1 `temporarily_unavailable`: the upstream provider failed; retry later."""

    error = "temporarily_unavailable"
    status_code = 503


class InvalidRequestUriError(OAuth2Error):
    """OIDC Core §3.1.2.6: the `request_uri` is unknown, expired, used or not this client's."""

    error = "invalid_request_uri"
    status_code = 400


class PushTooLargeError(OAuth2Error):
    """RFC 9126 §2.3: "413 Payload Too Large: If the request size was beyond the upper bound"."""

    error = "invalid_request"
    status_code = 413


class TooManyPushedRequestsError(OAuth2Error):
    """RFC 9126 §2.3: "429 Too Many Requests" when a client pushes beyond what is allowed."""

    error = "invalid_request"
    status_code = 429

    def __init__(self, retry_after: int, description: str) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]
