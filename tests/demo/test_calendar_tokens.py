"""Mock calendar provider: client authentication, refresh rotation, revocation, storage.

RFC 6749 §2.3.1, §5.2, §6; RFC 7009; RFC 9700 §4.14.2 (refresh token rotation
with reuse detection).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from demo_agent.calendar import create_app, token_endpoint
from demo_agent.calendar.models import Base
from tests.demo.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_SECRET,
    CalendarFlow,
    FlaskHttp,
    basic,
    calendar_settings,
)

RANGE = ("2030-01-01T00:00:00+00:00", "2030-01-02T00:00:00+00:00")


def freebusy_status(flow: CalendarFlow, access_token: str) -> int:
    return flow.api("/freebusy", access_token, *RANGE).status


def test_refresh_rotates_and_old_token_is_rejected(calendar_flow: CalendarFlow) -> None:
    """RFC 9700 §4.14.2: each refresh returns a new refresh token and consumes the old one."""
    first = calendar_flow.tokens()
    reply = calendar_flow.refresh(first["refresh_token"])
    assert reply.status == 200
    second = reply.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == "calendar.freebusy" and second["token_type"] == "Bearer"
    again = calendar_flow.refresh(first["refresh_token"])
    assert again.status == 400
    assert again.json()["error"] == "invalid_grant"


def test_refresh_reuse_revokes_the_whole_family(calendar_flow: CalendarFlow) -> None:
    """RFC 9700 §4.14.2: replaying a used refresh token kills the newest one and its access."""
    first = calendar_flow.tokens()
    second = calendar_flow.refresh(first["refresh_token"]).json()
    assert calendar_flow.refresh(first["refresh_token"]).status == 400
    dead = calendar_flow.refresh(second["refresh_token"])
    assert dead.json() == {
        "error": "invalid_grant",
        "error_description": "the refresh token has been revoked",
    }
    assert freebusy_status(calendar_flow, second["access_token"]) == 401


def test_other_grants_survive_reuse_detection(calendar_flow: CalendarFlow) -> None:
    """RFC 9700 §4.14.2: only the replayed token's family is revoked."""
    victim, bystander = calendar_flow.tokens(), calendar_flow.tokens(username="bob")
    calendar_flow.refresh(victim["refresh_token"])
    calendar_flow.refresh(victim["refresh_token"])
    assert calendar_flow.refresh(bystander["refresh_token"]).status == 200


