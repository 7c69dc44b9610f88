"""UserInfo endpoint (OIDC Core §5.3) with bearer tokens per RFC 6750.

Accepts an access token issued by this server for this server (its `aud` is the
issuer), still active, with the `openid` scope. Errors carry `WWW-Authenticate`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..models import User
from ..oauth.endpoints.lookup import find_access_token
from ..oauth.scopes import scope_list
from . import context

bp = Blueprint("userinfo", __name__)


def _bearer_error(status: int, error: str, description: str, scope: str | None = None) -> Response:
    challenge = f'Bearer error="{error}", error_description="{description}"'
    if scope:
        challenge += f', scope="{scope}"'
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["WWW-Authenticate"] = challenge
    response.headers["Cache-Control"] = "no-store"
    return response


def _presented_token() -> tuple[str | None, str | None]:
    """RFC 6750 §2: header, or form body on POST; never the query string; only one method."""
    header = request.headers.get("Authorization", "")
    # §2.2: a form-encoded body only (not multipart), and the parameter sent once (§3.1).
    form_body = request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded"
    in_body = request.form.get("access_token") if form_body else None
    if "access_token" in request.args:
        return None, "Access tokens are not accepted in the URL."
    if form_body and len(request.form.getlist("access_token")) > 1:
        return None, "The access_token parameter is repeated."
    if header and in_body:
        return None, "Use exactly one way to send the access token."
    if header:
        scheme, _, value = header.partition(" ")
        return (value.strip() or None, None) if scheme.lower() == "bearer" else (None, None)
    return in_body, None


def _claims_for(user: User, scopes: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": user.id}
    if "profile" in scopes:
        claims.update(name=user.name, preferred_username=user.username)
    if "email" in scopes and user.email:
        claims.update(email=user.email, email_verified=user.email_verified)
    return claims


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    token, problem = _presented_token()
    if problem:
        return _bearer_error(400, "invalid_request", problem)
    if not token:
        response = jsonify(error="invalid_token", error_description="No access token.")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="userinfo"'
        return response
    runtime = context.runtime()
    found = find_access_token(context.db(), runtime.minter, token)
    audience = found.claims.get("aud") if found else None
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if found is None or not found.active or runtime.settings.issuer not in audiences:
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    scopes = scope_list(found.claims.get("scope"))
    if "openid" not in scopes:
        return _bearer_error(403, "insufficient_scope", "The openid scope is required.", "openid")
    user = context.db().get(User, found.claims.get("sub"))
    if user is None or not user.is_active:
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    response = jsonify(_claims_for(user, scopes))
    response.headers["Cache-Control"] = "no-store"
    return response
