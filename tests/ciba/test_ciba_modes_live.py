"""CIBA Core 1.0 in each token delivery mode, over real HTTP on loopback, with RFC 9396.

An agent asks for approval of a trade at /bc-authorize; the person approves (or
denies) on /approvals in a browser session of their own; the agent gets the token by
polling (§7.3, §10.1, §11), after a ping (§10.2) or by push (§10.3), verifies it
against /jwks.json and places the order at the real mock broker (demo_agent.broker),
which checks the token's `authorization_details` (RFC 9396 §7).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from authserver.admin import create_resource
from authserver.db import transaction
from authserver.models import AccessTokenRecord
from tests.support.apps import reset_database
from tests.support.ciba_live import (
    ApprovalBrowser,
    broker_orders,
    live_broker,
    verify_jwt,
)
from tests.support.db import audit_events, count
from tests.support.factories import DEFAULT_PASSWORD, ClientInfo, make_user
from tests.support.live import LiveServer, live_server
from tests.support.receiver import NotificationReceiver

from .conftest import TRADE, TRADE_TYPE, make_ciba_client

CIBA = "urn:openid:params:grant-type:ciba"
AUTH_REQ_ID_CLAIM = "urn:openid:params:jwt:claim:auth_req_id"
ORDER = {"side": "buy", "symbol": "NET", "quantity": 10, "limit_price": 120.0}
PROMPT_SECONDS = 3.0


@pytest.fixture(scope="module")
def server(migrated_database):
    """The authserver with a 1 s CIBA interval and its outbox dispatcher running."""
    with live_server(migrated_database, ciba_interval=1, notification_poll_interval=0.05) as up:
        try:
            yield up
        finally:
            up.runtime.dispatcher.stop()


@pytest.fixture(scope="module")
def receiver():
    with NotificationReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def broker(server, tmp_path_factory):
    database = tmp_path_factory.mktemp("broker") / "broker.db"
    with live_broker(server.url, f"sqlite:///{database}") as running:
        yield running


@dataclass
class Scene:
    server: LiveServer
    broker_url: str
    broker_app: Any
    receiver: NotificationReceiver

    @property
    def app(self) -> Any:
        return self.server.app

    def endpoint(self, name: str) -> str:
        return self.server.endpoint(name)


@pytest.fixture
def scene(server, broker, receiver):
    """Fresh rows; the broker registered under its real URL with the `trade` type; alice."""
    reset_database(server.app)
    receiver.reset()
    broker_url, broker_app = broker
    with transaction(server.runtime.session_factory) as session:
        create_resource(
            session,
            identifier=broker_url,
            name="Broker",
            scopes=["portfolio:read"],
            detail_types=[TRADE_TYPE],
        )
    make_user(server.app, "alice")
    return Scene(server, broker_url, broker_app, receiver)


def agent_for(scene: Scene, mode: str) -> ClientInfo:
    endpoint = None if mode == "poll" else f"{scene.receiver.url}/ciba/{mode}"
    return make_ciba_client(scene.app, f"agent-{mode}", mode, endpoint)


def ask(scene: Scene, agent: ClientInfo, **extra: str) -> dict[str, Any]:
    """CIBA §7.1: the agent's authentication request for one trade, found via discovery."""
    data = {
        "scope": "openid",
        "login_hint": "alice",
        "binding_message": "ORDER-42",
        "authorization_details": json.dumps([TRADE]),
        **extra,
    }
    response = requests.post(
        scene.endpoint("backchannel_authentication_endpoint"),
        data=data,
        auth=agent.basic_auth,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"auth_req_id", "expires_in", "interval"}
    assert body["interval"] == 1
    return body


def redeem(scene: Scene, agent: ClientInfo, auth_req_id: str) -> requests.Response:
    return requests.post(
        scene.endpoint("token_endpoint"),
        data={"grant_type": CIBA, "auth_req_id": auth_req_id},
        auth=agent.basic_auth,
        timeout=10,
    )


