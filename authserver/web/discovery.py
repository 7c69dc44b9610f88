"""Discovery documents and the JWKS."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from ..discovery import server_metadata
from ..keys import JWKS_MAX_AGE_SECONDS
from . import context

bp = Blueprint("discovery", __name__)

PUBLIC_CACHE = "public, max-age=300"


def _metadata() -> Response:
    document = server_metadata(context.runtime().settings, context.db())
    # RFC 8414 §2: clients rely on every URL listed. Dynamic registration can be switched on
    # in the settings before this app serves /register: never advertise it unserved.
    if "/register" not in {rule.rule for rule in current_app.url_map.iter_rules()}:
        document.pop("registration_endpoint", None)
    response = jsonify(document)
    response.headers["Cache-Control"] = PUBLIC_CACHE
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    return _metadata()


@bp.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server() -> Response:
    return _metadata()


@bp.get("/jwks.json")
def jwks() -> Response:
    response = jsonify(context.runtime().signing_keys.jwks())
    # Short, so a rotation reaches relying parties quickly (keys.PUBLISH_BEFORE_SIGNING_SECONDS
    # waits this long before a new key signs).
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
