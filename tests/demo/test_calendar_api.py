"""Mock calendar provider: the free/busy and events API as a bearer-token resource (RFC 6750)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.demo.conftest import CalendarFlow


def local_day(offset: int) -> datetime:
    """Local midnight ``offset`` days from today (the host zone, the provider's default)."""
    today = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return (today.replace(tzinfo=None) + timedelta(days=offset)).astimezone()


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(tzinfo=None, hour=hour, minute=minute).astimezone()


def busy_between(flow: CalendarFlow, token: str, start: datetime, end: datetime) -> list[Any]:
    reply = flow.api("/freebusy", token, start.isoformat(), end.isoformat())
    assert reply.status == 200, reply.text
    return reply.json()["busy"]


def test_freebusy_shows_busy_times_without_titles(calendar_flow: CalendarFlow) -> None:
    """Design, demo: alice is busy tomorrow 15:00-16:00 and free 09:00-10:00; no titles leak."""
    token = calendar_flow.tokens(scope="calendar.freebusy")["access_token"]
    tomorrow = local_day(1)
    reply = calendar_flow.api("/freebusy", token, tomorrow.isoformat(), local_day(2).isoformat())
    body = reply.json()
    assert "Dentist" not in reply.text and "title" not in reply.text
    assert {"start": at(tomorrow, 15).isoformat(), "end": at(tomorrow, 16).isoformat()} in body[
        "busy"
    ]
    assert busy_between(calendar_flow, token, at(tomorrow, 9), at(tomorrow, 10)) == []
    assert len(busy_between(calendar_flow, token, at(tomorrow, 15, 30), at(tomorrow, 17))) == 1
    assert body["timezone"] and reply.headers["Cache-Control"] == "no-store"


def test_events_need_read_scope_and_include_titles(calendar_flow: CalendarFlow) -> None:
    """Scopes: calendar.read lists events with titles; it also satisfies /freebusy."""
    token = calendar_flow.tokens(scope="calendar.read")["access_token"]
    reply = calendar_flow.api("/events", token, local_day(1).isoformat(), local_day(2).isoformat())
    assert reply.status == 200
    titles = [event["title"] for event in reply.json()["events"]]
    assert "Dentist" in titles
    assert busy_between(calendar_flow, token, local_day(1), local_day(2))


def test_freebusy_token_cannot_read_events(calendar_flow: CalendarFlow) -> None:
    """RFC 6750 §3.1: a token without calendar.read gets 403 insufficient_scope with scope=."""
    token = calendar_flow.tokens(scope="calendar.freebusy")["access_token"]
    reply = calendar_flow.api("/events", token, local_day(1).isoformat(), local_day(2).isoformat())
    assert reply.status == 403
    assert reply.json()["error"] == "insufficient_scope"
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge and 'scope="calendar.read"' in challenge


def test_each_user_sees_only_their_calendar(calendar_flow: CalendarFlow) -> None:
    """Token binding: the access token answers for the user who approved it."""
    bob = calendar_flow.tokens(scope="calendar.read", username="bob")["access_token"]
    reply = calendar_flow.api("/events", bob, local_day(1).isoformat(), local_day(2).isoformat())
    titles = {event["title"] for event in reply.json()["events"]}
    assert "Gym" in titles and "Dentist" not in titles


@pytest.mark.parametrize(
    ("headers", "status", "challenge"),
    [
        ({}, 401, 'Bearer realm="calendar"'),
        ({"Authorization": "Bearer not-a-token"}, 401, 'error="invalid_token"'),
        ({"Authorization": "Basic abc"}, 400, 'error="invalid_request"'),
        ({"Authorization": "Bearer "}, 400, 'error="invalid_request"'),
    ],
)
def test_bearer_errors(
    calendar_client: Any, headers: dict[str, str], status: int, challenge: str
) -> None:
    """RFC 6750 §3, §3.1: no token is a bare challenge; bad ones name invalid_request/token."""
    reply = calendar_client.get("/freebusy?start=2030-01-01&end=2030-01-02", headers=headers)
    assert reply.status_code == status
    assert challenge in reply.headers["WWW-Authenticate"]
    if not headers:
        assert "error=" not in reply.headers["WWW-Authenticate"]


def test_token_in_query_is_not_accepted(calendar_flow: CalendarFlow) -> None:
    """RFC 6750 §2.3 (not supported here): access_token in the URI is ignored."""
    token = calendar_flow.tokens()["access_token"]
    params = {"start": "2030-01-01", "end": "2030-01-02", "access_token": token}
    assert calendar_flow.get("/freebusy", params).status == 401


@pytest.mark.parametrize(
    ("start", "end", "description"),
    [
        ("yesterday", "2030-01-02", "start is not an ISO 8601 date-time"),
        ("2030-01-01", "", "end is required"),
        ("2030-01-02T10:00:00+00:00", "2030-01-02T09:00:00+00:00", "end must be after start"),
        ("2030-01-01", "2030-03-05", "at most 62 days"),
    ],
)
def test_range_is_validated(
    calendar_flow: CalendarFlow, start: str, end: str, description: str
) -> None:
    """API contract: malformed start/end, end before start, or > 62 days is 400 invalid_request."""
    token = calendar_flow.tokens()["access_token"]
    reply = calendar_flow.api("/freebusy", token, start, end)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"
    assert description in reply.json()["error_description"]


def test_62_day_range_is_allowed(calendar_flow: CalendarFlow) -> None:
    """API contract: exactly 62 days is within the limit."""
    token = calendar_flow.tokens()["access_token"]
    reply = calendar_flow.api(
        "/freebusy", token, local_day(0).isoformat(), local_day(62).isoformat()
    )
    assert reply.status == 200 and len(reply.json()["busy"]) >= 5