def poll_until_decided(
    scene: Scene, agent: ClientInfo, started: dict[str, Any], limit: float = 15.0
) -> requests.Response:
    """CIBA §7.3: wait `interval` between polls; never provoke slow_down."""
    deadline = time.monotonic() + limit
    while True:
        response = redeem(scene, agent, started["auth_req_id"])
        error = response.json().get("error")
        assert error != "slow_down", "the agent respected the interval"
        if error != "authorization_pending":
            return response
        assert time.monotonic() < deadline, "the request was never decided"
        time.sleep(started["interval"])


def approve_as_alice(scene: Scene, decision: str = "approve") -> str:
    """Another cookie jar: alice signs in, sees exactly one card, and decides it."""
    alice = ApprovalBrowser(scene.server.url, "alice", DEFAULT_PASSWORD)
    alice.sign_in()
    page = alice.page()
    assert "ORDER-42" in page and "buy 10 NET at no more than 120.00 USD" in page
    [request_id] = alice.pending_ids()
    response = alice.decide(request_id, decision)
    assert response.status_code == 302, response.text[:300]
    assert alice.pending_ids() == []
    return request_id


def check_access_token(scene: Scene, agent: ClientInfo, token: str) -> dict[str, Any]:
    """RFC 9068 §4 with PyJWT and the JWKS; exactly the approved details (RFC 9396 §7)."""
    claims = verify_jwt(
        scene.server.url, token, audience=scene.broker_url, algorithms=["ES256"], typ="at+jwt"
    )
    assert claims["client_id"] == agent.client_id
    assert claims["authorization_details"] == [TRADE]
    assert claims["exp"] - claims["iat"] == 300
    return claims


def check_id_token(scene: Scene, agent: ClientInfo, token: str) -> dict[str, Any]:
    return verify_jwt(
        scene.server.url, token, audience=agent.client_id, algorithms=["RS256"], typ="JWT"
    )


