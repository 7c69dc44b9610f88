"""The whole demo scenario, unattended, as real processes on loopback.

`authserver demo --tour` starts the authserver, the broker and the calendar provider
as child processes and runs the tour: sign-in, the portfolio through token exchange,
a buy approved in headless Chromium on the approval page and executed, a second buy
denied and not executed, a calendar question that first gets the connect interrupt,
the person connecting, then the answer; sign-out. Afterwards the test reads what the
services stored: exactly one order, reads that name the agent in `act`, an audit row
for every step and a chain `audit verify` accepts, and no credential in the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.apps import scratch_database
from tests.support.live import PROJECT_ROOT, free_port, run_cli

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
TOUR_SECONDS = 300
# A credential-shaped run: tokens, codes and secrets are base64url or hex, 20+ characters.
CANDIDATE = re.compile(r"[A-Za-z0-9_\-]{20,}")
JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]+")


@dataclass
class TourRun:
    output: str
    returncode: int
    instance: Path
    database_url: str
    env: dict[str, str]
    cwd: Path


def _demo_env(database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "DEMO_"))}
    env.update(
        AUTHSERVER_DATABASE_URL=database_url,
        AUTHSERVER_AUDIT_LINK_INTERVAL="0",
        DEMO_BROKER_URL=f"http://127.0.0.1:{free_port()}",
        DEMO_CALENDAR_URL=f"http://127.0.0.1:{free_port()}",
        DEMO_AGENT_REDIRECT_URI=f"http://127.0.0.1:{free_port()}/callback",
        DEMO_TOUR_BROWSER=CHROMIUM,
        PYTHONPATH=str(PROJECT_ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def tour(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TourRun]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    cwd = tmp_path_factory.mktemp("demo")
    instance = cwd / "instance"
    sqlite_default = f"sqlite:///{instance / 'authserver.db'}"
    postgres = not database_url.startswith("sqlite")
    with scratch_database(database_url if postgres else sqlite_default) as url:
        port = free_port()
        env = _demo_env(url, port)
        command = [sys.executable, "-m", "authserver.cli.entry", "demo", "--tour"]
        finished = subprocess.run(  # noqa: S603
            [*command, "--port", str(port)],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TOUR_SECONDS,
            check=False,
        )
        yield TourRun(
            finished.stdout + finished.stderr, finished.returncode, instance, url, env, cwd
        )


def test_every_step_of_the_tour_went_as_expected(tour: TourRun) -> None:
    assert tour.returncode == 0, tour.output[-4000:]
    assert "Every step went as expected" in tour.output
    for step in (
        "Sign-in: authorization code flow with PKCE",
        "token exchange for one API",
        "CIBA with rich authorization requests",
        "A trade the person denies",
        "the token vault",
        "revoking the refresh token",
        "the audit log",
    ):
        assert step in tour.output, step


def test_the_portfolio_token_names_the_agent_and_the_broker_recorded_it(tour: TourRun) -> None:
    assert tour.returncode == 0, tour.output[-4000:]
    assert '"act": {' in tour.output and '"sub": "demo-agent"' in tour.output
    assert "agent> Portfolio of alice (USD):" in tour.output
    with closing(sqlite3.connect(tour.instance / "broker.db")) as broker:
        reads = broker.execute("SELECT endpoint, client_id, act FROM broker_reads").fetchall()
    assert reads, "the broker recorded no read"
    for endpoint, client_id, act in reads:
        assert client_id == "demo-agent"
        assert json.loads(act) == {"sub": "demo-agent"}, (endpoint, act)
    assert any("portfolio" in endpoint for endpoint, _, _ in reads), reads


def test_the_approved_buy_was_executed_once_and_the_denied_one_never(tour: TourRun) -> None:
    assert tour.returncode == 0, tour.output[-4000:]
    assert "opens" in tour.output and "in Chromium" in tour.output  # the page, in a browser
    assert re.search(r"agent> Approved\. Bought 10 NET at [\d.]+ USD", tour.output)
    assert re.search(r"agent> You declined NET-\d{4}: nothing was ordered\.", tour.output)
    with closing(sqlite3.connect(tour.instance / "broker.db")) as broker:
        orders = broker.execute(
            "SELECT side, symbol, quantity, limit_price_cents, status FROM broker_orders"
        ).fetchall()
    assert orders == [("buy", "NET", 10, 12000, "filled")]


def test_the_calendar_question_was_interrupted_then_answered(tour: TourRun) -> None:
    assert tour.returncode == 0, tour.output[-4000:]
    interrupt = tour.output.index('"error": "connection_required"')
    connect = tour.output.index("agent> Connect your calendar first: ")
    connected = tour.output.index("sees the calendar listed under connected accounts")
    answer = tour.output.index("agent> No, you are busy tomorrow 15:00-16:00")
    assert interrupt < connect < connected < answer


def test_the_audit_log_holds_every_step_and_verifies(tour: TourRun) -> None:
    assert tour.returncode == 0, tour.output[-4000:]
    listed = run_cli(["audit", "list", "--json", "--limit", "500"], tour.env, tour.cwd)
    assert listed.returncode == 0, listed.stderr
    events = {(row["event"], row["outcome"]) for row in json.loads(listed.stdout)}
    for expected in (
        ("login", "success"),
        ("consent", "success"),
        ("authorize", "success"),
        ("token.issued", "success"),
        ("token.exchanged", "success"),
        ("ciba.requested", "success"),
        ("ciba.decided", "approved"),
        ("ciba.decided", "denied"),
        ("vault.token_served", "refused"),
        ("vault.connected", "success"),
        ("vault.token_served", "success"),
        ("token.revoked", "success"),
    ):
        assert expected in events, expected
    verified = run_cli(["audit", "verify", "--json"], tour.env, tour.cwd)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True and report["problems"] == []


def _stored_digests(tour: TourRun) -> dict[str, set[str]]:
    engine = create_engine(tour.database_url)
    try:
        with engine.connect() as connection:
            refresh = set(connection.scalars(text("SELECT token_hash FROM refresh_tokens")))
            secrets = set(
                connection.scalars(
                    text("SELECT secret_hash FROM clients WHERE secret_hash IS NOT NULL")
                )
            )
    finally:
        engine.dispose()
    with closing(sqlite3.connect(tour.instance / "calendar.db")) as calendar:
        upstream = {
            row[0] for row in calendar.execute("SELECT token_hash FROM calendar_access_tokens")
        }
        upstream |= {
            row[0] for row in calendar.execute("SELECT token_hash FROM calendar_refresh_tokens")
        }
    return {"refresh token": refresh, "client secret": secrets, "upstream token": upstream}


def test_the_output_never_shows_a_refresh_token_an_upstream_token_or_a_client_secret(
    tour: TourRun,
) -> None:
    assert tour.returncode == 0, tour.output[-4000:]
    digests = _stored_digests(tour)
    assert digests["refresh token"] and digests["upstream token"] and digests["client secret"]
    candidates = set(CANDIDATE.findall(tour.output))
    for kind, stored in digests.items():
        leaked = [c for c in candidates if hashlib.sha256(c.encode()).hexdigest() in stored]
        assert not leaked, f"{len(leaked)} {kind} value(s) in the output"  # never echo one
    seeded = run_cli(["demo", "--seed-only", "--json"], tour.env, tour.cwd)
    secrets = [c["client_secret"] for c in json.loads(seeded.stdout)["clients"]]
    assert all(secret and secret not in tour.output for secret in secrets if secret)
    assert not JWT.search(tour.output), "a raw JWT reached the output"
    assert "<redacted sha256:" in tour.output  # the credentials were there, masked
