"""The approval page's live stream, GET /approvals/stream, over real HTTP without a browser.

CIBA Core §8 leaves the authentication device to us (DESIGN "approvals"): new
requests of the signed-in user arrive as server-sent events (HTML Living Standard
§9.2) carrying the card rendered and escaped by the server; decisions arrive as
"decided" events; nothing of another user's ever does; a signed-out browser is
sent to sign in; and an open stream holds no database transaction.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select, text, update

from authserver.db import make_engine, make_session_factory, transaction
from authserver.models import BackchannelRequest, User
from authserver.web import approvals
from tests.support.apps import reset_database
from tests.support.factories import DEFAULT_PASSWORD, make_user
from tests.support.flows import csrf_token
from tests.support.live import LiveServer, is_postgres
from tests.support.sse import EventStream, live_approval_server

from .conftest import TRADE, make_ciba_client, register_broker

SUMMARY = "buy 10 NET at no more than 120.00 USD"


@pytest.fixture(scope="module")
def server(migrated_database: str) -> Iterator[LiveServer]:
    with live_approval_server(migrated_database, approval_stream_poll_interval=0.05) as running:
        yield running


@pytest.fixture
def live(server: LiveServer) -> LiveServer:
    reset_database(server.app)
    register_broker(server.app)
    make_user(server.app, "alice")
    make_user(server.app, "bob")
    return server


@pytest.fixture
def agent(live: LiveServer) -> Any:
    return make_ciba_client(live.app)


def signed_in(live: LiveServer, username: str) -> requests.Session:
    http = requests.Session()
    page = http.get(f"{live.url}/login", timeout=10).text
    form = {"username": username, "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page)}
    response = http.post(f"{live.url}/login", data=form, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:300]
    return http


def stream(live: LiveServer, http: requests.Session) -> EventStream:
    return EventStream(http, f"{live.url}/approvals/stream")


def bc_authorize(live: LiveServer, agent: Any, user: str = "alice", **params: str) -> str:
    data = {
        "scope": "openid portfolio:read",
        "login_hint": user,
        "binding_message": "ORDER-7",
        "authorization_details": json.dumps([TRADE]),
        **params,
    }
    response = requests.post(
        f"{live.url}/bc-authorize", data=data, auth=agent.basic_auth, timeout=10
    )
    assert response.status_code == 200, response.text
    return str(response.json()["auth_req_id"])


def decide(live: LiveServer, http: requests.Session, request_id: str, decision: str) -> None:
    page = http.get(f"{live.url}/approvals", timeout=10).text
    form = {"csrf_token": csrf_token(page), "decision": decision, "password": DEFAULT_PASSWORD}
    response = http.post(
        f"{live.url}/approvals/{request_id}", data=form, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302, response.text[:300]


def test_request_event_carries_escaped_card(live, agent):
    """A new request of the signed-in user is a "request" event whose HTML card is rendered
    and escaped by the server (CIBA §7.1 binding_message; RFC 9396 §2 details for people);
    it names the request by its public id, never the client's auth_req_id (CIBA §7.3)."""
    alice = signed_in(live, "alice")
    hostile = "<script>alert(1)</script>"
    with stream(live, alice) as events:
        auth_req_id = bc_authorize(live, agent, binding_message=hostile)
        event = events.next()
    assert event.event == "request"
    data = event.json()
    assert set(data) == {"id", "html"}
    card = data["html"]
    assert f'id="req-{data["id"]}"' in card
    assert html.escape(hostile, quote=False) in card and hostile not in card
    assert "<script" not in card
    assert SUMMARY in card
    for label in ("Action", "Symbol", "Shares (at most)", "Price limit", "Currency"):
        assert f"<dt>{html.escape(label)}</dt>" in card
    assert 'name="csrf_token"' in card and f'action="/approvals/{data["id"]}"' in card
    assert auth_req_id not in event.data
    assert event.id is not None and event.id.isdigit()


def test_decided_event_follows_the_decision(live, agent):
    """Deciding (CIBA §8: the user's consent or refusal) is announced as a "decided" event
    with the new status, so every open page of the user drops the card."""
    alice = signed_in(live, "alice")
    with stream(live, alice) as events:
        bc_authorize(live, agent)
        request_id = events.next().json()["id"]
        decide(live, alice, request_id, "deny")
        decided = events.next()
        assert decided.event == "decided"
        assert decided.json() == {"id": request_id, "status": "denied"}
        bc_authorize(live, agent)
        second = events.next().json()["id"]
        decide(live, alice, second, "approve")
        assert events.next().json() == {"id": second, "status": "approved"}


