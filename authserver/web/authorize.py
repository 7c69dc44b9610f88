"""Authorization endpoint and consent page (RFC 6749 §4.1.1-4.1.2, OIDC Core §3.1.2).

Errors about the client or its redirect URI are shown as a page and never
redirect (RFC 6749 §4.1.2.1); every other error goes back to the client with
`state` and `iss` (RFC 9207).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import Blueprint, g, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .. import rar
from ..models import Consent, User, now
from ..oauth import par
from ..oauth.errors import ConsentRequiredError, InvalidRequestUriError, LoginRequiredError
from ..oauth.extensions.authorization_request import is_valid_state
from ..oauth.requests import StrictOAuth2Request
from ..oauth.scopes import scope_list
from ..tokens import InvalidOwnToken
from . import context
from .extensions import server
from .pages import error_page
from .security import allow_form_redirect_to

bp = Blueprint("authorize", __name__)

SCOPE_DESCRIPTIONS = {
    "openid": "Confirm who you are",
    "profile": "Your name and username",
    "email": "Your email address",
    "offline_access": "Stay connected when you are not here",
}


def _redirect_error(error: OAuth2Error) -> Any:
    if error.state and not is_valid_state(error.state):
        error.state = None  # never echo a malformed or oversized state into a Location header
    if g.get("pushed_request_uri") is not None:
        # An error sent back to the client answers a pushed request as a code does.
        if not _answer_pushed_request():
            return _already_answered()
        context.commit()
    _, _, headers = error()
    location = add_params_to_uri(dict(headers)["Location"], [("iss", _issuer())])
    if _self_registered_client():
        # RFC 9700 §4.11.2: redirect on its own only to a URI the server trusts. Anyone can
        # register a client (RFC 7591) whose redirect URI is a phishing page and send people
        # a request that fails on purpose: they see the error and decide themselves.
        page = render_template(
            "error.html",
            title="This sign-in link is not valid",
            description=error.get_error_description() or error.error,
            return_to=location,
            return_label=redirect_label(str(error.redirect_uri)),
        )
        return page, 400
    return redirect(location)


def _self_registered_client() -> bool:
    client = server().query_client(_client_id_or_none() or "")
    return client is not None and client.model.self_registered


def _issuer() -> str:
    return context.runtime().settings.issuer


def authorization_error(error: OAuth2Error) -> Any:
    context.record(
        "authorize", "refused", client_id=_client_id_or_none(), details={"error": error.error}
    )
    if error.redirect_uri:
        return _redirect_error(error)
    return error_page("This sign-in link is not valid", error.get_error_description() or "", 400)


def _client_id_or_none() -> str | None:
    value = _params().get("client_id")
    return value[:64] if isinstance(value, str) else None


def _sent() -> Any:
    """The parameters as this HTTP request carries them (query for GET, form for POST)."""
    return request.form if request.method == "POST" else request.args


def _params() -> Any:
    """The authorization request: the pushed one (RFC 9126) a `request_uri` names, once
    resolved (`_grant`), else the parameters sent."""
    pushed = g.get("pushed_parameters")
    return pushed if pushed is not None else _sent()


def _carried() -> list[tuple[str, str]]:
    """What the browser carries on to the sign-in and consent pages and back: the request
    as sent, or only `client_id` and `request_uri` for a pushed one (RFC 9126 §4: the
    parameters are those pushed, whatever else the URL holds)."""
    request_uri = g.get("pushed_request_uri")
    if request_uri is not None:
        return [("client_id", str(_sent().get("client_id"))), ("request_uri", request_uri)]
    return [(k, v) for k, v in _sent().items(multi=True) if k not in ("csrf_token", "decision")]


def _grant(user: User | None) -> Any:
    """Authlib's grant for this request, from the pushed parameters if it names some."""
    sent = _sent()
    request_uri = sent.get("request_uri")
    if par.is_pushed_reference(request_uri):
        g.pushed_parameters = par.resolve(context.db(), sent.get("client_id"), request_uri)
        g.pushed_request_uri = request_uri
    oauth_request = StrictOAuth2Request(request, g.get("pushed_parameters"))
    return server().get_consent_grant(request=oauth_request, end_user=user)


