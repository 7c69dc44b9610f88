"""`python bench/vault.py`: what the token vault costs. JSON on stdout, progress on stderr.

- ``federated_exchange``: RFC 8693 exchanges for a federated token served from the warm
  cache (no upstream call), against gunicorn with one sync worker pinned to one core
  (``taskset``), driven by wrk (8 connections) pinned to the other core; SQLite.
- ``unseal_us``: the vault's own cost of opening a cached token, in process
  (``vault.unseal`` of a sealed 43-character token: unwrap the data key, decrypt).
- ``refresh``: sequential exchanges against the same server, p50 latency when served
  from the cache and when the cache has expired and the vault refreshes upstream (the
  mock calendar on loopback, rotating refresh tokens); the difference is the refresh's
  added latency.
- ``burst``: 50 concurrent exchanges after expiry, against gunicorn with 4 worker
  processes on the same database: how many upstream refreshes they caused (should be 1).

Environment: BENCH_SECONDS (5), BENCH_WARMUP_SECONDS (1). Runs in about half a minute.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

if __package__ in (None, ""):  # `python bench/vault.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from sqlalchemy import update  # noqa: E402

from authserver.admin import TOKEN_EXCHANGE, create_client  # noqa: E402
from authserver.db import transaction  # noqa: E402
from bench import loadgen, servers  # noqa: E402
from bench.fixtures import CSRF, HIDDEN, Pkce  # noqa: E402
from bench.harness import (  # noqa: E402
    ROOT,
    Cleanup,
    busy,
    ensure_wrk,
    free_port,
    log,
    pick_cores,
    stop_process,
    temp_dir,
    wait_http,
)
from vault import KeyRing, associated_data, seal, unseal  # noqa: E402
from vault.connect import create_connection  # noqa: E402
from vault.models import ConnectedAccount  # noqa: E402

FEDERATED = "urn:authserver:token-type:federated-access-token"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
AGENT_ID = "bench-agent"
CALENDAR_CLIENT = ("authserver-vault", secrets.token_urlsafe(24))
CALENDAR_USER = ("alice", "alice-calendar-pw")
LATENCY_SAMPLES = 30
BURST = 50
BURST_WORKERS = 4


def _html_fields(page: str) -> list[tuple[str, str]]:
    return [(k, html.unescape(v)) for k, v in HIDDEN.findall(page)]


def start_calendar(cleanup: Cleanup, workdir: Path, authserver_url: str, core: int) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CALENDAR_ISSUER": url,
        "CALENDAR_DATABASE_URL": f"sqlite:///{workdir / 'calendar.db'}",
        "CALENDAR_SECRET_KEY": secrets.token_urlsafe(32),
        "CALENDAR_TEST_CONTROLS": "1",
        "CALENDAR_CLIENTS": json.dumps(
            [
                {
                    "client_id": CALENDAR_CLIENT[0],
                    "client_secret": CALENDAR_CLIENT[1],
                    "redirect_uris": [f"{authserver_url}/connections/calendar/callback"],
                }
            ]
        ),
    }
    command = ["taskset", "-c", str(core), sys.executable, "-m", "demo_agent.calendar"]
    with (workdir / "calendar.log").open("ab") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cleanup.push("mock calendar", lambda: stop_process(process, "mock calendar"))
    wait_http(f"{url}/.well-known/oauth-authorization-server", lambda: process.poll() is None)
    return url


def register(server: servers.AuthServer, calendar_url: str) -> servers.ClientCredentials:
    """The agent client and the calendar connection, with the app's own admin functions."""
    runtime = server.runtime
    assert runtime is not None
    with transaction(runtime.session_factory) as session:
        agent = create_client(
            session,
            name="Bench agent",
            client_id=AGENT_ID,
            redirect_uris=[servers.REDIRECT_URI],
            grant_types=["authorization_code", TOKEN_EXCHANGE],
            scope="openid",
        )
        create_connection(
            session,
            runtime.keyring,
            time.time,
            name="calendar",
            display_name="Calendar",
            client_id=CALENDAR_CLIENT[0],
            client_secret=CALENDAR_CLIENT[1],
            authorize_url=f"{calendar_url}/authorize",
            token_url=f"{calendar_url}/token",
            revocation_url=f"{calendar_url}/revoke",
            discovery_url=None,
            scopes=["calendar.freebusy", "calendar.read"],
            allowed_clients=[AGENT_ID],
        )
    return servers.ClientCredentials(AGENT_ID, agent.client_secret or "")