def test_refresh_may_narrow_but_not_widen_scope(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §6: a refresh may request a subset of the granted scope, never more."""
    tokens = calendar_flow.tokens(scope="calendar.freebusy calendar.read")
    narrowed = calendar_flow.refresh(tokens["refresh_token"], scope="calendar.freebusy").json()
    assert narrowed["scope"] == "calendar.freebusy"
    assert calendar_flow.api("/events", narrowed["access_token"], *RANGE).status == 403
    narrow_only = calendar_flow.tokens(scope="calendar.freebusy")
    wider = calendar_flow.refresh(narrow_only["refresh_token"], scope="calendar.read")
    assert wider.status == 400 and wider.json()["error"] == "invalid_scope"
    assert calendar_flow.refresh(narrow_only["refresh_token"]).status == 200


def test_refresh_token_is_bound_to_its_client(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §6: the refresh token was issued to the authenticated client, else invalid_grant."""
    tokens = calendar_flow.tokens()
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    other = calendar_flow.post("/token", form, headers=basic(OTHER_CLIENT_ID, OTHER_SECRET))
    assert other.status == 400 and other.json()["error"] == "invalid_grant"
    assert calendar_flow.refresh(tokens["refresh_token"]).status == 200


def test_client_secret_post_is_accepted(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §2.3.1: client_id and client_secret in the request body."""
    tokens = calendar_flow.tokens()
    form = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert calendar_flow.post("/token", form).status == 200


def test_basic_credentials_are_form_urlencoded(tmp_path: Path) -> None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding."""
    clients = [{"client_id": "a b", "client_secret": "p:w+d", "redirect_uris": ["http://x/cb"]}]
    app = create_app(calendar_settings(tmp_path, CLIENTS=clients))
    encoded = base64.b64encode(b"a+b:p%3Aw%2Bd").decode()
    reply = app.test_client().post(
        "/revoke", data={"token": "t"}, headers={"Authorization": f"Basic {encoded}"}
    )
    app.extensions["calendar"].engine.dispose()
    assert reply.status_code == 200


@pytest.mark.parametrize(
    ("headers", "form"),
    [
        (basic(CLIENT_ID, "wrong"), {}),
        (basic("nobody", CLIENT_SECRET), {}),
        ({"Authorization": "Basic !!!"}, {}),
        ({}, {"client_id": CLIENT_ID, "client_secret": "wrong"}),
        ({}, {"client_id": CLIENT_ID}),
        ({}, {}),
    ],
)
def test_failed_client_authentication_is_401(
    calendar_flow: CalendarFlow, headers: dict[str, str], form: dict[str, str]
) -> None:
    """RFC 6749 §5.2: invalid_client is 401 with WWW-Authenticate naming Basic."""
    data = {"grant_type": "refresh_token", "refresh_token": "x", **form}
    reply = calendar_flow.post("/token", data, headers=headers)
    assert reply.status == 401
    assert reply.json()["error"] == "invalid_client"
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="calendar"'


def test_two_authentication_methods_are_refused(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §2.3: a client must not use more than one authentication method."""
    form = {"grant_type": "refresh_token", "refresh_token": "x", "client_secret": CLIENT_SECRET}
    reply = calendar_flow.post("/token", form, headers=basic())
    assert reply.status == 400 and reply.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password", "username": "alice"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
    ],
)
def test_token_request_errors(
    calendar_flow: CalendarFlow, form: dict[str, str], error: str
) -> None:
    """RFC 6749 §5.2: unsupported or incomplete grants get the matching error code."""
    reply = calendar_flow.post("/token", form, headers=basic())
    assert reply.status == 400
    body = reply.json()
    assert body["error"] == error and body["error_description"]


def test_repeated_parameters_are_refused(calendar_client: Any) -> None:
    """RFC 6749 §3.2: request parameters must not be included more than once."""
    body = "grant_type=refresh_token&refresh_token=a&refresh_token=b"
    reply = calendar_client.post(
        "/token",
        data=body,
        headers={**basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 400
    assert reply.json["error"] == "invalid_request"
    assert "refresh_token" in reply.json["error_description"]


def test_json_body_is_refused(calendar_client: Any) -> None:
    """RFC 6749 §3.2: the token endpoint takes application/x-www-form-urlencoded."""
    reply = calendar_client.post("/token", json={"grant_type": "refresh_token"}, headers=basic())
    assert reply.status_code == 400 and reply.json["error"] == "invalid_request"


def test_revoking_a_refresh_token_revokes_its_family(calendar_flow: CalendarFlow) -> None:
    """RFC 7009 §2.1: revoking a refresh token also invalidates its access tokens."""
    tokens = calendar_flow.tokens()
    reply = calendar_flow.revoke(tokens["refresh_token"], token_type_hint="refresh_token")
    assert reply.status == 200 and reply.text == ""
    assert calendar_flow.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert freebusy_status(calendar_flow, tokens["access_token"]) == 401


def test_revoking_an_access_token_revokes_only_it(calendar_flow: CalendarFlow) -> None:
    """RFC 7009 §2.1: an access token is revoked alone; the grant stays usable."""
    tokens = calendar_flow.tokens()
    assert calendar_flow.revoke(tokens["access_token"]).status == 200
    assert freebusy_status(calendar_flow, tokens["access_token"]) == 401
    fresh = calendar_flow.refresh(tokens["refresh_token"]).json()
    assert freebusy_status(calendar_flow, fresh["access_token"]) == 200


def test_revoking_unknown_or_foreign_tokens_is_200(calendar_flow: CalendarFlow) -> None:
    """RFC 7009 §2.2: unknown tokens answer 200; another client's token is left alone."""
    assert calendar_flow.revoke("no-such-token").status == 200
    tokens = calendar_flow.tokens()
    foreign = calendar_flow.post(
        "/revoke", {"token": tokens["refresh_token"]}, headers=basic(OTHER_CLIENT_ID, OTHER_SECRET)
    )
    assert foreign.status == 200
    assert calendar_flow.refresh(tokens["refresh_token"]).status == 200


def test_revocation_requires_client_authentication(calendar_flow: CalendarFlow) -> None:
    """RFC 7009 §2.1: the client authenticates; a missing token is invalid_request."""
    tokens = calendar_flow.tokens()
    reply = calendar_flow.post("/revoke", {"token": tokens["refresh_token"]})
    assert reply.status == 401 and reply.json()["error"] == "invalid_client"
    assert calendar_flow.post("/revoke", {}, headers=basic()).json()["error"] == "invalid_request"
    assert calendar_flow.refresh(tokens["refresh_token"]).status == 200


def test_access_token_expires(calendar_flow: CalendarFlow, calendar_app: Flask) -> None:
    """RFC 6749 §5.1 expires_in: after it, the API answers invalid_token."""
    tokens = calendar_flow.tokens()
    state = calendar_app.extensions["calendar"]
    real = state.clock
    state.clock = lambda: real() + tokens["expires_in"] + 1
    assert freebusy_status(calendar_flow, tokens["access_token"]) == 401


def test_only_digests_are_stored(calendar_flow: CalendarFlow, calendar_app: Flask) -> None:
    """Design, Tokens: codes, access and refresh tokens are stored only as SHA-256 digests."""
    code, verifier = calendar_flow.code()
    tokens = calendar_flow.exchange(code, verifier).json()
    rotated = calendar_flow.refresh(tokens["refresh_token"]).json()
    secrets_seen = {code, tokens["access_token"], tokens["refresh_token"], rotated["refresh_token"]}
    with calendar_app.extensions["calendar"].engine.connect() as conn:
        dump = [
            str(row)
            for table in Base.metadata.sorted_tables
            for row in conn.execute(text(f"SELECT * FROM {table.name}"))  # noqa: S608
        ]
    assert not [value for value in secrets_seen if any(value in row for row in dump)]


def test_nothing_secret_is_logged(calendar_flow: CalendarFlow, caplog: Any) -> None:
    """Style, Errors: never log a token, secret or code."""
    caplog.set_level(logging.DEBUG)
    code, verifier = calendar_flow.code()
    tokens = calendar_flow.exchange(code, verifier).json()
    rotated = calendar_flow.refresh(tokens["refresh_token"]).json()
    calendar_flow.refresh(tokens["refresh_token"])
    calendar_flow.revoke(rotated["refresh_token"])
    for value in (code, verifier, tokens["access_token"], tokens["refresh_token"], CLIENT_SECRET):
        assert value not in caplog.text


def test_grants_survive_a_restart(tmp_path: Path) -> None:
    """Design, Processes: all state is in the database, so a restarted mock keeps connections."""
    first = create_app(calendar_settings(tmp_path))
    tokens = CalendarFlow(FlaskHttp(first.test_client())).tokens()
    first.extensions["calendar"].engine.dispose()
    second = create_app(calendar_settings(tmp_path, SECRET_KEY="another-key"))
    flow = CalendarFlow(FlaskHttp(second.test_client()))
    try:
        assert freebusy_status(flow, tokens["access_token"]) == 200
        assert flow.refresh(tokens["refresh_token"]).status == 200
    finally:
        second.extensions["calendar"].engine.dispose()


def test_unexpected_errors_are_generic_server_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Style, Errors: a 5xx says server_error, the detail goes only to the log."""

    def broken(*_: Any) -> Any:
        raise RuntimeError("database exploded at row 42")

    monkeypatch.setitem(token_endpoint.GRANTS, "refresh_token", broken)
    app = create_app(calendar_settings(tmp_path, TESTING=False))
    try:
        form = {"grant_type": "refresh_token", "refresh_token": "x"}
        reply = app.test_client().post("/token", data=form, headers=basic())
    finally:
        app.extensions["calendar"].engine.dispose()
    assert reply.status_code == 500
    assert reply.json == {"error": "server_error", "error_description": "internal error"}
    assert "database exploded" in caplog.text
