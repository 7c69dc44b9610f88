"""Sign-in, sign-out and RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

Failed sign-ins are throttled per username and per address (HTTP 429 with
`Retry-After`); the password check costs the same whether or not the user exists.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request, session
from flask_login import current_user, login_user, logout_user
from sqlalchemy import func, or_, select

from ..models import Client, User, now
from ..tokens import InvalidOwnToken
from . import browser_sessions, context
from .authorize import allow_sign_in_return, remember_sign_in_for
from .extensions import login_throttle
from .navigation import safe_next
from .security import allow_form_redirect_to

bp = Blueprint("account", __name__)

MAX_FIELD = 256
MAX_STATE_LENGTH = 2000
LOGOUT_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")
GENERIC_FAILURE = "Incorrect username or password."


@bp.get("/")
def home() -> str:
    return render_template("home.html")


@bp.get("/login")
def login() -> str:
    next_url = safe_next(request.args.get("next"))
    allow_sign_in_return(next_url)
    return render_template("login.html", next=next_url, error=None)


def _find_user(username: str) -> User | None:
    name = username.strip().lower()
    return context.db().scalar(
        select(User).where(or_(func.lower(User.username) == name, func.lower(User.email) == name))
    )


def _attempted_name(username: str, user: User | None) -> dict[str, str]:
    """What a sign-in audit row says about the name typed: the account's username when it
    names one, otherwise only a keyed fingerprint. People type their password into the
    username field; an unknown name must not reach the log as typed. The fingerprint
    still lets an operator see one name being tried many times, and the key (the session
    secret, never in the database) stops a dictionary attack on the rows."""
    if user is not None:
        return {"username": user.username}
    key = context.runtime().settings.secret_key.encode("utf-8")
    typed = username.strip().lower().encode("utf-8")
    tag = hmac.new(key, b"audit-username:" + typed, hashlib.sha256).hexdigest()[:16]
    return {"unknown_username_hmac": tag}


def _login_form_error(message: str, status: int, next_url: str, username: str = "") -> Any:
    allow_sign_in_return(next_url)
    page = render_template("login.html", next=next_url, error=message, username=username)
    return page, status


@bp.post("/login")
def login_submit() -> Any:
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    next_url = safe_next(request.form.get("next"))
    if not username or not password or len(username) > MAX_FIELD or len(password) > MAX_FIELD:
        return _login_form_error(
            "Enter your username and password.", 400, next_url, username[:MAX_FIELD]
        )
    address = context.client_address()
    throttle = login_throttle()
    user = _find_user(username)
    # Failures count per account (ASVS V2.2.1): a username and an email address naming the
    # same account share one counter (the one approvals re-authentication uses too).
    counted_name = user.username if user is not None else username
    retry_after = throttle.reserve(counted_name, address)
    if retry_after is not None:
        context.record(
            "login",
            "throttled",
            user_id=user.id if user else None,
            details=_attempted_name(username, user),
        )
        context.commit()
        page = _login_form_error(
            "Too many failed attempts. Try again later.", 429, next_url, username
        )
        return page[0], 429, {"Retry-After": str(retry_after)}
    runtime = context.runtime()
    ok = runtime.passwords.verify(user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        context.record(
            "login",
            "failure",
            user_id=user.id if user else None,
            details=_attempted_name(username, user),
        )
        context.commit()
        return _login_form_error(GENERIC_FAILURE, 401, next_url, username)
    throttle.release(counted_name, address)
    if runtime.passwords.needs_rehash(user.password_hash):
        user.password_hash = runtime.passwords.hash(password)
    browser_sessions.end()  # a session already signed in here is replaced, not left live
    session.clear()
    login_user(user)
    browser_sessions.start(user)
    session["auth_time"] = now()
    remember_sign_in_for(next_url)
    context.record("login", user_id=user.id)
    context.commit()
    return redirect(next_url)


def _verified_hint(hint: str | None) -> dict[str, Any] | None:
    if not hint:
        return None
    try:
        # OIDC RP-Initiated Logout §2: an expired ID token is still a valid hint.
        # Only an ID token (typ JWT) is a hint; an access token (typ at+jwt) is not.
        return context.runtime().minter.verify(hint, typ="jwt", verify_exp=False)
    except InvalidOwnToken:
        return None


def _logout_target(values: Any) -> tuple[str | None, str | None]:
    """(redirect URI, error): the post-logout URI only if registered for the hinted client."""
    uri = values.get("post_logout_redirect_uri")
    hint_claims = _verified_hint(values.get("id_token_hint"))
    if values.get("id_token_hint") and hint_claims is None:
        return None, "The id_token_hint is not a valid ID token from this server."
    hinted_client = (hint_claims or {}).get("aud")
    if hint_claims and values.get("client_id") and values.get("client_id") != hinted_client:
        # RP-Initiated Logout §2: client_id MUST match the ID token's audience.
        return None, "The client_id does not match the id_token_hint."
    if len(values.get("state") or "") > MAX_STATE_LENGTH:
        return None, "The state is too long."
    if not uri:
        return None, None
    client_id = values.get("client_id") or hinted_client
    client = context.db().get(Client, client_id) if isinstance(client_id, str) else None
    if client is None or uri not in (client.post_logout_redirect_uris or []):
        return None, "The post_logout_redirect_uri is not registered for this client."
    if client.self_registered and hint_claims is None:
        # RP-Initiated Logout §3: without an ID token, redirect only where the server has
        # other reasons to trust; anyone can register a client (RFC 7591) and its URIs.
        return None, "Sending you back to this application needs an id_token_hint."
    state = values.get("state")
    return (
        uri + ("&" if "?" in uri else "?") + urlencode({"state": state}) if state else uri
    ), None


def _finish_logout(target: str | None) -> Any:
    if current_user.is_authenticated:
        context.record("logout", user_id=current_user.id)
    browser_sessions.end()
    context.commit()
    logout_user()
    session.clear()
    return redirect(target) if target else render_template("logged_out.html")


def _logout_error(error: str) -> Any:
    return render_template("error.html", title="Cannot sign out here", description=error), 400


def _of_this_session(hint: dict[str, Any]) -> bool:
    """RP-Initiated Logout §2: the OP MUST ask when the ID token "does not belong to the
    current OP session". It does when it names the signed-in user and the sign-in this
    session began with (`auth_time`): an ID token kept from an earlier session of the same
    person, reused in a link, asks."""
    return hint.get("sub") == current_user.id and hint.get("auth_time") == session.get("auth_time")


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    """End-session endpoint. Signs out at once only when an ID token for this user says so;
    otherwise asks the person (a cross-site link alone must not sign anyone out)."""
    values = request.form if request.method == "POST" else request.args
    target, error = _logout_target(values)
    if error:
        return _logout_error(error)
    hint = _verified_hint(values.get("id_token_hint"))
    signed_in = current_user.is_authenticated
    if not signed_in or (hint is not None and _of_this_session(hint)):
        return _finish_logout(target)
    fields = {name: values.get(name) for name in LOGOUT_PARAMS if values.get(name)}
    if target:
        allow_form_redirect_to(target)  # the confirmation's answer redirects there
    return render_template("logout_confirm.html", params=fields)


@bp.post("/logout/confirm")
def logout_confirm() -> Any:
    """The confirmation form of `logout`, CSRF-protected."""
    target, error = _logout_target(request.form)
    if error:
        return _logout_error(error)
    return _finish_logout(target)
