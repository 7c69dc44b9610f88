"""The SDK's CIBA client against the live authserver, with the approval page and broker.

CIBA Core 1.0 §7.1 (request), §7.3 (auth_req_id, expires_in, interval), §10.1 (poll),
§10.2 (ping), §11 (authorization_pending, slow_down, access_denied, expired_token), with
an RFC 9396 `trade` entry that the broker checks before placing the order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from authserver.admin import CIBA
from authserver.models import BackchannelRequest
from demo_agent.sdk import (
    AccessDenied,
    AuthClient,
    ExpiredToken,
    InvalidAuthorizationDetails,
    InvalidBindingMessage,
    UnknownUserId,
)
from tests.support.db import count, issued_counts
from tests.support.factories import make_client
from tests.support.live import free_port

TRADE = {
    "type": "trade",
    "side": "buy",
    "symbol": "NET",
    "quantity": 10,
    "limit_price": 120.0,
    "currency": "USD",
}
ORDER = {"side": "buy", "symbol": "NET", "quantity": 10, "limit_price": 120.0, "currency": "USD"}


def _decide_soon(scene, decision: str, delay: float = 1.5) -> threading.Thread:
    """The user decides on /approvals in their own browser session, a moment later."""
    approver = scene.approver()

    def decide() -> None:
        time.sleep(delay)
        for _ in range(100):
            ids = approver.pending_ids()
            if ids:
                approver.decide(ids[0], decision)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=decide, daemon=True)
    thread.start()
    return thread


def test_approved_trade_places_the_order(scene):
    """§10.1: polling respects `interval` until tokens; the token carries exactly the
    approved `authorization_details` and places that order at the broker."""
    client = scene.signed_in()
    pending = client.request_approval("alice", "openid", "NET-4821", [TRADE])
    assert pending.interval == 1 and 0 < pending.expires_in <= 300
    secret_id = pending._auth_req_id
    assert secret_id not in repr(pending) and "NET-4821" in repr(pending)
    waited: list[int] = []
    decider = _decide_soon(scene, "approve", delay=2.5)
    tokens = client.wait_for_approval(pending, on_waiting=lambda p: waited.append(p.polls))
    decider.join(5)
    assert waited, "on_waiting runs while the user has not decided"
    assert tokens.authorization_details == [TRADE]
    response = requests.post(
        f"{scene.broker.url}/orders",
        json=ORDER,
        headers={"Authorization": f"Bearer {tokens.access_token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def test_denied_request_raises_access_denied(scene):
    """§11: `access_denied` after the user says no; no token is issued."""
    client = scene.signed_in()
    pending = client.request_approval("alice", "openid", "NET-1111", [TRADE])
    before = issued_counts(scene.server.app)
    _decide_soon(scene, "deny", delay=0.2).join(10)
    with pytest.raises(AccessDenied) as raised:
        client.wait_for_approval(pending)
    assert raised.value.error == "access_denied"
    assert issued_counts(scene.server.app) == before


def test_slow_down_adds_five_seconds_to_the_interval(scene):
    """§11 / RFC 8628 §3.5: after `slow_down` the client waits interval + 5 seconds."""
    sleeps: list[float] = []
    approver = scene.approver()

    def sleep(seconds: float) -> None:  # never waits: polls too fast on purpose
        sleeps.append(seconds)
        if len(sleeps) == 3:
            approver.decide(approver.pending_ids()[0], "approve")

    client = scene.signed_in(sleep=sleep)
    pending = client.request_approval("alice", "openid", "NET-2222", [TRADE])
    tokens = client.wait_for_approval(pending)
    assert sleeps == [1, 1, 6] and pending.interval == 6
    assert tokens.authorization_details == [TRADE]


def test_expired_request_raises_expired_token(scene):
    """§11: a request nobody decided on within `requested_expiry` is `expired_token`."""
    client = scene.signed_in()
    pending = client.request_approval("alice", "openid", "NET-3333", [TRADE], requested_expiry=1)
    assert pending.expires_in == 1
    with pytest.raises(ExpiredToken) as raised:
        client.wait_for_approval(pending)
    assert raised.value.error == "expired_token"


def test_ping_mode_waits_for_the_callback(scene):
    """§10.2: a ping client listens on its notification endpoint and redeems once pinged."""
    endpoint = f"http://127.0.0.1:{free_port()}/ciba/ping"
    agent = make_client(
        scene.server.app,
        "ping-agent",
        grant_types=[CIBA],
        redirect_uris=[],
        scope="openid",
        backchannel_mode="ping",
        backchannel_endpoint=endpoint,
    )
    client = AuthClient(
        scene.issuer,
        agent.client_id,
        agent.client_secret,
        ciba_mode="ping",
        notification_endpoint=endpoint,
    )
    scene.clients.append(client)
    pending = client.request_approval("alice", "openid", "NET-4444", [TRADE])
    assert pending._notification_token and pending._notification_token not in repr(pending)
    _decide_soon(scene, "approve", delay=0.5)
    started = time.monotonic()
    tokens = client.wait_for_approval(pending)
    assert tokens.authorization_details == [TRADE]
    assert pending.polls == 1, "one token request, after the ping"
    assert time.monotonic() - started < 5


def _ping(endpoint: str, bearer: str, auth_req_id: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"}
    return requests.post(endpoint, json={"auth_req_id": auth_req_id}, headers=headers, timeout=5)


def test_ping_receiver_refuses_a_wrong_bearer(scene):
    """§10.2: the ping must carry the client_notification_token sent with the request."""
    endpoint = f"http://127.0.0.1:{free_port()}/ciba/ping"
    client = AuthClient(scene.issuer, "x", "y", ciba_mode="ping", notification_endpoint=endpoint)
    scene.clients.append(client)
    receiver = client.ciba.ping_receiver()
    receiver.expect("right-token", "req-1")
    wrong = _ping(endpoint, "wrong", "req-1")
    other = _ping(endpoint, "right-token", "req-2")
    assert wrong.status_code == 401 and other.status_code == 401
    assert not receiver.wait("right-token", 0)
    good = _ping(endpoint, "right-token", "req-1")
    assert good.status_code == 204 and receiver.wait("right-token", 0)


def test_ping_receiver_survives_malformed_pings(scene):
    """Anyone on the machine can post to the ping port: a non-ASCII bearer is a 401 (a
    constant-time compare of str raised TypeError), a Content-Length that is negative, not
    a number or too large is a 400 with nothing read, and the real ping still works."""
    endpoint = f"http://127.0.0.1:{free_port()}/ciba/ping"
    client = AuthClient(scene.issuer, "x", "y", ciba_mode="ping", notification_endpoint=endpoint)
    scene.clients.append(client)
    receiver = client.ciba.ping_receiver()
    receiver.expect("right-token", "req-1")
    assert _ping(endpoint, "right-token", "r\u00e9q-1").status_code == 401
    accented = requests.post(
        endpoint,
        data=json.dumps({"auth_req_id": "req-1"}).encode(),
        headers={"Authorization": "Bearer t\u00f6ken".encode("latin-1")},
        timeout=5,
    )
    assert accented.status_code == 401
    for length in ("-1", "ten", str(10**9)):
        with socket.create_connection(("127.0.0.1", urlsplit(endpoint).port), timeout=5) as raw:
            raw.sendall(
                f"POST /ciba/ping HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                "Authorization: Bearer right-token\r\n\r\n".encode()
            )
            assert raw.recv(64).startswith(b"HTTP/1.0 400"), length
    assert not receiver.wait("right-token", 0)
    assert _ping(endpoint, "right-token", "req-1").status_code == 204


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"login_hint": "nobody"}, UnknownUserId, "unknown_user_id"),
        ({"binding_message": "x" * 129}, InvalidBindingMessage, "invalid_binding_message"),
        (
            {"authorization_details": [{**TRADE, "quantity": -1}]},
            InvalidAuthorizationDetails,
            "invalid_authorization_details",
        ),
    ],
)
def test_refused_requests_are_typed_and_change_nothing(scene, kwargs, error, code):
    """CIBA Core §13 and RFC 9396 §5: each refusal is its own exception with the RFC code."""
    client = scene.client()
    arguments = {
        "login_hint": "alice",
        "scope": "openid",
        "binding_message": "NET-5555",
        "authorization_details": [TRADE],
    } | kwargs
    before = count(scene.server.app, BackchannelRequest)
    with pytest.raises(error) as raised:
        client.request_approval(**arguments)
    assert raised.value.error == code and raised.value.status == 400
    assert count(scene.server.app, BackchannelRequest) == before
