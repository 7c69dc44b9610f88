"""Token endpoint (RFC 6749 §3.2, §5): client authentication, then one grant handler.

Grants are registered in ``GRANTS`` by their wire ``grant_type``; each handler
returns the tokens to send (§5.1) or raises an ``OAuthError`` rendered as §5.2 JSON.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from . import grant_code, grant_refresh
from .clients import authenticate_client
from .config import Client
from .errors import InvalidRequest, UnsupportedGrantType
from .state import state
from .tokens import Issued

bp = Blueprint("token", __name__)

GRANTS: dict[str, Callable[[Client, MultiDict[str, str]], Issued]] = {
    grant_code.GRANT_TYPE: grant_code.handle,
    grant_refresh.GRANT_TYPE: grant_refresh.handle,
}


def check_form() -> MultiDict[str, str]:
    """§3.2: a form-encoded POST whose parameters appear at most once."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    form = request.form
    repeated = sorted(name for name, values in form.lists() if len(values) > 1)
    if repeated:
        raise InvalidRequest(f"parameters sent more than once: {', '.join(repeated)}")
    return form


@bp.post("/token")
def token() -> Response:
    form = check_form()
    client = authenticate_client(state().settings.clients, request)
    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
    return handler(client, form).response()
