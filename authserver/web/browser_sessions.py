"""Server-side record of signed-in browsers.

The session cookie is signed, not stored: on its own, a copy taken before sign-out
(from a shared computer, a backup, malware) would stay valid until it expires. Each
sign-in therefore puts a random session id in the cookie and stores its SHA-256 with
the user and an expiry; the user loader accepts a cookie only while that row exists,
and sign-out deletes it.
"""

from __future__ import annotations

from flask import current_app, session
from sqlalchemy import delete

from ..credentials import digest, new_secret_value
from ..models import BrowserSession, User, now
from . import context

SESSION_ID_KEY = "sid"


def start(user: User) -> None:
    """Record a new signed-in browser in the request's transaction (committed by the caller)."""
    session_id = new_secret_value()
    lifetime = int(current_app.permanent_session_lifetime.total_seconds())
    context.db().add(
        BrowserSession(id_hash=digest(session_id), user_id=user.id, expires_at=now() + lifetime)
    )
    session[SESSION_ID_KEY] = session_id


def is_live(user_id: str) -> bool:
    """Whether this request's cookie names a session that is still signed in as `user_id`."""
    session_id = session.get(SESSION_ID_KEY)
    if not isinstance(session_id, str) or not session_id:
        return False
    row = context.db().get(BrowserSession, digest(session_id))
    return row is not None and row.user_id == user_id and row.expires_at > now()


def end() -> None:
    """Forget this browser's session (in the request's transaction)."""
    session_id = session.get(SESSION_ID_KEY)
    if isinstance(session_id, str) and session_id:
        context.db().execute(
            delete(BrowserSession).where(BrowserSession.id_hash == digest(session_id))
        )
