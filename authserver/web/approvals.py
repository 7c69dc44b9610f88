"""The approval page: the CIBA authentication device (CIBA Core §1, DESIGN "approvals").

Each pending request of the signed-in user is a plain HTML form (works without
JavaScript). New requests arrive live over server-sent events; the stream reads
the shared database, so it works whichever process or node took the request.
Approving asks for the password again; denying does not.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select

from .. import rar
from ..models import PENDING, REDEEMED, BackchannelRequest, Client, ResourceServer, now
from ..oauth.ciba import GRANT_TYPE
from ..oauth.ciba.decisions import DecisionRefused, decide
from . import context
from .authorize import SCOPE_DESCRIPTIONS
from .extensions import login_throttle

bp = Blueprint("approvals", __name__)


class _Changes:
    """Wakes this process's open streams the moment a request changes here.

    Changes committed by other processes (workers, nodes) are still found by the
    stream's poll of the database every `approval_stream_poll_interval` seconds.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.version = 0

    def announce(self) -> None:
        with self._condition:
            self.version += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self.version != seen, timeout)


changes = _Changes()


def announce_change() -> None:
    """Call after committing a new or decided request (POST /bc-authorize, a decision)."""
    changes.announce()


OVERLAP_MS = 2000  # re-read a little of the past: a slow commit may carry an older timestamp
HEARTBEAT_SECONDS = 15.0
STREAM_LIFETIME_SECONDS = 300.0  # the browser reconnects; workers are not held forever
# Each open stream holds one of the process's worker threads. A person needs one (a tab or
# two); more than this per process are refused, so one person's tabs cannot take the
# threads that /token and the decisions themselves need. Further tabs show "reload".
MAX_STREAMS_PER_USER = 3


