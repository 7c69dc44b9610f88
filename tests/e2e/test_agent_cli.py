"""The CLI agent end to end against live servers: quote, portfolio, orders, trades with
CIBA approval, and the calendar through the token vault.

Whatever it prints (with or without `--trace`) never contains a refresh token, an
access or upstream token, or the client secret (RFC 6750 §5.3; DESIGN "The demo").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from demo_agent.agent.chat import chat
from demo_agent.agent.cli import build_agent, main
from demo_agent.agent.config import AgentConfig
from tests.support.calendar import connect_account
from tests.support.ciba_live import broker_orders
from tests.support.factories import DEFAULT_PASSWORD
from tests.support.flows import csrf_token

ROOT = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
SECRET_FIELD = re.compile(r'"(access_token|refresh_token|id_token|code|client_secret)": "([^"]*)"')


def agent_env(scene) -> dict[str, str]:
    return {
        "DEMO_ISSUER": scene.issuer,
        "DEMO_AGENT_CLIENT_ID": scene.agent.client_id,
        "DEMO_AGENT_CLIENT_SECRET": scene.agent.client_secret,
        "DEMO_AGENT_REDIRECT_URI": scene.agent.redirect_uri,
        "DEMO_BROKER_URL": scene.broker.url,
        "DEMO_CALENDAR_URL": scene.calendar.url,
    }


def in_process(scene, trace: bool = False):
    """The agent built as `main` builds it, signing in through a scripted browser."""
    lines: list[str] = []
    config = AgentConfig.from_env(agent_env(scene))
    agent = build_agent(config, lines.append, scene.browser().authorize, trace)
    scene.clients.append(agent.tools.client)
    return agent, lines


def assert_no_secrets(output: str, *secrets: str | None) -> None:
    for secret in secrets:
        if secret:
            assert secret not in output
    assert not JWT.search(output), "a JWT reached the output"
    for name, value in SECRET_FIELD.findall(output):
        assert value.startswith("<redacted sha256:"), name


def test_one_shot_quote_as_a_subprocess(scene):
    """`python -m demo_agent --ask "quote NET"`: the public quote, exit status 0."""
    env = {**os.environ, **agent_env(scene), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "demo_agent", "--ask", "quote NET", "--trace"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "agent> NET: 118.50 USD" in result.stdout
    assert_no_secrets(result.stdout + result.stderr, scene.agent.client_secret)


def test_portfolio_as_a_subprocess_signs_in_over_the_loopback_redirect(scene):
    """RFC 8252 §7.3 for real: the agent prints the URL (no display here), the person's
    browser signs in and lands on the agent's loopback listener, the portfolio prints."""
    env = {**os.environ, **agent_env(scene), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        env.pop(name, None)
    command = [sys.executable, "-m", "demo_agent", "--ask", "what do I own?", "--trace"]
    lines: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if "/authorize?" in line:
                    break
            url = lines[-1].split("agent> ", 1)[1].strip()
            landed = requests.get(scene.browser().authorize(url), timeout=10)
            assert landed.status_code == 200
            lines.extend(process.stdout)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    output = "".join(lines)
    assert "Portfolio of alice (USD):" in output and "NET" in output and "AAPL" in output
    assert "[http] POST" in output and "refresh_token" in output
    assert_no_secrets(output, scene.agent.client_secret)


def test_portfolio_and_orders_in_process_print_no_token(scene):
    """Token exchange behind the scenes; the trace and the answers stay free of tokens."""
    agent, lines = in_process(scene, trace=True)
    assert agent.handle("show my portfolio") and agent.handle("my orders")
    output = "\n".join(lines)
    assert "You have no orders yet." in output and "total" in output
    client = agent.tools.client
    exchanged = client.exchange(scene.broker.url, "portfolio:read").access_token
    tokens = client.tokens
    assert_no_secrets(
        output,
        scene.agent.client_secret,
        tokens.refresh_token,
        tokens.access_token,
        tokens.id_token,
        exchanged,
    )
    assert scene.broker.reads()[-1].act == {"sub": scene.agent.client_id}


def _approve_when_asked(scene, decision: str) -> tuple[threading.Thread, list[str]]:
    approver = scene.approver()
    pages: list[str] = []

    def decide() -> None:
        for _ in range(200):
            page = approver.page()
            ids = re.findall(r'action="/approvals/([^"/]+)"', page)
            if ids:
                pages.append(page)
                approver.decide(ids[0], decision)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=decide, daemon=True)
    thread.start()
    return thread, pages