def _answer_pushed_request() -> bool:
    """A pushed request gets one answer (RFC 9126 §4); False if it already had one.
    Claimed once per HTTP request, in the transaction that writes the answer."""
    request_uri = g.get("pushed_request_uri")
    if request_uri is None or g.get("pushed_answered"):
        return True
    g.pushed_answered = par.answer(context.db(), request_uri)
    return bool(g.pushed_answered)


def _already_answered() -> Any:
    error = InvalidRequestUriError("This request has already been answered.")
    return authorization_error(error)


def _current_user() -> User | None:
    return current_user if current_user.is_authenticated else None


# The authorization request a sign-in was made for, kept in the session until the next
# /authorize. `prompt=login` and `max_age` stay in the request the sign-in page returns
# to; only that request, once, counts the sign-in as the re-authentication they ask for.
SIGNED_IN_FOR = "signed_in_for"
# The request /authorize last sent to the consent page, having checked prompt and max_age
# for it. The consent page asks for no sign-in of its own: a request that asks for a fresh
# one (or for none at all) reaches it only through /authorize.
CONSENT_FOR = "consent_for"


def _fingerprint(pairs: Any) -> str:
    kept = sorted((key, value) for key, value in pairs if key != "csrf_token")
    return hashlib.sha256(json.dumps(kept).encode("utf-8")).hexdigest()


def remember_sign_in_for(next_url: str) -> None:
    """At sign-in: the authorization request it returns to (if any) may count it as fresh."""
    parts = urlsplit(next_url)
    if parts.path == "/authorize":
        session[SIGNED_IN_FOR] = _fingerprint(parse_qsl(parts.query, keep_blank_values=True))


def _signed_in_for_this_request() -> bool:
    remembered = session.pop(SIGNED_IN_FOR, None)  # one use, whatever this request is
    return remembered == _fingerprint(_sent().items(multi=True))


def _needs_login(grant: Any, user: User, fresh: bool) -> bool:
    """OIDC Core §3.1.2.1: prompt=login and an exceeded max_age need a sign-in made for
    this very request. Following the sign-in page's `next` without signing in, or opening
    the same request again later, asks again. prompt=select_account asks the person which
    account to use: the sign-in page is where they choose it (the one signed in, or any
    other), rather than a code for whoever happens to be signed in."""
    if fresh:
        return False
    if {"login", "select_account"} & set(grant.request.prompts):
        return True
    max_age = grant.request.max_age
    return max_age is not None and now() - int(session.get("auth_time", 0)) > max_age


def _hint_matches(user: User) -> bool:
    """OIDC Core §3.1.2.2: with prompt=none, an `id_token_hint` naming someone other than the
    signed-in user (or not an ID token of ours for this client) is login_required, not a
    silent code for whoever happens to be signed in. Without prompt=none the hint is
    advisory and the person signs in as they choose."""
    hint = _params().get("id_token_hint")
    if not hint:
        return True
    try:
        claims = context.runtime().minter.verify(hint[:8192], typ="jwt", verify_exp=False)
    except InvalidOwnToken:
        return False
    return claims.get("sub") == user.id and claims.get("aud") == _params().get("client_id")


# Where the authorization request a sign-in page returns to may redirect once signed in:
# (fingerprint of that request, its checked redirect URI). A consent already given sends
# the browser from the sign-in form's POST through /authorize straight to the client, and
# browsers hold that whole chain of redirects to the form's form-action.
SIGN_IN_RETURNS_TO = "sign_in_returns_to"


