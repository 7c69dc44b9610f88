"""Concurrent federated-token requests share one upstream refresh (DESIGN "Token vault").

"Concurrent requests for the same account share one upstream refresh (row lock on
PostgreSQL, equivalent on SQLite), and a rotated upstream refresh token is saved
atomically: upstreams that rotate refresh tokens must work (a race must never lose
the account)." The mock calendar rotates refresh tokens and revokes the whole
family when a used one comes back (RFC 9700 §4.14.2), so a second refresh with the
same token would be seen (refresh_attempts) and would kill the account.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from tests.support.calendar import live_calendar, register_calendar
from tests.support.factories import make_resource, make_user
from tests.support.live import ServerProcess, free_port, server_env
from tests.support.vault_live import (
    FREEBUSY_WINDOW,
    MACHINE_API,
    VaultScene,
    expire_cached,
    federated,
    follow_connect,
    leaks,
    make_agent,
    signed_in,
    user_token,
    vault_scene,
    wait_until_up,
)
from vault.models import ACTIVE, ConnectedAccount

BURST = 50


@pytest.fixture
def scene(app, migrated_database, tmp_path) -> Iterator[VaultScene]:
    with vault_scene(app, migrated_database, tmp_path) as scene:
        yield scene


def burst(count: int, send: Callable[[int], requests.Response]) -> list[requests.Response]:
    """`count` requests released together (a barrier), each on its own connection."""
    start = threading.Barrier(count)

    def one(index: int) -> requests.Response:
        start.wait(timeout=30)
        return send(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def _account(app, user_id: str) -> ConnectedAccount:
    with app.extensions["authserver"].session_factory() as session:
        account = session.scalar(
            select(ConnectedAccount).where(ConnectedAccount.user_id == user_id)
        )
    assert account is not None
    return account


def _assert_one_refresh(responses, before, after, previous_token: str) -> str:
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * len(responses), [r.text for r in responses if r.status_code != 200]
    tokens = {r.json()["access_token"] for r in responses}
    assert len(tokens) == 1, "every request got the one refreshed token"
    assert previous_token not in tokens
    assert after["refresh_grants"] - before["refresh_grants"] == 1
    assert after["refresh_attempts"] - before["refresh_attempts"] == 1
    return tokens.pop()


def test_fifty_concurrent_requests_share_one_upstream_refresh(scene):
    """DESIGN token vault: concurrent requests for one account whose access token expired
    share one upstream refresh; all are served; the rotated refresh token is saved, so the
    account keeps working (RFC 9700 §4.14.2 reuse would have revoked it)."""
    scene.connect("alice")
    subject = scene.subject_token("alice")
    warm = scene.federated(subject)
    assert warm.status_code == 200, warm.text
    scene.expire_cached("alice")
    before = scene.calendar.stats()
    responses = burst(BURST, lambda _: scene.federated(subject))
    after = scene.calendar.stats()
    token = _assert_one_refresh(responses, before, after, warm.json()["access_token"])
    assert scene.freebusy(token).status_code == 200
    account = scene.account("alice")
    assert scene.vault.refreshes == [account.id]
    assert account.status == ACTIVE and account.refresh_lease is None
    served = scene.events("vault.token_served")
    assert len([e for e in served if e.outcome == "success"]) == BURST + 1
    assert sum(bool(e.details["refreshed"]) for e in served) == 1

    scene.expire_cached("alice")
    again = scene.federated(subject)
    assert again.status_code == 200, again.text
    assert scene.calendar.stats()["refresh_grants"] == after["refresh_grants"] + 1
    assert scene.freebusy(again.json()["access_token"]).status_code == 200


def test_concurrent_requests_across_server_processes_share_one_refresh(
    app, migrated_database, tmp_path: Path
):
    """DESIGN token vault: "row lock on PostgreSQL, equivalent on SQLite": two server
    processes sharing the database still refresh upstream once for a burst, and the saved
    rotated refresh token keeps the account usable. Runs on SQLite and PostgreSQL."""
    ports = [free_port(), free_port()]
    issuer = f"http://127.0.0.1:{ports[0]}"
    with live_calendar(issuer, tmp_path) as calendar:
        alice = make_user(app, "alice").id
        make_resource(app, MACHINE_API, ("read",))
        agent = make_agent(app)
        register_calendar(app, calendar.url, ["agent"])
        env = server_env(migrated_database, issuer)
        processes = [ServerProcess(port, env, tmp_path) for port in ports]
        try:
            for process in processes:
                wait_until_up(process)
            urls = [process.url for process in processes]
            connect = f"{issuer}/connections/calendar/connect?scope=calendar.freebusy"
            follow_connect(signed_in(issuer, "alice"), connect, "alice")
            subject = user_token(issuer, agent, "alice")
            warm = [federated(url, agent, subject) for url in urls]
            assert [r.status_code for r in warm] == [200, 200], [r.text for r in warm]
            first = warm[0].json()["access_token"]

            expire_cached(app, alice)
            calendar.expire_access_tokens()
            before = calendar.stats()
            responses = burst(BURST, lambda i: federated(urls[i % 2], agent, subject))
            after = calendar.stats()
            token = _assert_one_refresh(responses, before, after, first)
            assert _freebusy(calendar.url, token).status_code == 200
            account = _account(app, alice)
            assert account.status == ACTIVE and account.refresh_lease is None

            expire_cached(app, alice)
            again = federated(urls[1], agent, subject)
            assert again.status_code == 200, again.text
            assert calendar.stats()["refresh_grants"] == after["refresh_grants"] + 1
            served = {first, token, again.json()["access_token"]}
        finally:
            for process in processes:
                process.stop()
        for process in processes:
            assert leaks(process.log.read_bytes(), sorted(served)) == []


def _freebusy(calendar_url: str, token: str) -> requests.Response:
    return requests.get(
        f"{calendar_url}/freebusy",
        params=FREEBUSY_WINDOW,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
