"""Broker errors: RFC 6750 §3.1 bearer-token error codes plus the broker's own order errors.

Each class carries its HTTP status and wire code. Errors raised while checking the
bearer token also render a ``WWW-Authenticate: Bearer`` challenge (RFC 6750 §3); the
others are plain JSON ``{"error", "error_description"}`` bodies. Nothing here imports
Flask, so the token verifier and the ledger can raise these without a web framework.
"""

from __future__ import annotations

import re

REALM = "broker"

# RFC 6750 §3: error_description uses %x20-21 / %x23-5B / %x5D-7E (no '"' or '\').
_UNSAFE_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def _safe(text: str) -> str:
    """Keep only characters RFC 6750 §3 allows inside a quoted challenge parameter."""
    return _UNSAFE_DESCRIPTION.sub("?", text)[:200]


class BrokerError(Exception):
    """Base class: a client-visible error with a status, a wire code and a description."""

    status: int = 400
    error: str = "invalid_request"
    challenge: bool = False

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = _safe(description)

    def body(self) -> dict[str, str]:
        """JSON body: ``error`` and ``error_description``."""
        return {"error": self.error, "error_description": self.description}

    def challenge_params(self) -> dict[str, str]:
        """Auth-params of the ``WWW-Authenticate`` challenge (RFC 6750 §3)."""
        return {"error": self.error, "error_description": self.description}

    def www_authenticate(self) -> str | None:
        """The ``WWW-Authenticate`` header value, or None when not an auth failure."""
        if not self.challenge:
            return None
        params = {"realm": REALM, **self.challenge_params()}
        return "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params.items())


class InvalidRequest(BrokerError):
    """RFC 6750 §3.1 invalid_request: "The request is missing a required parameter,
    includes an unsupported parameter or parameter value, [...] or is otherwise
    malformed. The resource server SHOULD respond with the HTTP 400 (Bad Request)."""

    status = 400
    error = "invalid_request"


class InvalidBearerRequest(InvalidRequest):
    """invalid_request about the credentials themselves (e.g. a token in the URI), so it
    carries a challenge as RFC 6750 §3 describes."""

    challenge = True


class MissingToken(BrokerError):
    """RFC 6750 §3.1: "If the request lacks any authentication information [...], the
    resource server SHOULD NOT include an error code or other error information"."""

    status = 401
    error = "unauthorized"
    challenge = True

    def __init__(self) -> None:
        super().__init__("a bearer access token is required")

    def challenge_params(self) -> dict[str, str]:
        return {}


class InvalidToken(BrokerError):
    """RFC 6750 §3.1 invalid_token: "The access token provided is expired, revoked,
    malformed, or invalid for other reasons. The resource SHOULD respond with the HTTP
    401 (Unauthorized) status code." RFC 9068 §4 lists the checks that lead here."""

    status = 401
    error = "invalid_token"
    challenge = True


class InsufficientScope(BrokerError):
    """RFC 6750 §3.1 insufficient_scope: "The request requires higher privileges than
    provided by the access token. The resource server SHOULD respond with the HTTP 403
    (Forbidden) status code and MAY include the "scope" attribute with the scope
    necessary to access the protected resource."""

    status = 403
    error = "insufficient_scope"
    challenge = True

    def __init__(self, description: str, scope: str | None = None) -> None:
        super().__init__(description)
        self.scope = scope

    def challenge_params(self) -> dict[str, str]:
        params = {"error": "insufficient_scope", "error_description": self.description}
        if self.scope:
            params["scope"] = self.scope
        return params


class InsufficientAuthorizationDetails(InsufficientScope):
    """RFC 9396 §7: the resource server checks that the token's authorization_details
    cover the request. The challenge keeps RFC 6750's ``insufficient_scope`` code (the
    only registered one); the JSON body names the precise reason."""

    error = "insufficient_authorization_details"


class TokenAlreadyUsed(BrokerError):
    """409: the token's ``jti`` already placed an order; one approval, one order."""

    status = 409
    error = "token_already_used"


class OrderRejected(BrokerError):
    """422: the order is well-formed and authorized but the account cannot honour it."""

    status = 422

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error


class NotFound(BrokerError):
    """404 for an unknown resource, e.g. a symbol the mock market does not quote."""

    status = 404
    error = "not_found"


class KeysUnavailable(BrokerError):
    """503: the issuer's discovery document or JWKS cannot be fetched. Shown to clients
    as a generic ``server_error``; the cause goes to the log."""

    status = 503
    error = "server_error"
