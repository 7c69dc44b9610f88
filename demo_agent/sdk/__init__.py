"""The agent SDK: an OAuth 2.0 / OpenID Connect client for agents, over HTTP only.

It finds everything through discovery and speaks to the authorization server the way
any third-party agent would: sign-in with PKCE over a loopback redirect, token
exchange (RFC 8693) for delegated API tokens, CIBA approvals with rich authorization
requests, and federated upstream tokens from the token vault. Errors are typed
(`OAuthError` subclasses named after the RFC codes); credentials never appear in a
repr, a trace or a message.

    client = AuthClient("http://127.0.0.1:8000", "demo-agent", secret,
                        redirect_uri="http://127.0.0.1:8765/callback")
    client.sign_in(scope="openid profile offline_access portfolio:read")
    broker = client.exchange("http://127.0.0.1:8001", "portfolio:read")
"""

from .ciba import PendingApproval
from .client import AuthClient
from .delegation import ACCESS_TOKEN_TYPE, FEDERATED_TOKEN_TYPE, TOKEN_EXCHANGE
from .errors import (
    AccessDenied,
    AuthorizationPending,
    ConnectionRequired,
    ConsentRequired,
    ExpiredToken,
    InsufficientScope,
    InvalidAuthorizationDetails,
    InvalidBindingMessage,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    InvalidToken,
    LoginRequired,
    OAuthError,
    SdkError,
    ServerError,
    SignInError,
    SlowDown,
    TemporarilyUnavailable,
    TransportError,
    UnauthorizedClient,
    UnknownUserId,
    UnsupportedGrantType,
)
from .http import Exchange, TraceHook
from .masking import Redactor, fingerprint, mask
from .tokens import TokenSet, peek_claims

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "FEDERATED_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "AccessDenied",
    "AuthClient",
    "AuthorizationPending",
    "ConnectionRequired",
    "ConsentRequired",
    "Exchange",
    "ExpiredToken",
    "InsufficientScope",
    "InvalidAuthorizationDetails",
    "InvalidBindingMessage",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "InvalidToken",
    "LoginRequired",
    "OAuthError",
    "PendingApproval",
    "Redactor",
    "SdkError",
    "ServerError",
    "SignInError",
    "SlowDown",
    "TemporarilyUnavailable",
    "TokenSet",
    "TraceHook",
    "TransportError",
    "UnauthorizedClient",
    "UnknownUserId",
    "UnsupportedGrantType",
    "fingerprint",
    "mask",
    "peek_claims",
]
