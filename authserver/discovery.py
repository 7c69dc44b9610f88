"""Server metadata (OIDC Discovery 1.0 §3, RFC 8414 §2), built from the settings.

Built from configuration and the registered resource servers each time, so the
document never drifts from what the server does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from . import rar
from .keys import SUPPORTED_ALGS
from .oauth.scopes import known_scopes
from .settings import Settings

GRANT_TYPES = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:openid:params:grant-type:ciba",
]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def _endpoints(issuer: str, settings: Settings) -> dict[str, Any]:
    endpoints = {
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "end_session_endpoint": f"{issuer}/logout",
        "backchannel_authentication_endpoint": f"{issuer}/bc-authorize",
        "pushed_authorization_request_endpoint": f"{issuer}/par",  # RFC 9126 §5
    }
    if settings.registration_enabled:
        endpoints["registration_endpoint"] = f"{issuer}/register"
    return endpoints


def server_metadata(settings: Settings, session: Session) -> dict[str, Any]:
    issuer = settings.issuer
    return {
        "issuer": issuer,
        **_endpoints(issuer, settings),
        "scopes_supported": sorted(known_scopes(session)),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "require_pushed_authorization_requests": settings.require_par,  # RFC 9126 §5
        "authorization_response_iss_parameter_supported": True,
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "name",
            "preferred_username",
            "email",
            "email_verified",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_details_types_supported": rar.supported_types(session),
        "backchannel_token_delivery_modes_supported": ["poll", "ping", "push"],
        "backchannel_user_code_parameter_supported": False,
    }
