"""Upstream failures: a clear error, never a stale token (DESIGN "Token vault").

The mock calendar's /_test/faults make its token endpoint fail on refresh grants
(RFC 6749 §6): a 5xx, a hang, an answer without a refresh token, invalid_grant.
"Upstream failure returns a clear error, never a stale token", and "an upstream
`invalid_grant` marks the account as needing reconnection instead of retrying
forever".
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests
import urllib3.util.connection
from sqlalchemy import delete, func, select

from tests.support.slow import SlowEndpoint, loopback_tls_context
from tests.support.vault_live import (
    UpstreamSpy,
    VaultScene,
    calendar_refresh,
    follow_connect,
    vault_scene,
)
from vault import upstream
from vault.deadline import Deadline, WatchedAdapter
from vault.models import ACTIVE, NEEDS_RECONNECT, ConnectedAccount

UPSTREAM_TIMEOUT = 1.0
HANG_SECONDS = 30


@pytest.fixture
def scene(app, migrated_database, tmp_path) -> Iterator[VaultScene]:
    with vault_scene(app, migrated_database, tmp_path, upstream_timeout=UPSTREAM_TIMEOUT) as scene:
        yield scene
        scene.calendar.fault("none")


@pytest.fixture
def spy(monkeypatch) -> UpstreamSpy:
    return UpstreamSpy.install(monkeypatch)


def _connected(scene: VaultScene) -> tuple[str, str]:
    """Alice connected; her subject token and the access token the vault cached."""
    scene.connect("alice")
    subject = scene.subject_token("alice")
    served = scene.federated(subject)
    assert served.status_code == 200, served.text
    return subject, served.json()["access_token"]


def _assert_unavailable(response, stale: str) -> None:
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert "access_token" not in body
    assert stale not in response.text


def test_upstream_server_error_is_temporarily_unavailable_and_no_stale_token(scene):
    """RFC 6749 §5.2 / §4.1.2.1 temporarily_unavailable (503): the upstream's 5xx is not
    hidden by serving the expired cached token; the account survives for a retry."""
    subject, stale = _connected(scene)
    scene.expire_cached("alice")
    scene.calendar.fault("server_error")
    before = scene.calendar.stats()
    failed = scene.federated(subject)
    _assert_unavailable(failed, stale)
    assert failed.json()["error_description"] == (
        "The upstream provider failed (unavailable); no token was issued."
    )
    after = scene.calendar.stats()
    assert after["refresh_attempts"] == before["refresh_attempts"] + 1
    assert after["refresh_grants"] == before["refresh_grants"]
    account = scene.account("alice")
    assert account.status == ACTIVE and account.refresh_lease is None
    assert scene.events("vault.token_served")[-1].outcome == "refused"

    scene.calendar.fault("none")
    retried = scene.federated(subject)
    assert retried.status_code == 200, retried.text
    assert retried.json()["access_token"] != stale
    assert scene.freebusy(retried.json()["access_token"]).status_code == 200


def test_upstream_hang_fails_within_the_timeout(scene):
    """DESIGN token vault: an upstream that does not answer is an error after the configured
    timeout (here 1 s), not a request stuck for as long as the upstream hangs."""
    subject, stale = _connected(scene)
    scene.expire_cached("alice")
    scene.calendar.fault("hang", hang_seconds=HANG_SECONDS)
    started = time.monotonic()
    failed = scene.federated(subject)
    elapsed = time.monotonic() - started
    _assert_unavailable(failed, stale)
    assert failed.json()["error_description"] == (
        "The upstream provider failed (timeout); no token was issued."
    )
    # About the timeout, far from the hang (slack for a busy machine).
    assert elapsed < UPSTREAM_TIMEOUT + 5.0, f"took {elapsed:.1f}s"
    assert scene.account("alice").refresh_lease is None


def test_refresh_without_a_new_refresh_token_keeps_the_old_one(scene, spy):
    """RFC 6749 §6: the server MAY issue a new refresh token; when it does not, the vault
    serves the new access token and keeps using the refresh token it has."""
    subject, stale = _connected(scene)
    original = scene.stored_refresh_token("alice")
    scene.expire_cached("alice")
    scene.calendar.fault("omit_refresh_token")
    served = scene.federated(subject)
    assert served.status_code == 200, served.text
    token = served.json()["access_token"]
    assert token != stale and scene.freebusy(token).status_code == 200
    assert scene.stored_refresh_token("alice") == original

    scene.calendar.fault("none")
    scene.expire_cached("alice")
    again = scene.federated(subject)
    assert again.status_code == 200, again.text
    assert scene.stored_refresh_token("alice") not in (original, "")
    assert scene.stored_refresh_token("alice") == spy.refresh_tokens[-1]


def test_invalid_grant_needs_reconnect_and_stops_calling_upstream(scene):
    """DESIGN token vault: upstream invalid_grant (RFC 6749 §5.2) marks the account as
    needing reconnection; later requests get connection_required (reconnect_required)
    without calling upstream again, until the user reconnects."""
    subject, stale = _connected(scene)
    scene.expire_cached("alice")
    scene.calendar.fault("invalid_grant")
    before = scene.calendar.stats()
    refused = scene.federated(subject)
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "connection_required"
    assert body["reason"] == "reconnect_required"
    assert "access_token" not in body and stale not in refused.text
    assert body["connect_uri"].startswith(f"{scene.url}/connections/calendar/connect?scope=")
    account = scene.account("alice")
    assert account.status == NEEDS_RECONNECT
    assert account.access_token_sealed is None and account.refresh_lease is None
    attempts = scene.calendar.stats()["refresh_attempts"]
    assert attempts == before["refresh_attempts"] + 1

    scene.calendar.fault("none")  # even once the upstream would answer again
    for _ in range(3):
        again = scene.federated(subject)
        assert again.status_code == 400
        assert again.json()["reason"] == "reconnect_required"
    assert scene.calendar.stats()["refresh_attempts"] == attempts
    page = scene.browser("alice").get(f"{scene.url}/account/connections", timeout=10)
    assert "Needs reconnecting" in page.text

    follow_connect(scene.browser("alice"), body["connect_uri"], "alice")
    assert scene.account("alice").status == ACTIVE
    back = scene.federated(subject)
    assert back.status_code == 200, back.text
    assert scene.freebusy(back.json()["access_token"]).status_code == 200
    assert scene.calendar.stats()["refresh_attempts"] == attempts


def _without_refresh_token(response):
    """An upstream that grants no offline access: its token answer has no refresh_token."""
    body = response.json()
    body.pop("refresh_token", None)
    response._content = json.dumps(body).encode()
    return response


def test_connect_without_a_refresh_token_stores_nothing(scene, monkeypatch):
    """DESIGN token vault: an account is usable while the user is away only with a refresh
    token; an upstream token answer without one (RFC 6749 §5.1, refresh_token OPTIONAL)
    gives a clear error page and stores no account."""
    original = upstream._session

    def session_without_refresh(client, **extra):
        session = original(client, **extra)
        session.register_compliance_hook("access_token_response", _without_refresh_token)
        return session

    monkeypatch.setattr(upstream, "_session", session_without_refresh)
    page = scene.connect("alice")
    assert page.status_code == 502
    assert "did not grant offline access" in page.text
    assert scene.account("alice") is None
    with scene.server.runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ConnectedAccount)) == 0
    failure = scene.events("vault.connected")[-1]
    assert failure.outcome == "failure" and failure.details["reason"] == "no_refresh_token"
    assert scene.calendar.stats()["code_grants"] == 1


@pytest.mark.parametrize("timeout", [1.0, 10.0, 40.0, 120.0])
def test_refresh_lease_outlives_a_slow_upstream(app, timeout):
    """A refresh lease that lapsed while the upstream call was still running would let a
    second request send the same refresh token, and a rotating upstream would kill the
    family. The lease covers the connect and read timeouts of the call, whatever
    AUTHSERVER_UPSTREAM_TIMEOUT is set to."""
    from vault.accounts import lease_for

    assert lease_for(timeout) > 2 * timeout
    vault = app.extensions["authserver"].vault
    assert vault.lease_seconds == lease_for(vault.timeout) > 2 * vault.timeout


def test_expires_in_sent_as_a_string_is_still_cached(scene):
    """Some providers send `expires_in` as a string ("3600"). Ignoring it would leave the
    refreshed token uncached, and every request would refresh upstream again."""
    subject, _ = _connected(scene)
    scene.expire_cached("alice")
    scene.calendar.fault("string_expires_in")
    before = scene.calendar.stats()
    first = scene.federated(subject)
    assert first.status_code == 200, first.text
    assert 3000 < first.json()["expires_in"] <= 3600
    again = scene.federated(subject)
    assert again.status_code == 200 and again.json()["access_token"] == first.json()["access_token"]
    assert scene.calendar.stats()["refresh_grants"] == before["refresh_grants"] + 1


def test_scope_narrowed_on_refresh_asks_the_person_again(scene):
    """RFC 6749 §5.1: a refresh may come back with less `scope` than the grant had. A token
    without the scope the agent asked for is not served: the answer is missing_scopes with
    the connect_uri, and the account records what it really holds now."""
    scene.connect("alice", "calendar.freebusy calendar.read")
    subject = scene.subject_token("alice")
    assert scene.federated(subject, scope="calendar.read").status_code == 200
    scene.expire_cached("alice")
    scene.calendar.fault("narrow_scope")
    narrowed = scene.federated(subject, scope="calendar.read")
    assert narrowed.status_code == 400, narrowed.text
    body = narrowed.json()
    assert body["reason"] == "missing_scopes" and "access_token" not in body
    assert body["connect_uri"].startswith(f"{scene.url}/connections/calendar/connect?")
    assert scene.account("alice").scopes == ["calendar.freebusy"]
    assert scene.federated(subject, scope="calendar.read").json()["reason"] == "missing_scopes"


def test_disconnect_during_a_refresh_serves_nothing_and_revokes_the_new_token(scene, monkeypatch):
    """The person disconnects while the vault is refreshing: their decision stands. The
    fresh access token is not served (not_connected), and the rotated refresh token the
    provider just issued, which was never stored, is revoked upstream (RFC 7009) instead
    of being left alive."""
    subject, _ = _connected(scene)
    scene.expire_cached("alice")
    issued: list[upstream.UpstreamTokens] = []
    original = upstream.refresh

    def refresh_then_disconnect(*args, **kwargs):
        answer = original(*args, **kwargs)
        issued.append(answer)
        with scene.server.runtime.session_factory.begin() as session:
            session.execute(
                delete(ConnectedAccount).where(ConnectedAccount.user_id == scene.user_ids["alice"])
            )
        return answer

    monkeypatch.setattr(upstream, "refresh", refresh_then_disconnect)
    before = scene.calendar.stats()
    response = scene.federated(subject)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "not_connected" and "access_token" not in response.json()
    [answer] = issued
    assert answer.refresh_token
    assert scene.calendar.stats()["revocations"] == before["revocations"] + 1
    assert calendar_refresh(scene.calendar.url, answer.refresh_token).status_code == 400


def _with_expires_in(value):
    def hook(response):
        body = response.json()
        body["expires_in"] = value
        response._content = json.dumps(body).encode()
        return response

    return hook


@pytest.mark.parametrize("expires_in", [[1], {"s": 1}, 1e400])
def test_unreadable_refresh_answer_is_503_and_gives_the_lease_back(scene, monkeypatch, expires_in):
    """A token answer whose fields cannot be read (RFC 6749 §5.1 `expires_in` as a list, an
    object, or a number too large for any clock) is the upstream's failure: 503
    temporarily_unavailable, no token, and the refresh lease is given back at once, so the
    next request is not left waiting for a refresh that already ended."""
    subject, stale = _connected(scene)
    scene.expire_cached("alice")
    original = upstream._session

    def unreadable(client, **extra):
        session = original(client, **extra)
        session.register_compliance_hook("refresh_token_response", _with_expires_in(expires_in))
        return session

    monkeypatch.setattr(upstream, "_session", unreadable)
    failed = scene.federated(subject)
    _assert_unavailable(failed, stale)
    assert "(bad_response)" in failed.json()["error_description"]
    assert scene.account("alice").refresh_lease is None
    started = time.monotonic()
    again = scene.federated(subject)
    assert again.status_code in (400, 503), again.text  # answered, not queued behind a lease
    assert time.monotonic() - started < 5


def test_a_token_endpoint_redirect_is_not_followed(tmp_path):
    """A token endpoint that answers 307 would have the refresh token and the client secret
    sent again to wherever it points (and step around the https rule checked when the
    connection was registered): the vault does not follow it, and nothing reaches the
    target."""
    from tests.support.ciba_live import serve_wsgi

    received: list[str] = []

    def target(environ, start_response):
        received.append(environ["wsgi.input"].read().decode())
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"access_token": "stolen", "token_type": "Bearer"}']

    with serve_wsgi(lambda url: target) as (target_url, _):

        def redirecting(environ, start_response):
            start_response("307 Temporary Redirect", [("Location", f"{target_url}/token")])
            return [b""]

        with serve_wsgi(lambda url: redirecting) as (token_url, _):
            client = upstream.UpstreamClient(
                client_id="vault",
                client_secret="client-secret-0123456789",
                auth_method="client_secret_post",
                authorize_url=f"{token_url}/authorize",
                token_url=f"{token_url}/token",
                revocation_url=None,
            )
            with pytest.raises(upstream.UpstreamError) as refused:
                upstream.refresh(client, "refresh-token-0123456789", time.time, 2.0)
    assert refused.value.kind == "unavailable"
    assert received == []


def test_a_failure_of_our_own_during_a_refresh_gives_the_lease_back(scene, monkeypatch):
    """Whatever fails while the lease is held (here the call itself, with an error that is
    not the upstream's), the lease is given back: every other request for the account
    would otherwise wait for a refresh that is no longer running."""
    subject, _ = _connected(scene)
    scene.expire_cached("alice")

    def broken(*args, **kwargs):
        raise RuntimeError("a defect of ours")

    monkeypatch.setattr(upstream, "refresh", broken)
    failed = scene.federated(subject)
    assert failed.status_code == 500 and "Traceback" not in failed.text
    assert scene.account("alice").refresh_lease is None


def test_a_rotated_refresh_token_that_cannot_be_saved_is_revoked(scene, monkeypatch, spy):
    """The upstream rotated the refresh token but saving it failed (the database refused):
    the new refresh token is held by nobody, so it is revoked upstream rather than left
    valid, and the lease is given back."""
    from vault import accounts

    subject, _ = _connected(scene)
    scene.expire_cached("alice")

    def database_refuses(*args, **kwargs):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(accounts, "_save_refresh", database_refuses)
    before = scene.calendar.stats()
    failed = scene.federated(subject)
    assert failed.status_code == 500
    rotated = spy.answers[-1].refresh_token
    assert rotated and rotated != scene.stored_refresh_token("alice")
    assert scene.calendar.stats()["revocations"] == before["revocations"] + 1
    assert calendar_refresh(scene.calendar.url, rotated).status_code == 400
    assert scene.account("alice").refresh_lease is None


# Headers sent a byte every 0.1 s for 5 s (each byte well within the read timeout), then
# an answer that would parse: only an overall deadline stops the call at its timeout.
TRICKLE_HEAD = b"HTTP/1.1 200 OK\r\nX-Slow: "
TRICKLE_TAIL = b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
TRICKLE_TIMEOUT = 1.0


def _trickling(url: str) -> upstream.UpstreamClient:
    return upstream.UpstreamClient(
        client_id="vault",
        client_secret="client-secret-0123456789",
        auth_method="client_secret_post",
        authorize_url=f"{url}/authorize",
        token_url=f"{url}/token",
        revocation_url=f"{url}/revoke",
    )


UPSTREAM_CALLS = {
    "refresh": lambda url: upstream.refresh(
        _trickling(url), "refresh-token-0123456789", time.time, TRICKLE_TIMEOUT
    ),
    "exchange_code": lambda url: upstream.exchange_code(
        _trickling(url),
        "code-0123456789",
        "https://vault.test/cb",
        "v" * 43,
        time.time,
        TRICKLE_TIMEOUT,
    ),
    "discover": lambda url: upstream.discover(
        f"{url}/.well-known/openid-configuration", TRICKLE_TIMEOUT
    ),
}


@pytest.mark.parametrize(
    ("call", "scheme"),
    [("refresh", "http"), ("refresh", "https"), ("exchange_code", "http"), ("discover", "http")],
)
def test_a_trickling_upstream_is_cut_off_at_the_timeout(call, scheme, tmp_path, monkeypatch):
    """requests' timeout bounds each socket read, not the call: a provider answering a byte
    at a time would hold a refresh past its account lease, and a second request would then
    send the same refresh token. Every upstream call ends at its timeout, as a timeout."""
    tls = None
    if scheme == "https":
        tls, ca_file = loopback_tls_context(tmp_path)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    with SlowEndpoint(TRICKLE_HEAD, b"a" * 50, TRICKLE_TAIL, tls=tls) as slow:
        started = time.monotonic()
        with pytest.raises(upstream.UpstreamError) as failed:
            UPSTREAM_CALLS[call](slow.url)
        elapsed = time.monotonic() - started
        assert slow.hung_up.wait(2), "the connection is closed, not left to the provider"
    assert failed.value.kind == "timeout"
    assert elapsed < TRICKLE_TIMEOUT + 1.0, f"the call took {elapsed:.1f} s"


def test_a_trickling_revocation_endpoint_is_cut_off_and_counts_as_not_revoked():
    """Revocation is best effort but bounded the same way: cut off at the timeout, and an
    answer cut short is not taken for an accepted revocation."""
    with SlowEndpoint(TRICKLE_HEAD, b"a" * 50, TRICKLE_TAIL) as slow:
        started = time.monotonic()
        revoked = upstream.revoke(
            _trickling(slow.url), "refresh-token-0123456789", "refresh_token", TRICKLE_TIMEOUT
        )
        elapsed = time.monotonic() - started
        assert slow.hung_up.wait(2)
    assert revoked is False
    assert elapsed < TRICKLE_TIMEOUT + 1.0, f"the call took {elapsed:.1f} s"


def _failing_within(seconds: float, url: str, timeout: tuple[float, float]) -> float:
    """GET `url` through a WatchedAdapter under a Deadline of `seconds`; the call must fail
    as a connection error. Returns how long it took."""
    with requests.Session() as session:
        session.mount("http://", WatchedAdapter())
        started = time.monotonic()
        with Deadline(seconds), pytest.raises(requests.ConnectionError):
            session.get(url, timeout=timeout)
        return time.monotonic() - started


def test_a_connect_that_hangs_ends_at_the_deadline(monkeypatch):
    """The deadline's timer can shut down only a socket that exists: while connecting, the
    connect itself gets no more than the time the call has left (here 1 s of a 10 s connect
    timeout), so an address that never answers cannot hold the call past its deadline."""
    given: list[float] = []

    def never_answers(address, timeout=None, *args, **kwargs):
        given.append(timeout)
        time.sleep(timeout if isinstance(timeout, int | float) else HANG_SECONDS)
        raise TimeoutError("timed out")  # what a connect that ran out of time raises

    monkeypatch.setattr(urllib3.util.connection, "create_connection", never_answers)
    elapsed = _failing_within(1.0, "http://127.0.0.1:9/never", (10, 10))
    assert given and given[0] <= 1.0
    assert elapsed < 2.0, f"the connect took {elapsed:.1f} s"
    assert socket.getdefaulttimeout() is None  # nothing global was changed


def test_a_name_lookup_that_hangs_ends_at_the_deadline(monkeypatch):
    """A name lookup blocks in the C library, where the deadline's timer cannot reach it (a
    slow authoritative server for a registered notification endpoint, say): under a deadline
    it runs on a helper thread and the call stops waiting when its time is up."""
    real_getaddrinfo = socket.getaddrinfo

    def slow_for_one_name(host, *args, **kwargs):
        if host == "slow-name.test":
            time.sleep(3)
        return real_getaddrinfo("127.0.0.1" if host == "slow-name.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_for_one_name)
    elapsed = _failing_within(0.5, "http://slow-name.test:9/never", (10, 10))
    assert elapsed < 1.5, f"the lookup held the call for {elapsed:.1f} s"


def test_each_further_address_gets_only_the_time_left(monkeypatch):
    """A name with several addresses that never answer: urllib3 alone tries each with the
    whole connect timeout again; under a deadline they share the time the call has left."""
    three = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"127.0.0.{n}", 9)) for n in (1, 2, 3)]
    real_getaddrinfo = socket.getaddrinfo

    def lookup(host, *args, **kwargs):
        return three if host == "three-addresses.test" else real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    tried: list[tuple[str, float | None]] = []

    def never_answers(self, address):
        tried.append((address[0], self.gettimeout()))
        time.sleep(self.gettimeout() or HANG_SECONDS)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket.socket, "connect", never_answers)
    elapsed = _failing_within(1.0, "http://three-addresses.test:9/never", (0.6, 10))
    assert elapsed < 1.6, f"the connects took {elapsed:.1f} s: {tried}"
    assert [address for address, _ in tried] == ["127.0.0.1", "127.0.0.2"]
    assert tried[0][1] == pytest.approx(0.6, abs=0.05) and tried[1][1] <= 0.45
