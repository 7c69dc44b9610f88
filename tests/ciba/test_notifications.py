"""The notification outbox: CIBA ping/push callbacks and approval webhooks.

CIBA Core §10.2 (ping) and §10.3 (push) callbacks, delivered at least once from any
process (DESIGN "Processes": nothing lives only in one process's memory): retried
with backoff 1, 2, 4, 8, 16, 32 s, given up after 7 attempts, each attempt audited;
one attempt is never sent by two dispatchers (lease); payloads sealed by the vault
and bound to their target. Approval webhooks carry the public request id (never the
`auth_req_id`) and an HMAC-SHA256 signature over "<t>.<body>".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import pytest
from sqlalchemy import update

from authserver import notify
from authserver.db import transaction
from authserver.models import BackchannelRequest, Notification
from tests.support.apps import build_test_app
from tests.support.db import audit_events, rows
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.live import free_port
from tests.support.receiver import NotificationReceiver
from tests.support.slow import SlowEndpoint, loopback_tls_context

from .conftest import TRADE, approval_form, bc_authorize, make_ciba_client

NOTIFICATION_TOKEN = "8d67dc78-7faa-4d41-aabd-67707b374255"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def receiver():
    with NotificationReceiver() as running:
        yield running


@pytest.fixture
def dispatcher(runtime):
    return runtime.dispatcher


def outbox(app) -> list[Notification]:
    return sorted(rows(app, Notification), key=lambda row: row.id)


def make_due(app) -> None:
    """Move every pending notification's next attempt into the past (instead of sleeping)."""
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(
            update(Notification)
            .where(Notification.status == "pending")
            .values(next_attempt_at=time.time() - 1)
        )


def decided_request(app, client, browser, agent, decision="approve", **params) -> str:
    """A CIBA request by `agent`, decided by alice on the approval page; its auth_req_id."""
    started = bc_authorize(client, agent, client_notification_token=NOTIFICATION_TOKEN, **params)
    assert started.status_code == 200, started.json
    assert outbox(app) == [], "nothing is sent before the user decides"
    browser.login("alice", DEFAULT_PASSWORD)
    password = DEFAULT_PASSWORD if decision == "approve" else ""
    _, response = approval_form(browser, password=password, decision=decision)
    assert response.status_code == 302
    return started.json["auth_req_id"]


def outcomes(app, kind: str) -> list[str]:
    return [event.outcome for event in audit_events(app, f"notification.{kind}")]


def test_ping_retried_with_backoff_until_delivered(app, client, browser, alice, broker, receiver):
    """§10.2 ping: a 500 is retried after 1 s, then 2 s; the third attempt (204) delivers it.
    Each attempt is an audit event: retry, retry, success."""
    receiver.reset(fail_first=2)
    agent = make_ciba_client(app, "agent-ping", "ping", f"{receiver.url}/cb")
    auth_req_id = decided_request(app, client, browser, agent)
    dispatcher = app.extensions["authserver"].dispatcher
    for attempt, backoff in enumerate(notify.BACKOFF_SECONDS[:2], start=1):
        sent_at = time.time()
        assert dispatcher.run_once() == 1
        [row] = outbox(app)
        assert (row.status, row.attempts, row.last_error) == ("pending", attempt, "HTTP 500")
        assert backoff <= row.next_attempt_at - sent_at <= backoff + 1.0
        assert dispatcher.run_once() == 0, "not again before the backoff has passed"
        make_due(app)
    assert dispatcher.run_once() == 1
    [row] = outbox(app)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert row.sent_at is not None
    make_due(app)
    assert dispatcher.run_once() == 0, "a delivered notification is never sent again"
    deliveries = receiver.wait_for(3)
    assert len(receiver.deliveries) == 3
    for delivery in deliveries:
        assert delivery.path == "/cb"
        assert delivery.json() == {"auth_req_id": auth_req_id}
        assert delivery.headers["Authorization"] == f"Bearer {NOTIFICATION_TOKEN}"
    assert outcomes(app, "ciba_ping") == ["retry", "retry", "success"]
    events = audit_events(app, "notification.ciba_ping")
    assert [e.details["attempt"] for e in events] == [1, 2, 3]
    for event in events:
        text = json.dumps(event.details)
        assert auth_req_id not in text and NOTIFICATION_TOKEN not in text


