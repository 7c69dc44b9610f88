"""Races on single-use credentials, over real HTTP, separate connections, at the same moment.

RFC 6749 §4.1.2: an authorization code is used once; RFC 9700 §4.14.2: a refresh token
is used once and a second presentation revokes the family. Redemption holds a row lock
(PostgreSQL) or the database write lock (SQLite), so of 20 simultaneous requests exactly
one wins, whether they reach one server or two server processes sharing the database.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from authserver.models import Consent, Grant
from tests.support.apps import reset_database
from tests.support.db import issued_counts, rows
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import Pkce, code_params, csrf_token, hidden_fields, query_of
from tests.support.live import LiveBrowser, live_server, server_env, server_processes

RACERS = 20


@pytest.fixture(scope="module")
def server(migrated_database):
    with live_server(migrated_database) as running:
        yield running


@pytest.fixture(scope="module")
def children(server, migrated_database, tmp_path_factory):
    """Two `authserver run` processes on the same database and key ring."""
    env = server_env(migrated_database, server.url)
    with server_processes(2, env, tmp_path_factory.mktemp("children")) as urls:
        yield urls


@pytest.fixture(params=["one_server", "two_processes"])
def token_urls(request, server):
    reset_database(server.app)
    path = urlsplit(server.endpoint("token_endpoint")).path
    bases = [server.url] if request.param == "one_server" else request.getfixturevalue("children")
    return [base + path for base in bases]


@pytest.fixture
def rp(server, token_urls):
    make_user(server.app, "alice")
    return make_client(server.app, "race-rp")


def race(urls: list[str], data: dict[str, str], auth: tuple[str, str]) -> list[requests.Response]:
    """RACERS requests released together, each on its own connection, spread over `urls`."""
    barrier = threading.Barrier(RACERS)

    def one(index: int) -> requests.Response:
        with requests.Session() as http:
            barrier.wait(timeout=30)
            return http.post(urls[index % len(urls)], data=data, auth=auth, timeout=60)

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def fresh_code(server, rp) -> tuple[str, Pkce]:
    pkce = Pkce.new()
    params = code_params(rp.client_id, rp.redirect_uri, pkce)
    url = server.endpoint("authorization_endpoint") + "?" + urlencode(params)
    callback = LiveBrowser(server.url, "alice", DEFAULT_PASSWORD).authorize(url)
    return query_of(callback)["code"], pkce


def introspect(server, rp, token: str) -> dict:
    response = requests.post(
        server.endpoint("introspection_endpoint"),
        data={"token": token},
        auth=rp.basic_auth,
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()


def assert_one_winner(responses: list[requests.Response]) -> requests.Response:
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [400] * (RACERS - 1), statuses
    losers = [response for response in responses if response.status_code != 200]
    assert {response.json()["error"] for response in losers} == {"invalid_grant"}
    return next(response for response in responses if response.status_code == 200)


def test_code_redeemed_concurrently_succeeds_once(server, token_urls, rp):
    """RFC 6749 §4.1.2: one code, 20 simultaneous redemptions, one token response; the
    replays then revoke what the winner got (RFC 6749 §4.1.2 SHOULD, RFC 9700 §4.2.4)."""
    code, pkce = fresh_code(server, rp)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": pkce.verifier,
    }
    winner = assert_one_winner(race(token_urls, data, rp.basic_auth)).json()
    counts = issued_counts(server.app)
    assert counts["grants"] == 1 and counts["access_tokens"] == 1
    assert counts["refresh_tokens"] == 1
    (grant,) = rows(server.app, Grant)
    assert grant.revoked_at is not None and grant.revoked_reason == "code_replayed"
    assert introspect(server, rp, winner["access_token"]) == {"active": False}
    assert introspect(server, rp, winner["refresh_token"]) == {"active": False}


def test_refresh_token_presented_concurrently_rotates_once(server, token_urls, rp):
    """RFC 9700 §4.14.2: 20 simultaneous refreshes with one token: one rotation; the
    others are reuse, which revokes the family, the winner's new tokens included."""
    code, pkce = fresh_code(server, rp)
    first = requests.post(
        token_urls[0],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": pkce.verifier,
        },
        auth=rp.basic_auth,
        timeout=10,
    ).json()
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    winner = assert_one_winner(race(token_urls, data, rp.basic_auth)).json()
    counts = issued_counts(server.app)
    assert counts["access_tokens"] == 2 and counts["refresh_tokens"] == 2
    (grant,) = rows(server.app, Grant)
    assert grant.revoked_at is not None and grant.revoked_reason == "refresh_token_reused"
    for token in (winner["access_token"], winner["refresh_token"], first["access_token"]):
        assert introspect(server, rp, token) == {"active": False}
    again = requests.post(
        token_urls[-1],
        data={"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]},
        auth=rp.basic_auth,
        timeout=10,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_parallel_wrong_passwords_get_no_more_guesses_than_the_limit(server):
    """ASVS V2.2.1: the sign-in limit (10 failures per username and address in the window)
    holds against a burst: 20 wrong guesses for one account released together give exactly
    10 wrong-password answers and 10 throttled ones, and the right password is refused
    afterwards. Each attempt is counted before its password is checked, atomically; a
    check-then-count would let the whole burst through on PostgreSQL."""
    reset_database(server.app)
    make_user(server.app, "carol")
    login = f"{server.url}/login"
    sessions = []
    for _ in range(RACERS):
        http = requests.Session()
        page = http.get(login, timeout=10).text
        sessions.append((http, csrf_token(page)))
    barrier = threading.Barrier(RACERS)

    def guess(index: int) -> int:
        http, token = sessions[index]
        barrier.wait(timeout=30)
        form = {"csrf_token": token, "username": "carol", "password": f"wrong-{index}"}
        return http.post(login, data=form, allow_redirects=False, timeout=60).status_code

    with ThreadPoolExecutor(RACERS) as pool:
        statuses = sorted(pool.map(guess, range(RACERS)))
    assert statuses == [401] * 10 + [429] * 10, statuses
    http, token = sessions[0]
    form = {"csrf_token": token, "username": "carol", "password": DEFAULT_PASSWORD}
    assert http.post(login, data=form, allow_redirects=False, timeout=60).status_code == 429
    for http, _ in sessions:
        http.close()


def test_first_approvals_at_once_all_succeed_into_one_consent(server):
    """A person approving a client in several tabs at once (each a first approval): every
    approval gets its code and the consents merge into one row. Both used to find no row
    and insert one; on PostgreSQL all but one were a unique violation, a 500."""
    reset_database(server.app)
    make_user(server.app, "alice")
    rp = make_client(server.app, "tabs-rp", scope="openid profile email")
    person = requests.Session()
    page = person.get(f"{server.url}/login", timeout=10).text
    form = {"csrf_token": csrf_token(page), "username": "alice", "password": DEFAULT_PASSWORD}
    assert person.post(f"{server.url}/login", data=form, allow_redirects=False).status_code == 302
    scopes = ["openid", "openid profile", "openid email", "openid profile email"]
    forms = []
    for index in range(8):
        params = code_params(rp.client_id, rp.redirect_uri, Pkce.new(), scope=scopes[index % 4])
        to_consent = person.get(
            server.endpoint("authorization_endpoint"),
            params=params,
            allow_redirects=False,
            timeout=10,
        )
        consent_page = person.get(server.url + to_consent.headers["Location"], timeout=10).text
        forms.append([*hidden_fields(consent_page), ("decision", "approve")])
    barrier = threading.Barrier(len(forms))

    def approve(fields: list[tuple[str, str]]) -> requests.Response:
        with requests.Session() as tab:
            tab.cookies.update(person.cookies)
            barrier.wait(timeout=30)
            return tab.post(f"{server.url}/consent", data=fields, allow_redirects=False, timeout=60)

    with ThreadPoolExecutor(len(forms)) as pool:
        responses = list(pool.map(approve, forms))
    assert [r.status_code for r in responses] == [302] * len(forms)
    assert all("code" in query_of(r.headers["Location"]) for r in responses)
    (consent,) = rows(server.app, Consent)
    assert set(consent.scope.split()) == {"openid", "profile", "email"}