def _login_redirect(grant: Any) -> Any:
    """Send the browser to sign in, then back to this same request (`remember_sign_in_for`
    lets it count that sign-in once, so max_age=0 does not loop)."""
    carried = _carried()
    session[SIGN_IN_RETURNS_TO] = [_fingerprint(carried), grant.redirect_uri]
    return redirect(url_for("account.login", next="/authorize?" + urlencode(carried)))


def allow_sign_in_return(next_url: str) -> None:
    """On the sign-in page: let its form's answer end at the client the request it returns
    to was checked for (the redirect URI that request was validated with, nothing else)."""
    remembered = session.get(SIGN_IN_RETURNS_TO)
    parts = urlsplit(next_url)
    if parts.path != "/authorize" or not isinstance(remembered, list) or len(remembered) != 2:
        return
    fingerprint, redirect_uri = remembered
    query = parse_qsl(parts.query, keep_blank_values=True)
    if fingerprint == _fingerprint(query) and isinstance(redirect_uri, str):
        allow_form_redirect_to(redirect_uri)


def _needs_consent(grant: Any, user: User) -> bool:
    client = grant.request.client.model
    if "consent" in grant.request.prompts:
        return True
    # An action to approve (RFC 9396) is always shown, even to a first-party client that
    # skips consent: trusting the client is not approving what it asks to do.
    if getattr(grant.request, "authorization_details", None):
        return True
    if client.skip_consent:
        return False
    if client.token_endpoint_auth_method == "none":
        # RFC 8252 §8.6: a public client's identity cannot be assured (any app on the device
        # may use its client_id and a loopback port), so a remembered approval does not
        # answer its next request silently: the person approves each time.
        return True
    consent = context.db().get(Consent, (user.id, client.client_id))
    if consent is None:
        return True  # even an empty scope: a code reveals who the user is to the client
    asked = set(scope_list(grant.request.scope))
    approved = consent.scopes_by_resource or {}
    return any(not asked <= set(approved.get(target, ())) for target in _consent_targets(grant))


def _consent_targets(grant: Any) -> list[str]:
    """The resource servers the request names (RFC 8707), or "" for none."""
    resources = getattr(grant.request, "resources", None) or []
    return [resource.identifier for resource in resources] or [""]


def _issue_code(grant: Any, user: User) -> Any:
    if not _answer_pushed_request():
        return _already_answered()
    grant.request.auth_time = int(session.get("auth_time", now()))
    # The grant's own request: for a pushed one, `state` must be the pushed state, not
    # whatever the consent form carries (Authlib reads an error's state from `request`).
    response = server().create_authorization_response(
        request=grant.request, grant_user=user, grant=grant
    )
    context.record(
        "authorize",
        user_id=user.id,
        client_id=grant.request.client.client_id,
        details={"scope": grant.request.scope},
    )
    context.commit()
    return response


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    user = _current_user()
    fresh = _signed_in_for_this_request()
    try:
        grant = _grant(user)
    except OAuth2Error as error:
        return authorization_error(error)
    prompt_none = "none" in grant.request.prompts
    state = grant.request.payload.state
    if (
        user is None
        or _needs_login(grant, user, fresh)
        or (prompt_none and not _hint_matches(user))
    ):
        if prompt_none:
            return _redirect_error(LoginRequiredError(redirect_uri=grant.redirect_uri, state=state))
        return _login_redirect(grant)
    if _needs_consent(grant, user):
        if prompt_none:
            return _redirect_error(
                ConsentRequiredError(redirect_uri=grant.redirect_uri, state=state)
            )
        params = [(k, v) for k, v in _carried() if k != "prompt"]
        session[CONSENT_FOR] = _fingerprint(params)
        return redirect(url_for("authorize.consent") + "?" + urlencode(params))
    return _issue_code(grant, user)