def test_other_users_requests_are_not_streamed(live, agent):
    """A user's stream carries only their own requests: bob's request (and its decision)
    never reaches alice's page, while her own, made right after, does."""
    alice, bob = signed_in(live, "alice"), signed_in(live, "bob")
    with stream(live, alice) as events:
        bc_authorize(live, agent, user="bob", binding_message="BOB-ONLY")
        bob_request = events.quiet_for(0.5)
        with transaction(live.runtime.session_factory) as session:
            bob_id = session.scalars(select(BackchannelRequest.id)).one()
        decide(live, bob, bob_id, "deny")
        bob_decision = events.quiet_for(0.5)
        bc_authorize(live, agent, binding_message="ALICE-OWN")
        own = events.next()
    assert bob_request == [] and bob_decision == []
    assert own.event == "request" and "ALICE-OWN" in own.json()["html"]
    assert bob_id not in own.data and "BOB-ONLY" not in own.data


def test_stream_needs_sign_in(live):
    """No session, no stream: the browser is sent to sign in, and no event is served."""
    response = requests.get(
        f"{live.url}/approvals/stream", allow_redirects=False, timeout=10, stream=True
    )
    try:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
        assert not response.headers["Content-Type"].startswith("text/event-stream")
    finally:
        response.close()


def test_one_persons_open_streams_are_capped(live):
    """Each open stream holds a worker thread: a person's streams beyond the cap (per
    process) are refused with 429 and Retry-After, so their tabs cannot take the threads
    the token endpoint needs; someone else is not affected, and a closed stream frees its
    place."""
    cap = approvals.MAX_STREAMS_PER_USER
    alice = signed_in(live, "alice")
    opened = [stream(live, alice) for _ in range(cap)]
    with contextlib.ExitStack() as open_streams:
        for each in opened:
            open_streams.enter_context(each)
        refused = alice.get(f"{live.url}/approvals/stream", stream=True, timeout=10)
        refused.close()
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
        with stream(live, signed_in(live, "bob")):
            pass
        opened[0].__exit__(None, None, None)
        deadline = time.monotonic() + 5
        while True:  # the server notices the closed stream at its next heartbeat
            again = alice.get(f"{live.url}/approvals/stream", stream=True, timeout=10)
            if again.status_code == 200 or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.1)
        again.close()
        assert again.status_code == 200


def test_open_stream_holds_no_transaction(live, agent):
    """A stream open for minutes must not hold a transaction: on SQLite a held write
    transaction (BEGIN IMMEDIATE) would block every writer; on PostgreSQL no connection of
    the server may sit idle in a transaction. A write from another connection is prompt."""
    alice = signed_in(live, "alice")
    engine = make_engine(live.runtime.settings.database_url)
    try:
        with stream(live, alice) as events:
            bc_authorize(live, agent)
            assert events.next().event == "request"  # the stream is inside its loop
            time.sleep(0.2)  # a few poll rounds
            started = time.perf_counter()
            with transaction(make_session_factory(engine)) as session:
                session.execute(
                    update(User).where(User.username == "alice").values(name="Alice W.")
                )
            elapsed = time.perf_counter() - started
            if is_postgres(live.runtime.settings.database_url):
                with engine.connect() as connection:
                    idle = connection.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND state LIKE 'idle in transaction%'"
                        )
                    ).scalar_one()
                assert idle == 0
    finally:
        engine.dispose()
    assert elapsed < 1.0, f"a write waited {elapsed:.2f} s behind the open stream"


def test_same_process_changes_wake_the_stream(migrated_database, live, agent):
    """A request taken (and decided) by the process serving the stream is pushed at once,
    not at the next database poll: with a 30 s poll interval both events still arrive in
    well under a second (changes from other processes wait for that poll)."""
    with live_approval_server(migrated_database, approval_stream_poll_interval=30.0) as slow:
        alice = signed_in(slow, "alice")
        with stream(slow, alice) as events:
            time.sleep(0.2)  # the stream has done its first read and is waiting
            started = time.perf_counter()
            bc_authorize(slow, agent)
            arrived = events.next(timeout=5.0)
            request_latency = arrived.received_at - started
            started = time.perf_counter()
            decide(slow, alice, arrived.json()["id"], "deny")
            decided = events.next(timeout=5.0)
            decided_latency = decided.received_at - started
    assert arrived.event == "request" and decided.event == "decided"
    assert request_latency < 1.0 and decided_latency < 1.0, (request_latency, decided_latency)