def test_receiver_down_fails_after_max_attempts(app, client, browser, alice, broker):
    """Delivery gives up after MAX_ATTEMPTS (7) with the full backoff schedule; the last
    attempt is audited as failed and the row is never tried again."""
    agent = make_ciba_client(app, "agent-ping", "ping", f"http://127.0.0.1:{free_port()}/cb")
    decided_request(app, client, browser, agent)
    dispatcher = app.extensions["authserver"].dispatcher
    for attempt in range(1, notify.MAX_ATTEMPTS + 1):
        make_due(app)
        sent_at = time.time()
        assert dispatcher.run_once() == 1
        [row] = outbox(app)
        assert row.attempts == attempt and row.last_error == "ConnectionError"
        if attempt < notify.MAX_ATTEMPTS:
            assert row.status == "pending"
            backoff = notify.BACKOFF_SECONDS[attempt - 1]
            assert backoff <= row.next_attempt_at - sent_at <= backoff + 1.0
    assert (row.status, row.attempts) == ("failed", 7)
    make_due(app)
    assert dispatcher.run_once() == 0
    assert outcomes(app, "ciba_ping") == ["retry"] * 6 + ["failed"]
    assert audit_events(app, "notification.ciba_ping")[-1].details["attempt"] == 7


def test_hanging_receiver_times_out_and_is_retried(app, client, browser, alice, broker, receiver):
    """A receiver that never answers costs one timeout, not a stuck outbox."""
    agent = make_ciba_client(app, "agent-ping", "ping", f"{receiver.url}/cb")
    decided_request(app, client, browser, agent)
    impatient = impatient_dispatcher(app, timeout=0.3)
    receiver.hang()
    started = time.monotonic()
    assert impatient.run_once() == 1
    assert time.monotonic() - started < 5
    [row] = outbox(app)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "ReadTimeout")
    assert row.lease_until is None
    receiver.release()
    make_due(app)
    assert impatient.run_once() == 1
    assert outbox(app)[0].status == "sent"


def timed_sends(app, target: str, count: int) -> float:
    """Seconds one dispatcher round (0.3 s timeout) takes to send `count` new rows."""
    enqueue_many(app, target, count)
    dispatcher = impatient_dispatcher(app, timeout=0.3)
    started = time.monotonic()
    assert dispatcher.run_once() == count
    return time.monotonic() - started


def impatient_dispatcher(app, timeout: float = 0.3) -> notify.Dispatcher:
    """A dispatcher of `app`'s runtime with a short timeout (and no background loop)."""
    runtime = app.extensions["authserver"]
    return notify.Dispatcher(
        runtime.session_factory,
        runtime.read_session_factory,
        runtime.keyring,
        runtime.audit_key,
        "",
        timeout=timeout,
        interval=0,
    )


@pytest.fixture(scope="module")
def loopback_tls(tmp_path_factory):
    """A server context with a self-signed certificate for 127.0.0.1, and the CA file."""
    return loopback_tls_context(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_trickling_answer_is_cut_off_at_the_deadline(app, scheme, loopback_tls, monkeypatch):
    """An endpoint that sends its status line and then its headers a byte at a time (never
    slower than the read timeout) is cut off at the send's overall deadline: a retryable
    timeout, as for a hanging receiver, not a dispatcher held for as long as it pleases."""
    tls = None
    if scheme == "https":
        tls, ca_file = loopback_tls
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    head, tail = b"HTTP/1.1 200 OK\r\nX-Slow: ", b"\r\nContent-Length: 0\r\n\r\n"
    slow = SlowEndpoint(head, b"a" * 50, tail, tls=tls)
    with slow:
        elapsed = timed_sends(app, f"{slow.url}/cb", 1)
        assert slow.hung_up.wait(2), "the connection is closed, not left to the endpoint"
    assert elapsed < 1.5, f"the send took {elapsed:.1f} s"
    [row] = outbox(app)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "Timeout")
    assert row.lease_until is None
    assert outcomes(app, "ciba_ping") == ["retry"]


