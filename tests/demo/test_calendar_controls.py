"""Mock calendar provider: test controls (CALENDAR_TEST_CONTROLS) and injected token faults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from demo_agent.calendar import create_app
from tests.demo.conftest import CalendarFlow, calendar_settings

RANGE = ("2030-01-01T00:00:00+00:00", "2030-01-02T00:00:00+00:00")


def set_faults(client: FlaskClient, **body: Any) -> None:
    reply = client.post("/_test/faults", json=body)
    assert reply.status_code == 200, reply.text


def test_controls_are_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test controls: without CALENDAR_TEST_CONTROLS every /_test route is 404."""
    monkeypatch.delenv("CALENDAR_TEST_CONTROLS", raising=False)
    settings = calendar_settings(tmp_path)
    del settings["TEST_CONTROLS"]
    app = create_app(settings)
    client = app.test_client()
    try:
        assert client.get("/_test/stats").status_code == 404
        assert client.get("/_test/faults").status_code == 404
        assert client.post("/_test/faults", json={"token": "server_error"}).status_code == 404
        assert client.post("/_test/expire-access-tokens").status_code == 404
    finally:
        app.extensions["calendar"].engine.dispose()


def test_stats_count_grants_and_revocations(
    calendar_flow: CalendarFlow, calendar_client: FlaskClient
) -> None:
    """Test controls: /_test/stats counts successful code and refresh grants and revocations."""
    tokens = calendar_flow.tokens()
    rotated = calendar_flow.refresh(tokens["refresh_token"]).json()
    calendar_flow.refresh(tokens["refresh_token"])  # reuse: refused, not counted as a grant
    calendar_flow.revoke(rotated["refresh_token"])
    stats = calendar_client.get("/_test/stats").json
    assert stats == {
        "code_grants": 1,
        "refresh_grants": 1,
        "refresh_attempts": 2,
        "revocations": 1,
    }


def test_server_error_fault(calendar_flow: CalendarFlow, calendar_client: FlaskClient) -> None:
    """Fault server_error: refresh answers 500 server_error and the token stays usable."""
    tokens = calendar_flow.tokens()
    set_faults(calendar_client, token="server_error")
    reply = calendar_flow.refresh(tokens["refresh_token"])
    assert reply.status == 500 and reply.json()["error"] == "server_error"
    set_faults(calendar_client, token="none")
    assert calendar_flow.refresh(tokens["refresh_token"]).status == 200


def test_hang_fault(calendar_flow: CalendarFlow, calendar_client: FlaskClient) -> None:
    """Fault hang: refresh sleeps hang_seconds, then fails without touching the token."""
    tokens = calendar_flow.tokens()
    set_faults(calendar_client, token="hang", hang_seconds=0.3)
    started = time.monotonic()
    reply = calendar_flow.refresh(tokens["refresh_token"])
    assert time.monotonic() - started >= 0.3
    assert reply.status == 500
    set_faults(calendar_client)
    assert calendar_flow.refresh(tokens["refresh_token"]).status == 200


def test_delay_seconds_slows_normal_answers(
    calendar_flow: CalendarFlow, calendar_client: FlaskClient
) -> None:
    """Fault delay_seconds: refresh answers normally, only later."""
    tokens = calendar_flow.tokens()
    set_faults(calendar_client, delay_seconds=0.2)
    started = time.monotonic()
    assert calendar_flow.refresh(tokens["refresh_token"]).status == 200
    assert time.monotonic() - started >= 0.2


def test_omit_refresh_token_fault(
    calendar_flow: CalendarFlow, calendar_client: FlaskClient
) -> None:
    """Fault omit_refresh_token: access token only, and the old refresh token stays valid."""
    tokens = calendar_flow.tokens()
    set_faults(calendar_client, token="omit_refresh_token")
    first = calendar_flow.refresh(tokens["refresh_token"]).json()
    second = calendar_flow.refresh(tokens["refresh_token"]).json()
    assert "refresh_token" not in first and "refresh_token" not in second
    assert calendar_flow.api("/freebusy", first["access_token"], *RANGE).status == 200
    set_faults(calendar_client)
    assert calendar_flow.refresh(tokens["refresh_token"]).json()["refresh_token"]


def test_invalid_grant_fault(calendar_flow: CalendarFlow, calendar_client: FlaskClient) -> None:
    """Fault invalid_grant: refresh answers 400 invalid_grant; the grant itself is untouched."""
    tokens = calendar_flow.tokens()
    set_faults(calendar_client, token="invalid_grant")
    reply = calendar_flow.refresh(tokens["refresh_token"])
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant"
    set_faults(calendar_client)
    assert calendar_flow.refresh(tokens["refresh_token"]).status == 200


def test_faults_do_not_touch_code_grants(
    calendar_flow: CalendarFlow, calendar_client: FlaskClient
) -> None:
    """Fault scope: only refresh grants are affected, so a user can still connect."""
    set_faults(calendar_client, token="server_error")
    assert calendar_flow.tokens()["access_token"]
    assert calendar_client.get("/_test/faults").json["token"] == "server_error"


def test_expire_access_tokens(calendar_flow: CalendarFlow, calendar_client: FlaskClient) -> None:
    """Test control: every access token expires at once; refresh still works."""
    tokens = calendar_flow.tokens()
    reply = calendar_client.post("/_test/expire-access-tokens")
    assert reply.status_code == 200 and reply.json["expired"] == 1
    api = calendar_flow.api("/freebusy", tokens["access_token"], *RANGE)
    assert api.status == 401 and api.json()["error"] == "invalid_token"
    fresh = calendar_flow.refresh(tokens["refresh_token"]).json()
    assert calendar_flow.api("/freebusy", fresh["access_token"], *RANGE).status == 200


@pytest.mark.parametrize(
    "body",
    [{"token": "explode"}, {"token": "hang", "hang_seconds": -1}, {"hang_seconds": "1"}, []],
)
def test_bad_fault_requests_change_nothing(calendar_client: FlaskClient, body: Any) -> None:
    """Test controls: an invalid fault request is 400 and leaves the current mode."""
    reply = calendar_client.post("/_test/faults", json=body)
    assert reply.status_code == 400 and reply.json["error"] == "invalid_request"
    assert calendar_client.get("/_test/faults").json["token"] == "none"
