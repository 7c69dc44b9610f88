"""Sign-in for the provider's own users, with the authserver's form conventions.

Fields ``username``, ``password`` and the hidden ``csrf_token``; ``next`` names a
relative path to return to, and anything else (an absolute or scheme-relative
URL) is ignored so the form cannot be used as an open redirector (RFC 6749 §10.15).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Blueprint, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from .db import transaction
from .models import User

bp = Blueprint("login", __name__)
_hasher = PasswordHasher()
# Verified when the username is unknown, so a miss costs as much as a hit.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a relative path on this site, else None."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(ch) < 0x20 for ch in value):
        return None
    return value


def current_user() -> tuple[int, str] | None:
    """(id, username) of the signed-in user, if any."""
    user_id, username = session.get("user_id"), session.get("username")
    if isinstance(user_id, int) and isinstance(username, str):
        return user_id, username
    return None


def _check_password(username: str, password: str) -> User | None:
    with transaction() as db:
        user = db.scalar(select(User).where(User.username == username))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


@bp.get("/login")
def login_form() -> str:
    return render_template("login.html", next=safe_next(request.args.get("next")), error=None)


@bp.post("/login")
def login() -> ResponseReturnValue:
    target = safe_next(request.form.get("next") or request.args.get("next"))
    username = request.form.get("username", "").strip()
    user = _check_password(username, request.form.get("password", ""))
    if user is None:
        error = "Unknown username or wrong password."
        return render_template("login.html", next=target, error=error, username=username), 401
    session.clear()  # a fresh session on sign-in (session fixation)
    session["user_id"], session["username"] = user.id, user.username
    return redirect(target or url_for("login.home"))


@bp.get("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("login.login_form"))


@bp.get("/")
def home() -> str:
    return render_template("home.html", user=current_user())
