"""Authorization server metadata (RFC 8414 §2, §3), built from the settings so it never drifts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from . import pkce, scopes
from .clients import AUTH_METHODS
from .state import state
from .token_endpoint import GRANTS

bp = Blueprint("metadata", __name__)


def metadata(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "scopes_supported": scopes.SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": sorted(GRANTS),
        "code_challenge_methods_supported": pkce.METHODS_SUPPORTED,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        # Not registered metadata names: where the calendar API lives.
        "freebusy_endpoint": f"{issuer}/freebusy",
        "events_endpoint": f"{issuer}/events",
    }


@bp.get("/.well-known/oauth-authorization-server")
def discovery() -> ResponseReturnValue:
    response = jsonify(metadata(state().settings.issuer))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