class _StreamSlots:
    """Open streams per user in this process."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, user_id: str) -> bool:
        with self._lock:
            if self._open.get(user_id, 0) >= self._limit:
                return False
            self._open[user_id] = self._open.get(user_id, 0) + 1
            return True

    def give_back(self, user_id: str) -> None:
        with self._lock:
            left = self._open.get(user_id, 0) - 1
            if left > 0:
                self._open[user_id] = left
            else:
                self._open.pop(user_id, None)


stream_slots = _StreamSlots(MAX_STREAMS_PER_USER)


def _cards(session: Any, rows: list[BackchannelRequest]) -> list[dict[str, Any]]:
    clients = {
        c.client_id: c
        for c in session.scalars(
            select(Client).where(Client.client_id.in_({row.client_id for row in rows}))
        )
    }
    wanted = {identifier for row in rows for identifier in row.resources or []}
    resources = {
        r.identifier: r.name
        for r in session.scalars(
            select(ResourceServer).where(ResourceServer.identifier.in_(wanted))
        )
    }
    moment = now()
    return [
        {
            "id": row.id,
            "client": clients.get(row.client_id),
            "agent": _agent_name(clients.get(row.client_id), row.client_id),
            "binding_message": row.binding_message,
            "details": rar.render(session, row.authorization_details or []),
            "scopes": [
                (s, SCOPE_DESCRIPTIONS.get(s, s)) for s in row.scope.split() if s != "openid"
            ],
            "resources": [resources.get(i, i) for i in row.resources or []],
            "expires_in": max(0, row.expires_at - moment),
        }
        for row in rows
    ]


def _agent_name(client: Client | None, client_id: str) -> str:
    return (client.client_name if client is not None else "") or client_id


def _pending_rows(session: Any, user_id: str) -> list[BackchannelRequest]:
    return list(
        session.scalars(
            select(BackchannelRequest)
            .where(
                BackchannelRequest.user_id == user_id,
                BackchannelRequest.status == PENDING,
                BackchannelRequest.expires_at > now(),
            )
            .order_by(BackchannelRequest.created_at.desc())
        )
    )


def _page(message: str | None = None, error: str | None = None, status: int = 200) -> Any:
    # Cards that arrive later over the stream carry a CSRF token: the session must hold its
    # secret from now on, even when this page has no form yet (the stream cannot set cookies
    # once its body has started).
    generate_csrf()
    session = context.db()
    cards = _cards(session, _pending_rows(session, current_user.id))
    page = render_template(
        "approvals.html", cards=cards, message=message, error=error, since=int(time.time() * 1000)
    )
    return page, status


@bp.get("/approvals")
@login_required
def approvals() -> Any:
    return _page(message=_decided_notice(request.args.get("done", ""), request.args.get("id", "")))


def _decided_notice(done: str, request_id: str) -> str | None:
    """After the redirect: what was just decided, in words (only the user's own requests)."""
    if done not in ("approved", "denied"):
        return None
    row = context.db().get(BackchannelRequest, request_id[:36]) if request_id else None
    if row is None or row.user_id != current_user.id or row.status == PENDING:
        return "Approved. The agent can go ahead." if done == "approved" else "Denied."
    [card] = _cards(context.db(), [row])
    what = "; ".join(d["summary"] or d["title"] or "" for d in card["details"] if d)
    if row.status == "denied":
        verdict = f"Denied: {card['agent']} was told no"
    else:
        verdict = f"Approved: {card['agent']} can go ahead"
    return verdict + (f" ({what.strip()})." if what.strip() else ".")


def _password_ok() -> tuple[bool, int | None]:
    """Re-authentication for approvals, throttled like sign-in."""
    throttle, address = login_throttle(), context.client_address()
    retry_after = throttle.reserve(current_user.username, address)
    if retry_after is not None:
        return False, retry_after
    password = request.form.get("password", "")
    if 0 < len(password) <= 256 and context.runtime().passwords.verify(
        current_user.password_hash, password
    ):
        throttle.release(current_user.username, address)
        return True, None
    return False, None  # the reserved attempt stays counted as a failure


@bp.post("/approvals/<request_id>")
@login_required
def decide_request(request_id: str) -> Any:
    decision = request.form.get("decision")
    if decision not in ("approve", "deny") or len(request_id) > 36:
        return _page(error="Choose approve or deny.", status=400)
    if decision == "approve":
        ok, retry_after = _password_ok()
        if not ok:
            context.record(
                "ciba.decided",
                "reauth_failed",
                user_id=current_user.id,
                details={"request_id": request_id},
            )
            context.commit()
            if retry_after is not None:
                page, _ = _page(error="Too many wrong passwords. Try again later.", status=429)
                return page, 429, {"Retry-After": str(retry_after)}
            if not request.form.get("password"):
                return _page(
                    error="Enter your password to approve. Nothing was approved.", status=401
                )
            return _page(error="That password is not right. Nothing was approved.", status=401)
    try:
        row = decide(
            context.db(), context.runtime(), request_id, current_user.id, decision == "approve"
        )
    except DecisionRefused as refusal:
        context.record(
            "ciba.decided",
            "refused",
            user_id=current_user.id,
            details={"request_id": request_id, "reason": str(refusal)},
        )
        context.commit()
        status = 404 if str(refusal) == "not found" else 409
        return _page(error="That request can no longer be decided.", status=status)
    context.record(
        "ciba.decided",
        "approved" if decision == "approve" else "denied",
        user_id=current_user.id,
        client_id=row.client_id,
        details={"request_id": row.id, "authorization_details": row.authorization_details},
    )
    if row.status == REDEEMED:  # push (CIBA §10.3): the tokens were issued with the decision
        context.record(
            "token.issued",
            user_id=row.user_id,
            client_id=row.client_id,
            details={
                "grant_type": GRANT_TYPE,
                "request_id": row.id,
                "delivery": "push",
                "authorization_details": row.authorization_details,
            },
        )
    context.commit()
    context.runtime().dispatcher.wake()
    announce_change()
    done = "denied" if row.status == "denied" else "approved"  # push: already redeemed
    return redirect(url_for("approvals.approvals", done=done, id=row.id))


def _sse(event: str, data: dict[str, Any], event_id: int) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n"


def _changes(user_id: str, cursor: int) -> list[BackchannelRequest]:
    with context.runtime().read_session_factory() as session:
        return list(
            session.scalars(
                select(BackchannelRequest)
                .where(
                    BackchannelRequest.user_id == user_id,
                    BackchannelRequest.changed_at_ms > cursor - OVERLAP_MS,
                )
                .order_by(BackchannelRequest.changed_at_ms)
            )
        )


def _events(user_id: str, cursor: int) -> Iterator[str]:
    seen: dict[str, str] = {}
    interval = context.runtime().settings.approval_stream_poll_interval
    started = last_beat = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() - started < STREAM_LIFETIME_SECONDS:
        version = changes.version  # taken before the read: a later change ends the wait at once
        for row in _changes(user_id, cursor):
            cursor = max(cursor, row.changed_at_ms)
            if seen.get(row.id) == row.status:
                continue
            seen[row.id] = row.status
            yield _event_for(row, cursor)
        if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
            last_beat = time.monotonic()
            yield ": keep-alive\n\n"
        # Never sleep past the next heartbeat: it keeps proxies from cutting the stream, and its
        # write is how a stream whose browser has gone away finds out and ends.
        next_beat = HEARTBEAT_SECONDS - (time.monotonic() - last_beat)
        changes.wait(version, max(0.0, min(interval, next_beat)))


def _event_for(row: BackchannelRequest, cursor: int) -> str:
    if row.status == PENDING and row.expires_at > now():
        with context.runtime().read_session_factory() as session:
            [card] = _cards(session, [row])
        html = render_template("_approval_card.html", card=card)
        return _sse("request", {"id": row.id, "html": html}, cursor)
    return _sse("decided", {"id": row.id, "status": row.status}, cursor)


@bp.get("/approvals/stream")
@login_required
def stream() -> Response:
    user_id = current_user.id
    since = request.headers.get("Last-Event-ID") or request.args.get("since") or ""
    valid = since.isascii() and since.isdigit() and len(since) < 16  # not '²': int() fails
    cursor = int(since) if valid else int(time.time() * 1000)
    generate_csrf()  # the cards' CSRF secret, saved with the response headers if new
    context.release_db()  # hold no transaction (and on SQLite no lock) while streaming
    if not stream_slots.take(user_id):
        busy = Response("Too many approval pages are open live; reload this one later.", 429)
        busy.headers["Retry-After"] = "30"
        busy.headers["Cache-Control"] = "no-store"
        return busy
    response = Response(stream_with_context(_events(user_id, cursor)), mimetype="text/event-stream")
    response.call_on_close(lambda: stream_slots.give_back(user_id))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