def test_buy_waits_for_approval_then_places_the_order(scene):
    """CIBA: the agent shows where to approve and the binding message the approval page
    shows too; the approved token places exactly that order."""
    agent, lines = in_process(scene)
    agent.tools.client.sign_in(scene.browser().authorize, scope=agent.tools.config.scope)
    before = len(broker_orders(scene.broker.app))
    thread, pages = _approve_when_asked(scene, "approve")
    assert agent.handle("buy 10 NET at most 120")
    thread.join(10)
    output = "\n".join(lines)
    code = re.search(r"\bNET-\d{4}\b", output).group(0)
    assert f"{scene.issuer}/approvals" in output and code in pages[0]
    assert "Approved. Bought 10 NET at 118.50 USD" in output
    orders = broker_orders(scene.broker.app)
    assert len(orders) == before + 1
    order = max(orders, key=lambda row: row.created_at)
    assert (order.side, order.symbol, order.quantity) == ("buy", "NET", 10)
    assert_no_secrets(output, scene.agent.client_secret, agent.tools.client.tokens.refresh_token)


def test_declined_trade_orders_nothing(scene):
    """CIBA §11 access_denied: the agent says so and places nothing."""
    agent, lines = in_process(scene)
    agent.tools.client.sign_in(scene.browser().authorize, scope=agent.tools.config.scope)
    before = len(broker_orders(scene.broker.app))
    thread, _ = _approve_when_asked(scene, "deny")
    assert not agent.handle("sell 5 AAPL at least 230")
    thread.join(10)
    assert re.search(r"You declined AAPL-\d{4}: nothing was ordered\.", "\n".join(lines))
    assert len(broker_orders(scene.broker.app)) == before


def test_trade_without_limit_is_a_question_not_an_order(scene):
    """The planner asks for the limit; nothing reaches the authserver or the broker."""
    agent, lines = in_process(scene)
    before = len(broker_orders(scene.broker.app))
    assert not agent.handle("buy 10 NET")
    assert "never trade without a limit" in lines[-1]
    assert not agent.tools.client.signed_in
    assert len(broker_orders(scene.broker.app)) == before


def _alice_browser(issuer: str) -> requests.Session:
    http = requests.Session()
    page = http.get(f"{issuer}/login", timeout=10).text
    form = {"username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page)}
    http.post(f"{issuer}/login", data=form, timeout=10)
    return http


def test_am_i_free_interrupts_until_the_calendar_is_connected(scene):
    """Token vault: `connection_required` is surfaced as the connect URL; once connected the
    agent answers from free/busy (alice is busy tomorrow 15:00-16:00, free 09:00-10:00)."""
    agent, lines = in_process(scene)
    assert not agent.handle("am I free tomorrow at 3pm?")
    connect = f"{scene.issuer}/connections/calendar/connect?scope=calendar.freebusy"
    assert lines[-1] == f"agent> Connect your calendar first: {connect}"
    connect_account(_alice_browser(scene.issuer), scene.issuer)
    assert agent.handle("am I free tomorrow at 3pm?")
    assert lines[-1] == "agent> No, you are busy tomorrow 15:00-16:00: 15:00-16:00 is taken."
    assert agent.handle("am I free tomorrow at 9am?")
    assert lines[-1] == "agent> Yes, you are free tomorrow 09:00-10:00."
    upstream = agent.tools.client.federated_token("calendar", "calendar.freebusy").access_token
    assert_no_secrets("\n".join(lines), upstream, scene.agent.client_secret)


def test_chat_follows_up_on_questions(scene):
    """The chat keeps a pending trade's question: "buy NET" → "10" → asks for the limit."""
    agent, lines = in_process(scene)
    script = iter(["quote AAPL", "buy NET", "10", "quit"])
    assert chat(agent, lambda _prompt: next(script)) == 0
    output = "\n".join(lines)
    assert "AAPL: 227.30 USD" in output and "How many NET shares" in output
    assert "never trade without a limit: what is the highest price" in output
    assert lines[-1] == "agent> Bye."


def test_missing_client_secret_is_a_usage_error(capsys):
    """The secret has no default: without it the agent stops with status 2."""
    assert main(["--ask", "quote NET"], env={}) == 2
    assert "DEMO_AGENT_CLIENT_SECRET" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "answer"),
    [("buy everything", "exact number of shares"), ("sell -5 NET", "positive number")],
)
def test_refusals_exit_nonzero_without_network(text, answer):
    """Unsafe requests are refused before any HTTP call (every URL here is unreachable)."""
    nowhere = "http://127.0.0.1:9"
    env = {"DEMO_AGENT_CLIENT_SECRET": "x" * 32, "DEMO_ISSUER": nowhere}
    env |= {"DEMO_BROKER_URL": nowhere, "DEMO_CALENDAR_URL": nowhere}
    out: list[str] = []
    assert main(["--ask", text], env=env, out=out.append) == 1
    assert len(out) == 1 and answer in out[0]