def _consent_page(grant: Any) -> str:
    client = grant.request.client.model
    fields = _carried()
    allow_form_redirect_to(grant.redirect_uri)
    return render_template(
        "consent.html",
        client=client,
        scopes=[(s, SCOPE_DESCRIPTIONS.get(s, s)) for s in scope_list(grant.request.scope)],
        resources=getattr(grant.request, "resources", []),
        authorization_details=rar.render(
            context.db(), getattr(grant.request, "authorization_details", None) or []
        ),
        fields=fields,
        redirect_host=redirect_label(grant.redirect_uri),
    )


def redirect_label(uri: str) -> str:
    """Where the person goes back to, as they should read it: the host of a web address
    (never its user information or port), or the app a private-use scheme opens."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return parts.hostname or ""
    return f"the app registered for {parts.scheme}: links"


def _checked_by_authorize(grant: Any) -> bool:
    """OIDC Core §3.1.2.1: `prompt` and `max_age` are enforced at /authorize. A request with
    either reaches the consent page only as /authorize sent it there; opened directly (a
    crafted link with prompt=login, max_age=0 or prompt=none) it goes through /authorize."""
    if not grant.request.prompts and grant.request.max_age is None:
        return True  # nothing /authorize checks that the consent page does not check itself
    return bool(session.get(CONSENT_FOR) == _fingerprint(_carried()))


def _consent_row(user_id: str, client_id: str) -> Consent:
    """The user's consent row for the client, created if missing, locked until commit.

    Two first approvals at once (two tabs) both found no row and both inserted one: the
    second was a unique violation, a 500. The row is now created by an insert that yields
    to an existing one, then read FOR UPDATE (PostgreSQL; SQLite has one writer at a time),
    so the second approval merges its scopes into the first's.
    """
    db = context.db()
    table = Consent.__table__
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.execute(
        insert(table)
        .values(user_id=user_id, client_id=client_id, scope="", scopes_by_resource={})
        .on_conflict_do_nothing(index_elements=[table.c.user_id, table.c.client_id])
    )
    consent = db.get(Consent, (user_id, client_id), with_for_update=True, populate_existing=True)
    if consent is None:  # inserted above or already there: only a concurrent delete gets here
        raise LookupError("consent row vanished while being written")
    return consent


def _remember_consent(user: User, grant: Any) -> None:
    client_id = grant.request.client.client_id
    consent = _consent_row(user.id, client_id)
    asked = scope_list(grant.request.scope)
    merged = dict.fromkeys(scope_list(consent.scope) + asked)
    consent.scope = " ".join(merged)
    by_resource = dict(consent.scopes_by_resource or {})  # a new object: JSON is not mutable
    for target in _consent_targets(grant):
        by_resource[target] = list(dict.fromkeys([*by_resource.get(target, []), *asked]))
    consent.scopes_by_resource = by_resource
    consent.updated_at = now()


@bp.route("/consent", methods=["GET", "POST"])
def consent() -> Any:
    user = _current_user()
    if user is None:
        return redirect(url_for("account.login", next=request.full_path))
    try:
        grant = _grant(user)
    except OAuth2Error as error:
        return authorization_error(error)
    if not _checked_by_authorize(grant):
        return redirect("/authorize?" + urlencode(_carried()))
    if request.method == "GET":
        return _consent_page(grant)
    session.pop(CONSENT_FOR, None)  # one decision per pass through /authorize
    decision = request.form.get("decision")
    if decision not in ("approve", "deny"):
        return error_page("Choose approve or deny", "The form did not say what you decided.", 400)
    # Claimed before anything is written: of two approvals of one pushed request racing,
    # the second stops here, before it records a consent that led to nothing.
    if not _answer_pushed_request():
        return _already_answered()
    if decision == "approve":
        _remember_consent(user, grant)
        context.record(
            "consent",
            user_id=user.id,
            client_id=grant.request.client.client_id,
            details={"scope": grant.request.scope},
        )
        return _issue_code(grant, user)
    context.record("consent", "denied", user_id=user.id, client_id=grant.request.client.client_id)
    response = server().create_authorization_response(
        request=grant.request, grant_user=None, grant=grant
    )
    context.commit()
    return response
