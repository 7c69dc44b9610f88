"""The calendar API, a protected resource using bearer tokens (RFC 6750).

``GET /freebusy`` needs ``calendar.freebusy`` (or ``calendar.read``) and answers
busy intervals without titles; ``GET /events`` needs ``calendar.read``. Both take
``start`` and ``end`` as ISO 8601 date-times, at most 62 days apart. Tokens are
accepted only in the Authorization header (§2.1); errors follow §3.1.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from . import scopes
from .db import transaction
from .errors import InsufficientScope, InvalidBearerRequest, InvalidToken, MissingToken
from .models import AccessToken, Event
from .schedule import Occurrence, RangeError, occurrences, parse_range, zone_name
from .state import state
from .tokens import active_access_token

bp = Blueprint("api", __name__)


def bearer_value() -> str:
    """§2.1: ``Authorization: Bearer <token>``; nothing else is accepted."""
    header = request.headers.get("Authorization")
    if not header:
        raise MissingToken("an access token is required")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidBearerRequest("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def authorize(accepted: set[str], required: str) -> AccessToken:
    """The valid access token carrying one of ``accepted``, else a §3.1 error."""
    value = bearer_value()
    with transaction() as db:
        token = active_access_token(db, value, state().now())
    if token is None:
        raise InvalidToken("the access token is invalid, expired or revoked")
    if not accepted & set(token.scope.split()):
        raise InsufficientScope(f"this request needs the {required} scope", required)
    return token


def _query(token: AccessToken) -> tuple[datetime, datetime, list[Occurrence]]:
    st = state()
    try:
        start, end = parse_range(request.args.get("start"), request.args.get("end"), st.tz)
    except RangeError as exc:
        raise InvalidBearerRequest(str(exc)) from exc
    today = datetime.fromtimestamp(st.now(), st.tz).date()
    with transaction() as db:
        events = list(db.scalars(select(Event).where(Event.user_id == token.user_id)))
    return start, end, occurrences(events, start, end, today, st.tz)


def merge(found: list[Occurrence]) -> list[dict[str, str]]:
    """Busy intervals with overlapping or touching events merged, titles dropped."""
    merged: list[list[datetime]] = []
    for item in found:
        if merged and item.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], item.end)
        else:
            merged.append([item.start, item.end])
    return [{"start": s.isoformat(), "end": e.isoformat()} for s, e in merged]


def _answer(body: dict[str, Any], start: datetime, end: datetime) -> ResponseReturnValue:
    body |= {"timezone": zone_name(state().tz, start), "start": start.isoformat()}
    body["end"] = end.isoformat()
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/freebusy")
def freebusy() -> ResponseReturnValue:
    token = authorize({scopes.FREEBUSY, scopes.READ}, scopes.FREEBUSY)
    start, end, found = _query(token)
    return _answer({"busy": merge(found)}, start, end)


@bp.get("/events")
def events() -> ResponseReturnValue:
    token = authorize({scopes.READ}, scopes.READ)
    start, end, found = _query(token)
    listed = [
        {"title": o.title, "start": o.start.isoformat(), "end": o.end.isoformat()} for o in found
    ]
    return _answer({"events": listed}, start, end)
