"""Mock calendar provider on a real loopback socket (threaded Werkzeug server, requests).

End to end: the browser steps with CSRF over HTTP, the API, refresh rotation
under concurrency (RFC 9700 §4.14.2) and the ``python -m demo_agent.calendar`` CLI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import requests
from flask import Flask

from tests.demo.conftest import CalendarFlow, RequestsHttp, redirect_params

RANGE = ("2030-01-01T00:00:00+00:00", "2030-01-02T00:00:00+00:00")


def test_full_flow_over_http(calendar_server: tuple[str, Flask]) -> None:
    """RFC 6749 §4.1 + RFC 7636 over HTTP: sign in, consent with CSRF, exchange, API, refresh."""
    base_url, _ = calendar_server
    flow = CalendarFlow(RequestsHttp(base_url))
    meta = flow.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == base_url
    params, verifier = flow.authorization_params(scope="calendar.freebusy offline_access")
    answer = redirect_params(flow.authorize(params))
    assert answer["state"] == params["state"] and answer["iss"] == base_url
    tokens = flow.exchange(answer["code"], verifier).json()
    assert flow.api("/freebusy", tokens["access_token"], *RANGE).status == 200
    assert flow.api("/events", tokens["access_token"], *RANGE).status == 403
    rotated = flow.refresh(tokens["refresh_token"]).json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert flow.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_missing_csrf_over_http_issues_no_code(calendar_server: tuple[str, Flask]) -> None:
    """CSRF over HTTP: approval without the hidden csrf_token is a 400 and nothing redirects."""
    base_url, _ = calendar_server
    flow = CalendarFlow(RequestsHttp(base_url))
    params, _ = flow.authorization_params()
    page = flow.consent_page(params)
    assert 'name="csrf_token"' in page.text
    reply = flow.post("/consent", {"decision": "approve"})
    assert reply.status == 400 and "Location" not in reply.headers


def test_concurrent_refresh_has_exactly_one_winner(calendar_server: tuple[str, Flask]) -> None:
    """RFC 9700 §4.14.2: 10 simultaneous uses of one refresh token, exactly one succeeds.

    The losers are replays of a consumed token, so the family is revoked and the
    winner's new refresh token dies too: a vault that does not single-flight its
    upstream refreshes loses the account, which is what this mock is for.
    """
    base_url, _ = calendar_server
    flow = CalendarFlow(RequestsHttp(base_url))
    tokens = flow.tokens()
    barrier = Barrier(10)

    def refresh(_: int) -> tuple[int, dict[str, str]]:
        worker = CalendarFlow(RequestsHttp(base_url))
        barrier.wait()
        reply = worker.refresh(tokens["refresh_token"])
        return reply.status, reply.json()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(refresh, range(10)))
    winners = [body for status, body in results if status == 200]
    assert len(winners) == 1
    assert all(body["error"] == "invalid_grant" for status, body in results if status != 200)
    assert requests.get(f"{base_url}/_test/stats", timeout=10).json()["refresh_grants"] == 1
    assert flow.refresh(winners[0]["refresh_token"]).json()["error"] == "invalid_grant"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[str]) -> requests.Response:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


def test_cli_serves_and_keeps_queries_out_of_the_log(tmp_path: Path) -> None:
    """CLI: python -m demo_agent.calendar --port --database; logged requests carry no query."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALENDAR_")}
    command = [sys.executable, "-m", "demo_agent.calendar", "--port", str(port)]
    command += ["--database", f"sqlite:///{tmp_path / 'cli.db'}"]
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        meta = _wait_for(f"{base_url}/.well-known/oauth-authorization-server", process).json()
        assert meta["issuer"] == base_url
        reply = requests.get(f"{base_url}/authorize?client_id=x&state=s3cr3t-state", timeout=5)
        assert reply.status_code == 400
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "GET /authorize" in output
    assert "s3cr3t-state" not in output
    assert (tmp_path / "cli.db").exists()
