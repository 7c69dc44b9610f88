"""The SDK's federated tokens from the token vault, against the mock calendar provider.

Token exchange with `requested_token_type=urn:authserver:token-type:federated-access-token`
(DESIGN "Token vault"): `connection_required` is raised as the typed `ConnectionRequired`
interrupt carrying `connect_uri`; after the user connects, the upstream access token
works at the calendar API; an upstream failure is `TemporarilyUnavailable` (503).
"""

from __future__ import annotations

import time

import pytest
import requests

from demo_agent.sdk import ConnectionRequired, InvalidTarget, TemporarilyUnavailable
from tests.support.calendar import connect_account
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.flows import csrf_token

FEDERATED = "urn:authserver:token-type:federated-access-token"


def _signed_in_browser(issuer: str) -> requests.Session:
    """alice's own browser session at the authserver (for the connect flow)."""
    http = requests.Session()
    page = http.get(f"{issuer}/login", timeout=10).text
    form = {"username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page)}
    http.post(f"{issuer}/login", data=form, timeout=10)
    return http


def _freebusy(calendar_url: str, token: str) -> requests.Response:
    return requests.get(
        f"{calendar_url}/freebusy",
        params={"start": "2026-01-05T00:00:00+00:00", "end": "2026-01-06T00:00:00+00:00"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_connection_required_then_connect_then_token(scene):
    """Not connected → the interrupt with connect_uri; after connecting, a working token
    with no refresh token in the response."""
    client = scene.signed_in()
    with pytest.raises(ConnectionRequired) as raised:
        client.federated_token("calendar", "calendar.freebusy")
    needed = raised.value
    assert needed.error == "connection_required" and needed.status == 400
    assert needed.connection == "calendar" and needed.reason == "not_connected"
    assert needed.scope == "calendar.freebusy"
    assert (
        needed.connect_uri == f"{scene.issuer}/connections/calendar/connect?scope=calendar.freebusy"
    )
    final = connect_account(_signed_in_browser(scene.issuer), scene.issuer)
    assert final.status_code == 200
    tokens = client.federated_token("calendar", "calendar.freebusy")
    assert tokens.issued_token_type == FEDERATED
    assert tokens.refresh_token is None and "refresh_token" not in tokens.extra
    assert _freebusy(scene.calendar.url, tokens.access_token).status_code == 200
    assert tokens.access_token not in repr(tokens)


def test_missing_scope_is_an_interrupt_naming_it(scene):
    """A connected account without the asked scope: reason missing_scopes, scope named."""
    client = scene.signed_in()
    connect_account(_signed_in_browser(scene.issuer), scene.issuer)
    with pytest.raises(ConnectionRequired) as raised:
        client.federated_token("calendar", "calendar.read")
    assert raised.value.reason == "missing_scopes" and "calendar.read" in raised.value.scope
    assert "calendar.read" in raised.value.connect_uri


def test_upstream_failure_is_temporarily_unavailable(scene):
    """The upstream refresh fails: 503 `temporarily_unavailable`, never a stale token."""
    client = scene.signed_in()
    connect_account(_signed_in_browser(scene.issuer), scene.issuer)
    client.federated_token("calendar", "calendar.freebusy")
    vault = scene.server.runtime.vault
    scene.calendar.fault("server_error")
    vault.clock = lambda: time.time() + 7200  # the cached upstream token has expired
    try:
        with pytest.raises(TemporarilyUnavailable) as raised:
            client.federated_token("calendar", "calendar.freebusy")
    finally:
        vault.clock = time.time
        scene.calendar.fault("none")
    assert raised.value.error == "temporarily_unavailable" and raised.value.status == 503


def test_unknown_connection_is_invalid_target(scene):
    """A connection that does not exist (or this client may not use) is `invalid_target`."""
    client = scene.signed_in()
    with pytest.raises(InvalidTarget) as raised:
        client.federated_token("github", None)
    assert raised.value.error == "invalid_target"