def test_answer_status_is_enough_body_is_never_read(app):
    """Only the status decides the outcome: a 200 whose body trickles (or never comes) is
    delivered at once, its body left unread and its connection closed; the next send to the
    same endpoint opens a fresh connection and is delivered too."""
    slow = SlowEndpoint(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", b"x" * 50)
    with slow:
        elapsed = timed_sends(app, f"{slow.url}/cb", 2)
    assert elapsed < 1.5, f"the sends took {elapsed:.1f} s"
    assert slow.requests == 2
    assert [(row.status, row.last_error) for row in outbox(app)] == [("sent", None)] * 2
    assert outcomes(app, "ciba_ping") == ["success", "success"]


def test_row_whose_lease_could_lapse_is_handed_back(app, receiver, monkeypatch):
    """A batch's leases are taken together and its rows sent one after another: a row whose
    lease could lapse before its send is recorded is not sent (another process could claim
    it and send it too) but handed back, to be claimed again at once."""
    monkeypatch.setattr(notify, "LEASE_SECONDS", 2.0)
    dispatcher = impatient_dispatcher(app, timeout=0.2)  # deadline 0.4 s; 0.8 s of lease left
    enqueue_many(app, f"{receiver.url}/cb", 2)
    send = dispatcher._send

    def slow_send(row):
        time.sleep(1.5)
        return send(row)

    monkeypatch.setattr(dispatcher, "_send", slow_send)
    assert dispatcher.run_once() == 1
    states = [(row.status, row.attempts, row.lease_until) for row in outbox(app)]
    assert states == [("sent", 1, None), ("pending", 0, None)]
    assert len(receiver.deliveries) == 1
    monkeypatch.setattr(dispatcher, "_send", send)
    assert dispatcher.run_once() == 1
    assert [row.status for row in outbox(app)] == ["sent", "sent"]
    assert len(receiver.wait_for(2)) == 2


def test_audit_records_only_the_targets_origin(app, receiver):
    """DESIGN "Audit": details without secrets. A webhook URL is often a capability (its
    path, or its user info, is the secret): the audit row names only scheme://host:port."""
    origin = receiver.url.replace("http://", "http://hook-user:pw-secret@")
    target = f"{origin}/services/T000/B000/secretpart?token=qs-secret"
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        notify.enqueue(
            session, runtime.keyring, kind="webhook", target_url=target, body={"request_id": "r"}
        )
    assert runtime.dispatcher.run_once() == 1
    assert receiver.wait_for(1)[0].path == "/services/T000/B000/secretpart?token=qs-secret"
    [event] = audit_events(app, "notification.webhook")
    assert event.outcome == "success"
    assert event.details["target"] == receiver.url
    text = json.dumps(event.details)
    for secret in ("secretpart", "T000", "qs-secret", "pw-secret", "hook-user"):
        assert secret not in text


@pytest.fixture(scope="module")
def second_app(migrated_database):
    """Another process's runtime on the same database (its own engine and dispatcher)."""
    other = build_test_app(migrated_database)
    yield other
    other.extensions["authserver"].engine.dispose()


def enqueue_many(app, target: str, how_many: int) -> None:
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        for index in range(how_many):
            notify.enqueue(
                session,
                runtime.keyring,
                kind="ciba_ping",
                target_url=target,
                body={"auth_req_id": f"req-{index}"},
                headers={"Authorization": "Bearer t"},
                request_id=f"r{index}",
            )


def test_two_dispatchers_never_send_the_same_attempt(app, second_app, receiver):
    """Two processes' dispatchers racing over one outbox: every notification exactly once."""
    enqueue_many(app, f"{receiver.url}/cb", 30)
    dispatchers = [
        app.extensions["authserver"].dispatcher,
        second_app.extensions["authserver"].dispatcher,
    ]
    barrier = threading.Barrier(len(dispatchers))
    sent = [0, 0]
    errors: list[BaseException] = []

    def drain(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(20):
                sent[index] += dispatchers[index].run_once()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(dispatchers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(sent) == 30
    bodies = sorted(d.json()["auth_req_id"] for d in receiver.deliveries)
    assert bodies == sorted(f"req-{index}" for index in range(30))
    assert {(row.status, row.attempts) for row in outbox(app)} == {("sent", 1)}
    assert len(audit_events(app, "notification.ciba_ping")) == 30


def test_lease_keeps_an_attempt_in_flight_to_one_dispatcher(app, second_app, receiver):
    """While one dispatcher is sending (its lease held), another cannot claim the row."""
    enqueue_many(app, f"{receiver.url}/cb", 1)
    first = app.extensions["authserver"].dispatcher
    second = second_app.extensions["authserver"].dispatcher
    receiver.hang()
    sending = threading.Thread(target=first.run_once)
    sending.start()
    try:
        receiver.wait_for(1)
        make_due(app)
        assert second.run_once() == 0
    finally:
        receiver.release()
        sending.join(timeout=10)
    assert second.run_once() == 0
    assert len(receiver.deliveries) == 1
    assert [(row.status, row.attempts) for row in outbox(app)] == [("sent", 1)]


def test_stale_due_list_does_not_skip_the_backoff(app, second_app, receiver, monkeypatch):
    """A dispatcher that read the due list just before another one made (and failed) the
    attempt must not send the row again at once: the claim re-checks that it is due."""
    receiver.reset(fail_first=1)
    enqueue_many(app, f"{receiver.url}/cb", 1)
    first = app.extensions["authserver"].dispatcher
    second = second_app.extensions["authserver"].dispatcher
    stale = second._due_ids(time.time())
    assert len(stale) == 1
    assert first.run_once() == 1
    monkeypatch.setattr(second, "_due_ids", lambda moment: stale)
    assert second.run_once() == 0
    [row] = outbox(app)
    assert (row.status, row.attempts) == ("pending", 1)
    assert len(receiver.deliveries) == 1


def encodings(secret: str) -> list[bytes]:
    """The secret as it would appear stored in plain, base64 (any alignment) or hex."""
    raw = secret.encode()
    found = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + raw).rstrip(b"=")
            found.append(encoded[4:-4] if shift else encoded[:-4])
    return found


def assert_sealed(blob: bytes, *secrets_: str) -> None:
    for secret in secrets_:
        for form in encodings(secret):
            assert form not in blob, "a secret is readable in the stored payload"


def test_push_payload_is_sealed_and_bound_to_its_target(app, client, browser, alice, broker):
    """Push payloads hold tokens (§10.3.1): stored only sealed (no token in plain, base64 or
    hex), and bound to their target: a row pointed at another URL does not open."""
    with NotificationReceiver() as honest, NotificationReceiver() as attacker:
        agent = make_ciba_client(app, "agent-push", "push", f"{honest.url}/cb")
        auth_req_id = decided_request(app, client, browser, agent)
        [row] = outbox(app)
        [request] = rows(app, BackchannelRequest)
        runtime = app.extensions["authserver"]
        with transaction(runtime.session_factory) as session:
            session.execute(
                update(Notification)
                .where(Notification.id == row.id)
                .values(target_url=f"{attacker.url}/cb")
            )
        assert runtime.dispatcher.run_once() == 1
        assert outbox(app)[0].last_error == "payload could not be opened"
        assert attacker.deliveries == []
        with transaction(runtime.session_factory) as session:
            session.execute(
                update(Notification)
                .where(Notification.id == row.id)
                .values(target_url=row.target_url)
            )
        make_due(app)
        assert runtime.dispatcher.run_once() == 1
        [push] = honest.wait_for(1)
        body = push.json()
        assert body["auth_req_id"] == auth_req_id
        assert body["authorization_details"] == [TRADE]
        secrets_ = [body["access_token"], body["id_token"], auth_req_id, NOTIFICATION_TOKEN]
        assert_sealed(row.payload_sealed, *secrets_)
        assert_sealed(request.callback_sealed, auth_req_id, NOTIFICATION_TOKEN)
        assert_sealed(json.dumps([e.details for e in audit_events(app)]).encode(), *secrets_)


def test_ping_payload_is_sealed(app, client, browser, alice, broker, receiver):
    """Ping payloads carry the auth_req_id and the client's bearer token: sealed too."""
    agent = make_ciba_client(app, "agent-ping", "ping", f"{receiver.url}/cb")
    auth_req_id = decided_request(app, client, browser, agent)
    [row] = outbox(app)
    assert_sealed(row.payload_sealed, auth_req_id, NOTIFICATION_TOKEN)


def test_denial_is_pinged_too(app, client, browser, alice, broker, receiver):
    """§10.2: the client is pinged when the user decides, whatever the decision."""
    agent = make_ciba_client(app, "agent-ping", "ping", f"{receiver.url}/cb")
    auth_req_id = decided_request(app, client, browser, agent, decision="deny")
    assert app.extensions["authserver"].dispatcher.run_once() == 1
    [ping] = receiver.wait_for(1)
    assert ping.json() == {"auth_req_id": auth_req_id}


# --- approval webhooks -----------------------------------------------------------------


@pytest.fixture(scope="module")
def hook_receiver():
    with NotificationReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def hook_app(migrated_database, hook_receiver):
    """An app whose operator configured an approval webhook (a chat or push service)."""
    hooked = build_test_app(
        migrated_database,
        approval_webhook_url=f"{hook_receiver.url}/hook",
        approval_webhook_secret=WEBHOOK_SECRET,
    )
    yield hooked
    hooked.extensions["authserver"].engine.dispose()


def verify_signature(header: str, body: bytes, secret: str = WEBHOOK_SECRET) -> int:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; returns t."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest()), "signature does not verify"
    return int(parts["t"])


def test_webhook_announces_new_request(app, hook_app, hook_receiver, alice, broker):
    """A new request POSTs a signed JSON payload: public request id (never the auth_req_id),
    user, client, binding message and the details rendered for people."""
    hook_receiver.reset()
    agent = make_ciba_client(app, "agent-ping", "ping", "http://127.0.0.1:9/cb")
    client = hook_app.test_client()
    started = bc_authorize(client, agent, client_notification_token=NOTIFICATION_TOKEN)
    assert started.status_code == 200, started.json
    auth_req_id = started.json["auth_req_id"]
    [row] = outbox(app)
    assert row.kind == "webhook"
    assert_sealed(row.payload_sealed, auth_req_id, NOTIFICATION_TOKEN)
    assert hook_app.extensions["authserver"].dispatcher.run_once() == 1
    [hook] = hook_receiver.wait_for(1)
    assert hook.path == "/hook"
    assert hook.headers["Content-Type"].startswith("application/json")
    assert "Authorization" not in hook.headers
    signed_at = verify_signature(hook.headers[notify.SIGNATURE_HEADER], hook.body)
    assert abs(signed_at - time.time()) < 60
    with pytest.raises(AssertionError, match="does not verify"):
        verify_signature(hook.headers[notify.SIGNATURE_HEADER], hook.body + b" ")
    payload = hook.json()
    [request] = rows(app, BackchannelRequest)
    assert payload["request_id"] == request.id
    assert payload["user"] == {"id": alice.id, "username": "alice"}
    assert payload["client"] == {"id": "agent-ping", "name": "Client agent-ping"}
    assert payload["binding_message"] == "ORDER-7"
    [detail] = payload["authorization_details"]
    assert detail["summary"] == "buy 10 NET at no more than 120.00 USD"
    assert ["Shares (at most)", "10"] in detail["rendered"]
    assert payload["approve_url"].endswith("/approvals")
    text = hook.body.decode()
    assert auth_req_id not in text and NOTIFICATION_TOKEN not in text
    assert outcomes(app, "webhook") == ["success"]


def test_no_webhook_without_configuration(app, client, alice, agent):
    """Without approval_webhook_url nothing is queued for a poll request."""
    assert bc_authorize(client, agent).status_code == 200
    assert outbox(app) == []