def sign_in(server: servers.AuthServer) -> requests.Session:
    browser = requests.Session()
    page = browser.get(server.url + "/login", timeout=10).text
    match = CSRF.search(page)
    assert match is not None
    form = {"username": servers.USERNAME, "password": server.password, "csrf_token": match[1]}
    browser.post(server.url + "/login", data=form, timeout=30).raise_for_status()
    return browser


def connect_calendar(browser: requests.Session, server: servers.AuthServer) -> None:
    """The user links the calendar: authserver -> calendar sign-in and consent -> back."""
    response = browser.get(server.url + "/connections/calendar/connect", timeout=30)
    for _ in range(4):
        text = response.text
        fields = _html_fields(text)
        if 'name="password"' in text and 'name="decision"' not in text:
            fields += [("username", CALENDAR_USER[0]), ("password", CALENDAR_USER[1])]
        elif 'name="decision"' in text:
            fields.append(("decision", "approve"))
        else:
            break
        action = urljoin(response.url, text.split('action="', 1)[1].split('"', 1)[0])
        response = browser.post(action, data=fields, timeout=30)
    if not response.url.endswith("/account/connections"):
        raise RuntimeError(f"connect flow ended at {response.url} ({response.status_code})")


def subject_token(
    browser: requests.Session, server: servers.AuthServer, agent: servers.ClientCredentials
) -> str:
    """The agent's user token: authorization code + PKCE, consent approved once."""
    pkce = Pkce()
    params = {
        "response_type": "code",
        "client_id": agent.client_id,
        "redirect_uri": servers.REDIRECT_URI,
        "scope": "openid",
        "state": "bench",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    answer = browser.get(server.url + "/authorize?" + urlencode(params), allow_redirects=False)
    location = answer.headers.get("Location", "")
    if location.startswith("/consent"):
        page = browser.get(server.url + location, timeout=10).text
        fields = [*_html_fields(page), ("decision", "approve")]
        answer = browser.post(server.url + "/consent", data=fields, allow_redirects=False)
        location = answer.headers["Location"]
    code = dict(item.split("=", 1) for item in location.split("?", 1)[1].split("&"))["code"]
    token = requests.post(
        server.url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": servers.REDIRECT_URI,
            "code_verifier": pkce.verifier,
        },
        auth=(agent.client_id, agent.client_secret),
        timeout=30,
    )
    token.raise_for_status()
    return str(token.json()["access_token"])


def exchange_body(subject: str) -> str:
    return urlencode(
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS,
            "requested_token_type": FEDERATED,
            "connection": "calendar",
        }
    )


def exchanger(url: str, agent: servers.ClientCredentials, subject: str) -> Callable[[], Any]:
    body = exchange_body(subject)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def send() -> requests.Response:
        return requests.post(
            url + "/token",
            data=body,
            headers=headers,
            auth=(agent.client_id, agent.client_secret),
            timeout=60,
        )

    return send


def expire_cache(server: servers.AuthServer) -> None:
    assert server.runtime is not None
    with transaction(server.runtime.session_factory) as session:
        session.execute(update(ConnectedAccount).values(access_token_expires_at=time.time() - 60))


def calendar_stats(calendar_url: str) -> dict[str, int]:
    return dict(requests.get(calendar_url + "/_test/stats", timeout=10).json())


def timed(send: Callable[[], requests.Response]) -> float:
    started = time.perf_counter()
    response = send()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"exchange failed: {response.status_code} {response.text[:200]}")
    return elapsed * 1000


def refresh_latency(
    server: servers.AuthServer, send: Callable[[], requests.Response], calendar_url: str
) -> dict[str, Any]:
    before = calendar_stats(calendar_url)
    cached, refreshed = [], []
    for _ in range(LATENCY_SAMPLES):
        cached.append(timed(send))
        expire_cache(server)
        refreshed.append(timed(send))
    after = calendar_stats(calendar_url)
    cached_p50, refreshed_p50 = statistics.median(cached), statistics.median(refreshed)
    return {
        "samples": LATENCY_SAMPLES,
        "cached_p50_ms": round(cached_p50, 2),
        "refreshed_p50_ms": round(refreshed_p50, 2),
        "added_by_refresh_p50_ms": round(refreshed_p50 - cached_p50, 2),
        "upstream_refreshes": after["refresh_grants"] - before["refresh_grants"],
    }


