"""Authorization endpoint and consent (RFC 6749 §4.1.1-§4.1.2, RFC 7636, RFC 9207).

``GET /authorize`` runs an ordered list of small checks. The first two (client,
redirect URI) fail with an HTML page and never redirect (§4.1.2.1, §10.15); the
rest redirect the error to the client with ``state`` and ``iss``. A signed-in user
then answers ``GET/POST /consent`` (``decision=approve|deny``, CSRF protected),
and approval redirects with a single-use code that lives 60 seconds.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from . import pkce, scopes
from .config import Client
from .db import transaction
from .errors import AccessDenied, InvalidRequest, OAuthError, PageError, UnsupportedResponseType
from .login import current_user
from .models import AuthorizationCode
from .state import state
from .tokens import digest, new_value

bp = Blueprint("authorize", __name__)
MAX_PENDING = 5


def _single(args: MultiDict[str, str], name: str) -> str:
    """§3.1: parameters must not be included more than once; a repeated one counts as absent."""
    values = args.getlist(name)
    return values[0] if len(values) == 1 else ""


def check_client(args: MultiDict[str, str]) -> Client:
    client = state().settings.clients.get(_single(args, "client_id"))
    if client is None:
        raise PageError("Unknown application", "The client_id is missing or not registered.")
    return client


def check_redirect_uri(client: Client, args: MultiDict[str, str]) -> str:
    """§3.1.2.3: exact string match against a registered redirect URI."""
    uri = _single(args, "redirect_uri")
    if uri not in client.redirect_uris:
        raise PageError("Invalid redirect URI", "The redirect_uri is missing or not registered.")
    return uri


def check_request(args: MultiDict[str, str]) -> dict[str, str]:
    """The redirectable checks: repeated parameters, response type, PKCE, scope."""
    repeated = sorted(name for name, values in args.lists() if len(values) > 1)
    if repeated:
        raise InvalidRequest(f"parameters sent more than once: {', '.join(repeated)}")
    if args.get("response_type") != "code":
        raise UnsupportedResponseType("response_type must be code")
    challenge = pkce.check_challenge(args.get("code_challenge"), args.get("code_challenge_method"))
    return {"code_challenge": challenge, "scope": " ".join(scopes.parse(args.get("scope")))}


def client_redirect(uri: str, params: dict[str, str | None]) -> ResponseReturnValue:
    """§4.1.2: add the response parameters to the redirect URI's query, keeping its own."""
    params["iss"] = state().settings.issuer  # RFC 9207 §2
    parts = urlsplit(uri)
    query = parse_qsl(parts.query) + [(k, v) for k, v in params.items() if v is not None]
    response = redirect(urlunsplit(parts._replace(query=urlencode(query))))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/authorize")
def authorize() -> ResponseReturnValue:
    """§4.1.1: validate, send a stranger to sign in, then hand over to consent."""
    args = request.args
    client = check_client(args)
    redirect_uri = check_redirect_uri(client, args)
    try:
        checked = check_request(args)
    except OAuthError as exc:
        error = {"error": exc.error, "error_description": exc.description}
        return client_redirect(redirect_uri, {**error, "state": args.get("state")})
    if current_user() is None:
        return redirect(url_for("login.login_form", next=request.full_path))
    request_id = secrets.token_urlsafe(16)
    pending: dict[str, Any] = dict(session.get("authz", {}))
    pending[request_id] = {
        **checked,
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": args.get("state"),
    }
    session["authz"] = dict(list(pending.items())[-MAX_PENDING:])
    return redirect(url_for("authorize.consent", request=request_id))


def _pending(request_id: str) -> dict[str, str]:
    found = session.get("authz", {}).get(request_id)
    if not isinstance(found, dict):
        raise PageError("Request expired", "This request was already answered or has expired.")
    return found


@bp.route("/consent", methods=["GET", "POST"])
def consent() -> ResponseReturnValue:
    """The resource owner's decision on a pending request of this browser session."""
    request_id = request.values.get("request", "")
    user = current_user()
    if user is None:
        return redirect(url_for("login.login_form", next=request.full_path))
    pending = _pending(request_id)
    if request.method == "GET":
        return render_template(
            "consent.html",
            user=user[1],
            client_id=pending["client_id"],
            scopes=[(s, scopes.DESCRIPTIONS[s]) for s in pending["scope"].split()],
            request_id=request_id,
        )
    return _decide(request.form.get("decision"), request_id, pending, user[0])


def _decide(
    decision: str | None, request_id: str, pending: dict[str, str], user_id: int
) -> ResponseReturnValue:
    """§4.1.2 on approval, §4.1.2.1 access_denied on denial; the request is answered once."""
    if decision not in ("approve", "deny"):
        raise PageError("Invalid decision", "The decision must be approve or deny.")
    session["authz"] = {k: v for k, v in session["authz"].items() if k != request_id}
    if decision == "deny":
        denied = AccessDenied("the user denied the request")
        error = {"error": denied.error, "error_description": denied.description}
        return client_redirect(pending["redirect_uri"], {**error, "state": pending["state"]})
    code = new_value()
    with transaction() as db:
        db.add(
            AuthorizationCode(
                code_hash=digest(code),
                client_id=pending["client_id"],
                user_id=user_id,
                redirect_uri=pending["redirect_uri"],
                scope=pending["scope"],
                code_challenge=pending["code_challenge"],
                expires_at=state().now() + state().settings.code_ttl,
            )
        )
    return client_redirect(pending["redirect_uri"], {"code": code, "state": pending["state"]})
