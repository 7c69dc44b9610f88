"""Token revocation (RFC 7009).

The client authenticates (§2.1). Revoking a refresh token revokes its whole
grant, access tokens included (§2.1: "SHOULD also invalidate all access tokens
based on the same authorization grant"); revoking an access token revokes only
it. Unknown tokens, and tokens issued to another client, get the same empty 200
(§2.2), so the endpoint tells nobody whether a token exists. ``token_type_hint``
may be ignored (§2.1) and is: both kinds are looked up by digest.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from .clients import authenticate_client
from .db import transaction
from .errors import InvalidRequest
from .models import AccessToken, RefreshToken, TokenFamily
from .state import state
from .token_endpoint import check_form
from .tokens import count, digest, revoke_family

bp = Blueprint("revocation", __name__)


@bp.post("/revoke")
def revoke() -> Response:
    form = check_form()
    client = authenticate_client(state().settings.clients, request)
    value = form.get("token")
    if not value:
        raise InvalidRequest("token is required")
    now = state().now()
    with transaction() as db:
        refresh = db.get(RefreshToken, digest(value))
        family = db.get(TokenFamily, refresh.family_id) if refresh else None
        if family is not None and family.client_id == client.client_id:
            revoke_family(db, family.id, now)
        access = db.get(AccessToken, digest(value))
        if access is not None and access.client_id == client.client_id:
            access.revoked_at = access.revoked_at or now
        count(db, "revocations")
    response = Response("", 200)
    response.headers["Cache-Control"] = "no-store"
    return response
