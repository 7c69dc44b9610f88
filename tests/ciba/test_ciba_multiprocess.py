"""CIBA across processes: request on one node, approve on another, redeem on the first.

DESIGN "Processes": "Nothing a request needs may live only in one process's memory
(CIBA state, rate-limit counters, SSE fan-out all go through the database)". Two real
`authserver run` processes share the test database (SQLite or PostgreSQL), the key
ring and the session secret. CIBA Core §7 (request), §10.1 and §11 (polling).
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from authserver.credentials import digest
from authserver.models import BackchannelRequest
from tests.support.ciba_live import ApprovalBrowser, verify_jwt
from tests.support.db import rows
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.live import ServerProcess, free_port, server_env
from tests.support.sse import EventStream

from .conftest import BROKER, TRADE

CIBA = "urn:openid:params:grant-type:ciba"


def bc_authorize_form(**extra: str) -> dict[str, str]:
    return {
        "scope": "openid",
        "login_hint": "alice",
        "binding_message": "ORDER-7",
        "authorization_details": json.dumps([TRADE]),
        **extra,
    }


@pytest.fixture(scope="module")
def nodes(migrated_database, tmp_path_factory):
    """Node A and node B: two processes behind one issuer (A's address)."""
    ports = [free_port(), free_port()]
    env = server_env(
        migrated_database, f"http://127.0.0.1:{ports[0]}", AUTHSERVER_CIBA_INTERVAL="1"
    )
    cwd = tmp_path_factory.mktemp("nodes")
    processes = [ServerProcess(port, env, cwd) for port in ports]
    try:
        for process in processes:
            process.wait_until_up()
        yield [process.url for process in processes]
    finally:
        for process in processes:
            process.stop()


def post_token(base: str, agent, auth_req_id: str) -> requests.Response:
    return requests.post(
        f"{base}/token",
        data={"grant_type": CIBA, "auth_req_id": auth_req_id},
        auth=agent.basic_auth,
        timeout=10,
    )


def next_event(stream: EventStream, name: str, request_id: str, timeout: float = 10) -> dict:
    """The next `name` event about `request_id` (other events are skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = stream.next(timeout=left)
        data = event.json()
        if event.event == name and data.get("id") == request_id:
            return dict(data)
    raise AssertionError(f"no {name} event for the request within {timeout} s")


def test_request_on_a_decide_on_b_redeem_on_a(app, nodes, alice, agent):
    """The request made through A is on B's approval page and B's live stream; the decision
    made through B is seen by A's token endpoint; the redemption on A consumes it for B too."""
    node_a, node_b = nodes
    person = ApprovalBrowser(node_b, "alice", DEFAULT_PASSWORD)
    person.sign_in()
    since = int(time.time() * 1000)
    with EventStream(person.http, f"{node_b}/approvals/stream?since={since}") as stream:
        started = requests.post(
            f"{node_a}/bc-authorize",
            data=bc_authorize_form(binding_message="NODE-A-7"),
            auth=agent.basic_auth,
            timeout=10,
        )
        assert started.status_code == 200, started.text
        auth_req_id = started.json()["auth_req_id"]
        assert started.json()["interval"] == 1
        [row] = rows(
            app, BackchannelRequest, BackchannelRequest.auth_req_hash == digest(auth_req_id)
        )
        card = next_event(stream, "request", row.id)
        assert "NODE-A-7" in card["html"] and "buy 10 NET" in card["html"]
        assert auth_req_id not in card["html"]
        assert person.pending_ids() == [row.id]
        pending = post_token(node_a, agent, auth_req_id)
        assert pending.json()["error"] == "authorization_pending"
        assert person.decide(row.id).status_code == 302
        assert next_event(stream, "decided", row.id)["status"] == "approved"
    time.sleep(1)  # the interval (§7.3)
    tokens = post_token(node_a, agent, auth_req_id)
    assert tokens.status_code == 200, tokens.text
    claims = verify_jwt(
        node_a, tokens.json()["access_token"], audience=BROKER, algorithms=["ES256"], typ="at+jwt"
    )
    assert claims["authorization_details"] == [TRADE] and claims["sub"] == alice.id
    again = post_token(node_b, agent, auth_req_id)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_slow_down_is_shared_between_nodes(app, nodes, alice, agent):
    """§11 slow_down: the poll time lives in the database, so polling A then B at once is
    still too fast."""
    node_a, node_b = nodes
    started = requests.post(
        f"{node_a}/bc-authorize", data=bc_authorize_form(), auth=agent.basic_auth, timeout=10
    )
    auth_req_id = started.json()["auth_req_id"]
    assert post_token(node_a, agent, auth_req_id).json()["error"] == "authorization_pending"
    assert post_token(node_b, agent, auth_req_id).json()["error"] == "slow_down"
