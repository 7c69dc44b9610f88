"""Token vault end to end with the mock calendar: connect, federated token, free/busy."""

from __future__ import annotations

import time

import requests

from authserver.admin import TOKEN_EXCHANGE
from tests.support.calendar import connect_account, live_calendar, register_calendar
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import csrf_token
from tests.support.live import LiveBrowser, live_server

FEDERATED = "urn:authserver:token-type:federated-access-token"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
REDIRECT = "https://agent.example.com/callback"


def _user_token(server, agent):
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session(
        agent.client_id,
        agent.client_secret,
        scope="openid",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
    )
    verifier = "w" * 64
    url, _ = session.create_authorization_url(
        server.endpoint("authorization_endpoint"), code_verifier=verifier
    )
    callback = LiveBrowser(server.url, "alice", DEFAULT_PASSWORD).authorize(url)
    return session.fetch_token(
        server.endpoint("token_endpoint"), authorization_response=callback, code_verifier=verifier
    )["access_token"]


def _federated(server, agent, subject, scope=None):
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        "requested_token_type": FEDERATED,
        "connection": "calendar",
    }
    if scope:
        data["scope"] = scope
    return requests.post(
        server.endpoint("token_endpoint"), data=data, auth=agent.basic_auth, timeout=20
    )


def _signed_in(server_url):
    http = requests.Session()
    page = http.get(f"{server_url}/login", timeout=10).text
    http.post(
        f"{server_url}/login",
        timeout=10,
        data={"username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page)},
    )
    return http


def test_connect_then_federated_token_then_freebusy(app, migrated_database, tmp_path):
    """DESIGN token vault: connect once; the agent gets a short-lived upstream token, never the
    refresh token; expiry leads to exactly one upstream refresh; missing scopes → connect_uri."""
    with live_server(migrated_database) as server, live_calendar(server.url, tmp_path) as calendar:
        make_user(app, "alice")
        agent = make_client(
            app,
            "agent",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", TOKEN_EXCHANGE],
            scope="openid",
        )
        register_calendar(app, calendar.url, ["agent"])
        subject = _user_token(server, agent)
        missing = _federated(server, agent, subject)
        assert missing.status_code == 400
        assert missing.json()["error"] == "connection_required"
        assert missing.json()["reason"] == "not_connected"
        assert missing.json()["connect_uri"].startswith(f"{server.url}/connections/calendar/")
        browser = _signed_in(server.url)
        final = connect_account(browser, server.url)
        assert final.status_code == 200 and "Calendar" in final.text
        token = _federated(server, agent, subject)
        assert token.status_code == 200, token.text
        body = token.json()
        assert body["issued_token_type"] == FEDERATED and "refresh_token" not in body
        freebusy = requests.get(
            f"{calendar.url}/freebusy",
            timeout=10,
            params={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
            headers={"Authorization": f"Bearer {body['access_token']}"},
        )
        assert freebusy.status_code == 200, freebusy.text
        assert calendar.stats()["refresh_grants"] == 0
        calendar.expire_access_tokens()
        # The vault takes its clock as an argument: move it past the cached token's expiry.
        vault = server.runtime.vault
        vault.clock = lambda: time.time() + 7200
        try:
            refreshed = _federated(server, agent, subject)
        finally:
            vault.clock = time.time
        assert refreshed.status_code == 200, refreshed.text
        assert calendar.stats()["refresh_grants"] == 1
        wider = _federated(server, agent, subject, scope="calendar.read")
        assert wider.json()["reason"] == "missing_scopes"
        assert "calendar.read" in wider.json()["scope"]