def start_workers(cleanup: Cleanup, server: servers.AuthServer, workers: int) -> str:
    """The same app (same database, same issuer) under gunicorn with `workers` processes."""
    port = free_port()
    command = [
        str(servers.GUNICORN),
        f"--workers={workers}",
        "--worker-class=sync",
        f"--bind=127.0.0.1:{port}",
        "--log-level=warning",
        "authserver:create_app()",
    ]
    with (server.workdir / "gunicorn-burst.log").open("ab") as output:
        process = subprocess.Popen(
            command,
            env=server.env,
            cwd=server.workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cleanup.push("burst gunicorn", lambda: stop_process(process, "burst gunicorn"))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/.well-known/openid-configuration", lambda: process.poll() is None)
    return url


def burst(
    server: servers.AuthServer, send: Callable[[], requests.Response], calendar_url: str
) -> dict[str, Any]:
    expire_cache(server)
    before = calendar_stats(calendar_url)
    gate = threading.Barrier(BURST)

    def one(_: int) -> int:
        gate.wait(timeout=30)
        return send().status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=BURST) as pool:
        statuses = list(pool.map(one, range(BURST)))
    took = time.perf_counter() - started
    after = calendar_stats(calendar_url)
    return {
        "requests": BURST,
        "server": f"gunicorn, {BURST_WORKERS} sync worker processes, SQLite",
        "served_200": statuses.count(200),
        "upstream_refreshes": after["refresh_grants"] - before["refresh_grants"],
        "upstream_refresh_attempts": after["refresh_attempts"] - before["refresh_attempts"],
        "seconds": round(took, 2),
    }


def unseal_cost() -> dict[str, Any]:
    """Median over rounds of the per-call time of vault.unseal on a cached-token record."""
    ring = KeyRing.generate()
    aad = associated_data("vault_account", "0" * 36, "1" * 36, "calendar", "access_token")
    sealed = seal(ring, secrets.token_urlsafe(32).encode(), aad)
    calls, rounds = 5000, 7
    per_call = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            unseal(ring, sealed, aad)
        per_call.append((time.perf_counter() - started) / calls * 1e6)
    return {
        "unseal_us": round(statistics.median(per_call), 2),
        "unseal_us_min": round(min(per_call), 2),
        "calls_per_round": calls,
        "rounds": rounds,
    }


def benchmark(cleanup: Cleanup) -> dict[str, Any]:
    seconds = int(os.environ.get("BENCH_SECONDS") or 5)
    warmup = int(os.environ.get("BENCH_WARMUP_SECONDS") or 1)
    server_core, load_core = pick_cores()
    ensure_wrk()
    output: dict[str, Any] = {"busy_at_start": busy()}
    work = temp_dir(cleanup, "vault-bench-")
    server = servers.AuthServer("sqlite", f"sqlite:///{work / 'authserver.db'}", work)
    log("authserver init")
    servers.prepare(server, cleanup)
    calendar_url = start_calendar(cleanup, work, server.url, load_core)
    agent = register(server, calendar_url)
    servers.start(server, cleanup, server_core)
    log("connecting the calendar and signing the agent in")
    browser = sign_in(server)
    connect_calendar(browser, server)
    subject = subject_token(browser, server, agent)
    send = exchanger(server.url, agent, subject)
    timed(send)  # warms the cache
    os.sched_setaffinity(0, {load_core})  # this process and what it starts leave core 0 alone

    log(f"warm-cache exchanges: wrk {warmup}s warm-up, {seconds}s measured")
    pid = servers.worker_pid(server)
    env = {"WRK_BODY": exchange_body(subject), "WRK_AUTH": agent.basic}
    loadgen.run_wrk(
        "wrk_post.lua", server.url + "/token", loadgen.Load(warmup, load_core), env, pid
    )
    before = calendar_stats(calendar_url)
    raw = loadgen.run_wrk(
        "wrk_post.lua", server.url + "/token", loadgen.Load(seconds, load_core), env, pid
    )
    figures = loadgen._figures(raw)
    figures["upstream_refreshes_during_run"] = (
        calendar_stats(calendar_url)["refresh_grants"] - before["refresh_grants"]
    )
    figures["method"] = (
        "gunicorn 1 sync worker pinned with taskset to core "
        f"{server_core}; wrk -t1 -c8 pinned to core {load_core}; SQLite; audit on"
    )
    output["federated_exchange"] = figures
    log("unseal micro-benchmark")
    output["cached_token_decrypt"] = unseal_cost()
    log("refresh latency")
    output["refresh"] = refresh_latency(server, send, calendar_url)
    log(f"burst of {BURST} after expiry, {BURST_WORKERS} worker processes")
    burst_url = start_workers(cleanup, server, BURST_WORKERS)
    output["burst"] = burst(server, exchanger(burst_url, agent, subject), calendar_url)
    output["busy_at_end"] = busy()
    return output


def main() -> int:
    with Cleanup() as cleanup:
        result = benchmark(cleanup)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