def place_order(scene: Scene, access_token: str, order: dict[str, Any] = ORDER) -> Any:
    return requests.post(
        f"{scene.broker_url}/orders",
        json=order,
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def assert_issuance_audited(scene: Scene, agent: ClientInfo, request_id: str) -> None:
    """DESIGN "Audit": every token issued is an audit row, whichever mode delivered it."""
    [issued] = audit_events(scene.app, "token.issued")
    assert issued.client_id == agent.client_id and issued.outcome == "success"
    assert issued.details["grant_type"] == CIBA and issued.details["request_id"] == request_id
    assert issued.details["authorization_details"] == [TRADE]


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def test_poll_mode_approved_then_order_placed(scene):
    """§7.3, §11: authorization_pending until the user approves, tokens at the next poll;
    the broker accepts the trade the token carries (RFC 9396 §7) exactly once."""
    agent = agent_for(scene, "poll")
    started = ask(scene, agent)
    first = redeem(scene, agent, started["auth_req_id"])
    assert (first.status_code, first.json()["error"]) == (400, "authorization_pending")
    request_id = approve_as_alice(scene)
    time.sleep(started["interval"])
    tokens = poll_until_decided(scene, agent, started)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"].lower() == "bearer" and "refresh_token" not in body
    assert body["authorization_details"] == [TRADE]
    claims = check_access_token(scene, agent, body["access_token"])
    id_claims = check_id_token(scene, agent, body["id_token"])
    assert id_claims["sub"] == claims["sub"]
    placed = place_order(scene, body["access_token"])
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "filled"
    [order] = [o for o in broker_orders(scene.broker_app) if o.jti == claims["jti"]]
    assert order.approval == TRADE
    assert_issuance_audited(scene, agent, request_id)


def test_ping_mode_notifies_then_agent_redeems(scene):
    """§10.2: POST {auth_req_id} with `Bearer <client_notification_token>` promptly after the
    decision; the agent then redeems at the token endpoint (§10.1) and trades."""
    agent = agent_for(scene, "ping")
    notification_token = "ping-" + "x" * 40
    started = ask(scene, agent, client_notification_token=notification_token)
    time.sleep(0.3)
    assert scene.receiver.deliveries == [], "nothing is sent before the user decides"
    approve_as_alice(scene)
    decided = time.monotonic()
    [ping] = scene.receiver.wait_for(1, timeout=PROMPT_SECONDS)
    assert time.monotonic() - decided < PROMPT_SECONDS
    assert ping.path == "/ciba/ping"
    assert ping.headers["Authorization"] == f"Bearer {notification_token}"
    assert ping.headers["Content-Type"].startswith("application/json")
    assert ping.json() == {"auth_req_id": started["auth_req_id"]}
    tokens = redeem(scene, agent, started["auth_req_id"])
    assert tokens.status_code == 200, tokens.text
    check_access_token(scene, agent, tokens.json()["access_token"])
    check_id_token(scene, agent, tokens.json()["id_token"])
    placed = place_order(scene, tokens.json()["access_token"])
    assert placed.status_code == 201, placed.text
    time.sleep(0.2)
    assert len(scene.receiver.deliveries) == 1, "one decision, one ping"


def test_push_mode_delivers_tokens_with_auth_req_id(scene):
    """§10.3.1: the token response is POSTed to the client; its ID token carries
    urn:openid:params:jwt:claim:auth_req_id and at_hash; the agent trades with it."""
    agent = agent_for(scene, "push")
    notification_token = "push-" + "y" * 40
    started = ask(scene, agent, client_notification_token=notification_token)
    request_id = approve_as_alice(scene)
    decided = time.monotonic()
    [push] = scene.receiver.wait_for(1, timeout=PROMPT_SECONDS)
    assert time.monotonic() - decided < PROMPT_SECONDS
    assert push.headers["Authorization"] == f"Bearer {notification_token}"
    body = push.json()
    assert {"auth_req_id", "access_token", "token_type", "expires_in", "id_token"} <= set(body)
    assert "refresh_token" not in body
    assert body["auth_req_id"] == started["auth_req_id"]
    assert body["token_type"].lower() == "bearer" and body["expires_in"] == 300
    check_access_token(scene, agent, body["access_token"])
    id_claims = check_id_token(scene, agent, body["id_token"])
    assert id_claims[AUTH_REQ_ID_CLAIM] == started["auth_req_id"]
    assert id_claims["at_hash"] == at_hash(body["access_token"])
    assert_issuance_audited(scene, agent, request_id)
    placed = place_order(scene, body["access_token"])
    assert placed.status_code == 201, placed.text


@pytest.mark.parametrize("mode", ["poll", "ping"])
def test_denied_poll_and_ping_get_access_denied(scene, mode):
    """§11: access_denied once the user denies; no token exists, so no order can be placed."""
    agent = agent_for(scene, mode)
    extra = {} if mode == "poll" else {"client_notification_token": "deny-token-1234567890"}
    started = ask(scene, agent, **extra)
    orders_before = len(broker_orders(scene.broker_app))
    approve_as_alice(scene, decision="deny")
    if mode == "ping":
        [ping] = scene.receiver.wait_for(1, timeout=PROMPT_SECONDS)
        assert ping.json() == {"auth_req_id": started["auth_req_id"]}
    else:
        time.sleep(started["interval"])
    response = poll_until_decided(scene, agent, started)
    assert (response.status_code, response.json()["error"]) == (400, "access_denied")
    assert count(scene.app, AccessTokenRecord) == 0
    assert len(broker_orders(scene.broker_app)) == orders_before


def test_denied_push_gets_error_payload(scene):
    """§10.3.1 / §12: on denial the push endpoint receives the error and the auth_req_id."""
    agent = agent_for(scene, "push")
    started = ask(scene, agent, client_notification_token="deny-push-1234567890")
    orders_before = len(broker_orders(scene.broker_app))
    approve_as_alice(scene, decision="deny")
    [push] = scene.receiver.wait_for(1, timeout=PROMPT_SECONDS)
    body = push.json()
    assert body["error"] == "access_denied" and body["auth_req_id"] == started["auth_req_id"]
    assert "access_token" not in body and "id_token" not in body
    assert count(scene.app, AccessTokenRecord) == 0
    assert len(broker_orders(scene.broker_app)) == orders_before
