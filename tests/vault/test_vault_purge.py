"""Purging connected accounts nobody uses (DESIGN "Token vault").

"Accounts unused for a configurable period are purged" (AUTHSERVER_VAULT_UNUSED_DAYS,
default 90): by `authserver vault purge` and by housekeeping.purge. An account
counts as used when the vault serves a token for it; one never used counts from
its creation. Stale connect states go too.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from sqlalchemy import select, update

from authserver.db import transaction
from authserver.housekeeping import DAY, purge
from tests.support.apps import TEST_ISSUER
from tests.support.calendar import register_calendar
from tests.support.factories import make_user
from tests.support.live import CONSOLE_SCRIPT, run_cli, server_env
from vault.accounts import federated_token, store_account
from vault.connect import begin
from vault.models import ConnectedAccount, Connection, ConnectState
from vault.upstream import UpstreamTokens


@pytest.fixture
def connection(app) -> Connection:
    register_calendar(app, "http://127.0.0.1:9", ["agent"])  # never called: nothing expires
    with app.extensions["authserver"].session_factory() as session:
        found = session.get(Connection, "calendar")
    assert found is not None
    return found


def _account(app, connection: Connection, username: str, **times: float | None) -> str:
    """A connected account holding a valid cached token; `times` set its clock columns."""
    runtime = app.extensions["authserver"]
    user_id = make_user(app, username).id
    tokens = UpstreamTokens(
        access_token=f"at-{username}-0123456789",
        expires_at=time.time() + 3600,
        refresh_token=f"rt-{username}-0123456789",
        scopes=["calendar.freebusy"],
    )
    with transaction(runtime.session_factory) as session:
        account = store_account(
            session, runtime.vault, connection, user_id, tokens, ["calendar.freebusy"]
        ).account
        session.flush()
        values = {k: (int(v) if v is not None else None) for k, v in times.items()}
        session.execute(
            update(ConnectedAccount).where(ConnectedAccount.id == account.id).values(**values)
        )
    return user_id


def _remaining(app) -> set[str]:
    with app.extensions["authserver"].session_factory() as session:
        return set(session.scalars(select(ConnectedAccount.user_id)))


def _ago(days: float) -> float:
    return time.time() - days * DAY


def _four_accounts(app, connection: Connection) -> dict[str, str]:
    return {
        "stale": _account(app, connection, "alice", last_used_at=_ago(100), created_at=_ago(200)),
        "recent": _account(app, connection, "bob", last_used_at=_ago(89), created_at=_ago(200)),
        "never_old": _account(app, connection, "carol", last_used_at=None, created_at=_ago(91)),
        "never_new": _account(app, connection, "dave", last_used_at=None, created_at=_ago(1)),
    }


def test_housekeeping_purges_unused_accounts_and_keeps_used_ones(app, connection):
    """DESIGN token vault: accounts unused for the period (90 days here) are deleted, with
    their ciphertext; those used within it, or created within it, are kept."""
    ids = _four_accounts(app, connection)
    runtime = app.extensions["authserver"]
    report = purge(runtime, 90)
    assert report["accounts"] == 2
    assert _remaining(app) == {ids["recent"], ids["never_new"]}
    assert purge(runtime, 90)["accounts"] == 0, "nothing left to purge"


def test_serving_a_token_counts_as_use(app, connection):
    """An account the vault serves from is in use: serving refreshes last_used_at, so the
    next purge keeps it."""
    runtime = app.extensions["authserver"]
    user_id = _account(app, connection, "alice", last_used_at=_ago(100), created_at=_ago(200))
    served = federated_token(runtime.vault, connection, user_id, [])
    assert served.access_token == "at-alice-0123456789" and not served.refreshed
    assert purge(runtime, 90)["accounts"] == 0
    assert _remaining(app) == {user_id}


def test_stale_connect_states_are_purged(app, connection):
    """A connect flow never finished leaves a state; expired ones are deleted."""
    runtime = app.extensions["authserver"]
    user_id = make_user(app, "alice").id
    for clock in (lambda: _ago(1), time.time):
        with transaction(runtime.session_factory) as session:
            begin(
                session,
                runtime.keyring,
                clock,
                connection,
                user_id,
                [],
                "/account/connections",
                f"{TEST_ISSUER}/connections/calendar/callback",
            )
    assert purge(runtime, 90)["connect_states"] == 1
    with runtime.session_factory() as session:
        left = list(session.scalars(select(ConnectState.expires_at)))
    assert len(left) == 1 and left[0] > time.time()


def test_vault_purge_cli(app, connection, migrated_database, tmp_path):
    """`authserver vault purge` (DESIGN CLI): --unused-days, else AUTHSERVER_VAULT_UNUSED_DAYS."""
    ids = _four_accounts(app, connection)
    env = server_env(migrated_database, TEST_ISSUER)
    done = run_cli(["vault", "purge", "--unused-days", "95", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accounts"] == 1
    assert _remaining(app) == {ids["recent"], ids["never_old"], ids["never_new"]}

    env["AUTHSERVER_VAULT_UNUSED_DAYS"] = "60"
    done = run_cli(["vault", "purge", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accounts"] == 2
    assert _remaining(app) == {ids["never_new"]}

    refused = run_cli(["vault", "purge", "--unused-days", "0"], env, tmp_path)
    assert refused.returncode == 2 and "--unused-days" in refused.stderr
    assert _remaining(app) == {ids["never_new"]}


def test_an_account_used_after_the_listing_is_kept(app, connection, monkeypatch):
    """A purge lists the unused accounts first and removes them one by one (each revoked
    upstream first, which takes time). An account an agent was served from in between is
    in use again: it is kept, not revoked and deleted."""
    from vault import retirement

    user_id = _account(app, connection, "alice", last_used_at=_ago(100), created_at=_ago(200))
    listing = retirement.unused_accounts

    def listed_then_used(session, unused_since):
        stale = listing(session, unused_since)
        with transaction(app.extensions["authserver"].session_factory) as writer:
            writer.execute(
                update(ConnectedAccount)
                .where(ConnectedAccount.user_id == user_id)
                .values(last_used_at=int(time.time()))
            )
        return stale

    monkeypatch.setattr(retirement, "unused_accounts", listed_then_used)
    assert purge(app.extensions["authserver"], 90)["accounts"] == 0
    assert _remaining(app) == {user_id}


def test_vault_purge_every_keeps_running(app, connection, migrated_database, tmp_path):
    """`vault purge --every SECONDS --json` (the compose stack's housekeeping service):
    purges at once, then again after each interval, one JSON report per line."""
    ids = _four_accounts(app, connection)
    env = {**server_env(migrated_database, TEST_ISSUER), "AUTHSERVER_VAULT_UNUSED_DAYS": "95"}
    with subprocess.Popen(
        [str(CONSOLE_SCRIPT), "vault", "purge", "--every", "1", "--json"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            first = json.loads(process.stdout.readline())
            second = json.loads(process.stdout.readline())
            assert process.poll() is None  # still running after two rounds
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert first["accounts"] == 1 and second["accounts"] == 0
    assert second["at"] >= first["at"] + 1
    assert _remaining(app) == {ids["recent"], ids["never_old"], ids["never_new"]}
    refused = run_cli(["vault", "purge", "--every", "0"], env, tmp_path)
    assert refused.returncode == 2 and "--every" in refused.stderr
