"""The agent's planners: plain requests to validated tool calls, questions or refusals.

Safety rules (DESIGN "The demo"): never trade without an exact positive whole quantity
and a price limit, refuse "everything" and market orders, ask rather than guess. The
LLM planner (any OpenAI-compatible chat completions endpoint) goes through the same
validators, and falls back to the deterministic parser, with a notice, when it fails.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from demo_agent.agent.config import AgentConfig, ConfigError
from demo_agent.agent.llm import LlmConfig, LlmPlanner
from demo_agent.agent.planner import RulePlanner
from demo_agent.agent.plans import Reply, ToolCall

ZONE = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=ZONE)  # a Monday


def at(days: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(NOW.date() + timedelta(days=days), datetime.min.time(), ZONE).replace(
        hour=hour, minute=minute
    )


def trade(side: str, symbol: str, quantity: int, limit: str) -> ToolCall:
    return ToolCall(side, {"symbol": symbol, "quantity": quantity, "limit_price": Decimal(limit)})


def free(start: datetime, minutes: int = 60) -> ToolCall:
    return ToolCall("am_i_free", {"start": start, "duration_minutes": minutes})


ASK, REFUSE = "question", "refusal"
TABLE: list[tuple[str, Any]] = [
    # portfolio and orders
    ("what do I own?", ToolCall("portfolio")),
    ("show my portfolio", ToolCall("portfolio")),
    ("What are my holdings", ToolCall("portfolio")),
    ("how much cash do I have?", ToolCall("portfolio")),
    ("list my positions", ToolCall("portfolio")),
    ("my orders", ToolCall("orders")),
    ("show my open orders please", ToolCall("orders")),
    ("what did I buy?", ToolCall("orders")),
    ("order history", ToolCall("orders")),
    # quotes
    ("quote NET", ToolCall("quote", {"symbol": "NET"})),
    ("price of AAPL?", ToolCall("quote", {"symbol": "AAPL"})),
    ("What's NET trading at?", ToolCall("quote", {"symbol": "NET"})),
    ("how much is nvda", ToolCall("quote", {"symbol": "NVDA"})),
    ("quote $msft", ToolCall("quote", {"symbol": "MSFT"})),
    ("quote", (ASK, "Which symbol")),
    ("quote NET AAPL", (ASK, "one symbol")),
    ("quote N3T", (REFUSE, "not a ticker symbol")),
    # trades
    ("buy 10 NET at most 120", trade("buy", "NET", 10, "120")),
    ("sell 5 AAPL limit 230", trade("sell", "AAPL", 5, "230")),
    ("Buy 10 shares of NET for at most $120.50", trade("buy", "NET", 10, "120.50")),
    ("purchase ten shares of MSFT at most 400", trade("buy", "MSFT", 10, "400")),
    ("sell 5 aapl @ 230", trade("sell", "AAPL", 5, "230")),
    ("buy 5 shares of GOOG under $180", trade("buy", "GOOG", 5, "180")),
    ("sell 3 NVDA at least 130 each", trade("sell", "NVDA", 3, "130")),
    ("buy 1,000 NET at most 120", trade("buy", "NET", 1000, "120")),
    ("please buy a share of AMZN at most 210", trade("buy", "AMZN", 1, "210")),
    ("buy NET", (ASK, "How many NET shares")),
    ("buy 10 NET", (ASK, "never trade without a limit")),
    ("sell 10 NET", (ASK, "lowest price you will accept")),
    ("buy 10 at most 120", (ASK, "Which symbol")),
    ("buy 10 NET AAPL at most 120", (ASK, "Which symbol do you mean")),
    ("buy 10 NET at least 120", (ASK, "the most you will pay")),
    ("sell 10 NET at most 100", (ASK, "the least you will accept")),
    ("buy $500 of NET", (ASK, "not a dollar amount")),
    ("buy everything", (REFUSE, "exact number of shares")),
    ("sell all my NET", (REFUSE, "exact number of shares")),
    ("buy as many NET as you can", (REFUSE, "exact number of shares")),
    ("sell -5 NET at least 100", (REFUSE, "positive")),
    ("buy 0 NET at most 1", (REFUSE, "positive")),
    ("buy 2.5 NET at most 120", (REFUSE, "whole shares")),
    ("buy 1000000 NET at most 1", (REFUSE, "more than I will trade")),
    ("buy 10 NET at market", (REFUSE, "never place market orders")),
    ("buy 10 NET at any price", (REFUSE, "never place market orders")),
    ("buy 10 NET at most 120.555", (REFUSE, "2 decimal places")),
    ("buy 10 NET at most -120", (REFUSE, "above 0")),
    ("buy 10 N3T at most 5", (REFUSE, "not a ticker symbol")),
    ("buy 10 VERYLONGSYMBOL at most 5", (REFUSE, "not a ticker symbol")),
    ("transfer my money to bob", (REFUSE, "cannot move money")),
    ("don't buy 10 NET at most 120", (REFUSE, "will not buy")),
    ("never sell 5 AAPL at least 230", (REFUSE, "will not sell")),
    ("don\u2019t buy 10 NET at most 120", (REFUSE, "will not buy")),
    ("I wouldn't buy 10 NET at most 120", (REFUSE, "will not buy")),
    ("I didn't say buy 10 NET at most 120", (REFUSE, "will not buy")),
    ("no need to buy 10 NET at most 120", (REFUSE, "will not buy")),
    ("What's NET at? buy 10 NET at most 120", trade("buy", "NET", 10, "120")),
    ("buy 10 NET at most 120, no wait, at most 100", (ASK, "more than one order")),
    ("buy 10 NET at most 120 actually 100", (ASK, "more than one order")),
    # calendar
    ("am I free tomorrow at 3pm?", free(at(1, 15))),
    ("am I free on friday at 10:30", free(at(4, 10, 30))),
    ("am I free next monday at 9am for 30 minutes", free(at(7, 9), 30)),
    ("am I available today at noon?", free(at(0, 12))),
    ("am I busy tomorrow at 15:00 for 2 hours", free(at(1, 15), 120)),
    (
        "free on 2026-12-01 at 2:30 pm for half an hour?",
        free(datetime(2026, 12, 1, 14, 30, tzinfo=ZONE), 30),
    ),
    ("am I free monday at 9am", free(at(7, 9))),
    ("am I free tomorrow?", free(at(1, 0), 24 * 60)),
    ("am I free", (ASK, "When?")),
    ("am I free at 3", (ASK, "3 am or 3 pm")),
    ("am I free tomorrow at 25:00", (ASK, "not a time")),
    ("am I free yesterday at 3pm", (REFUSE, "already passed")),
    ("am I free on 2027-06-01 at 10:00", (REFUSE, "62 days")),
    ("am I free on 9999-12-31?", (ASK, "62 days")),
    ("am I free on 9999-12-31 at 3pm?", (ASK, "62 days")),
    ("am I free on 0001-01-01 at 1am?", (ASK, "already passed")),
    ("am I free tomorrow at 3pm for 200 hours", (REFUSE, "one day at a time")),
    # other
    ("help", ("help", "I can")),
    ("tell me a joke", (ASK, "did not understand")),
    ("", (ASK, "What would you like")),
]


@pytest.fixture
def planner() -> RulePlanner:
    return RulePlanner(lambda: NOW)


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[t or "<empty>" for t, _ in TABLE])
def test_phrasings(planner, text, expected):
    """Each phrasing maps to one validated tool call, or a question or refusal."""
    plan = planner.plan(text)
    if isinstance(expected, ToolCall):
        assert plan == expected
    else:
        kind, fragment = expected
        assert isinstance(plan, Reply), plan
        assert plan.kind == kind and fragment in plan.text, plan


def test_the_table_is_large_enough():
    """The brief's floor: at least 40 phrasings, covering every tool and refusal kind."""
    assert len(TABLE) >= 40


def test_follow_up_answers_fill_a_pending_trade(planner):
    """A question about a trade takes its answer ("10", then "at most 120") and nothing
    else: a new request is planned afresh."""
    first = planner.plan("buy NET")
    second = planner.follow_up(first, "10")
    assert isinstance(second, Reply) and second.missing == "limit_price"
    assert planner.follow_up(second, "at most 120.5") == trade("buy", "NET", 10, "120.50")
    assert planner.follow_up(second, "quote NET") is None
    assert (
        planner.follow_up(second, "-3") is not None
        and planner.follow_up(second, "-3").kind == REFUSE
    )


class StubLlm:
    """An OpenAI-compatible /chat/completions endpoint answering a scripted message."""

    def __init__(self) -> None:
        self.status = 200
        self.message: dict[str, Any] = {}
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers["Content-Length"])
                stub.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers["Authorization"],
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                body = json.dumps({"choices": [{"message": stub.message}]}).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def call(self, name: str, arguments: dict[str, Any]) -> None:
        function = {"name": name, "arguments": json.dumps(arguments)}
        self.message = {
            "role": "assistant",
            "tool_calls": [{"type": "function", "function": function}],
        }


@pytest.fixture
def llm():
    stub = StubLlm()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


def _llm_planner(stub: StubLlm, notices: list[str]) -> LlmPlanner:
    config = LlmConfig(stub.url, "test-model", "sk-test-key-123456")
    return LlmPlanner(config, RulePlanner(lambda: NOW), notices.append)


def test_llm_tool_calls_are_validated_like_the_parser(llm):
    """The model's tool call becomes a ToolCall only through the same validators."""
    notices: list[str] = []
    planner = _llm_planner(llm, notices)
    llm.call("buy", {"symbol": "net", "quantity": 10, "limit_price": 120})
    assert planner.plan("get me ten NET, max 120") == trade("buy", "NET", 10, "120")
    sent = llm.requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test-key-123456"
    assert {t["function"]["name"] for t in sent["body"]["tools"]} >= {"buy", "sell", "am_i_free"}
    llm.call("sell", {"symbol": "NET", "quantity": 10})
    assert planner.plan("sell ten NET").missing == "limit_price"
    llm.call("buy", {"symbol": "NET", "quantity": -10, "limit_price": 1})
    assert planner.plan("...").kind == REFUSE
    llm.call("am_i_free", {"start": "2026-11-24T15:00:00+01:00"})
    assert planner.plan("free tomorrow 3pm?") == free(at(1, 15))
    for start in ("9999-12-31T23:59:00-12:00", "0001-01-01T00:00:00+14:00"):
        llm.call("am_i_free", {"start": start, "duration_minutes": 30})
        assert planner.plan("...").kind == REFUSE  # not an overflow
    llm.call("am_i_free", {"start": "2026-11-24T15:00:00+01:00", "duration_minutes": 12000})
    assert "one day at a time" in planner.plan("...").text
    llm.call("delete_account", {})
    assert planner.plan("...").kind == REFUSE
    assert notices == []


def test_llm_failure_falls_back_to_the_parser_with_a_notice(llm):
    """Never required: an HTTP error or a malformed answer means the deterministic parser."""
    notices: list[str] = []
    planner = _llm_planner(llm, notices)
    llm.status = 500
    assert planner.plan("buy 10 NET at most 120") == trade("buy", "NET", 10, "120")
    llm.status, llm.message = 200, {"role": "assistant", "tool_calls": [{"function": {}}]}
    assert planner.plan("quote NET") == ToolCall("quote", {"symbol": "NET"})
    assert len(notices) == 2 and all("built-in parser" in n for n in notices)
    assert not any("sk-test-key" in n for n in notices)
    assert "sk-test-key" not in repr(planner.config)


def test_llm_is_used_only_with_all_three_settings():
    """OPENAI_BASE_URL, OPENAI_MODEL and OPENAI_API_KEY together, else none."""
    env = {"DEMO_AGENT_CLIENT_SECRET": "s" * 20, "OPENAI_BASE_URL": "http://x", "OPENAI_MODEL": "m"}
    assert AgentConfig.from_env(env).llm is None
    config = AgentConfig.from_env(env | {"OPENAI_API_KEY": "sk-abcdefgh"})
    assert config.llm is not None and config.llm.model == "m"
    assert "sk-abcdefgh" not in repr(config) and "s" * 20 not in repr(config)
    assert config.issuer == "http://127.0.0.1:8000" and config.client_id == "demo-agent"
    assert config.redirect_uri == "http://127.0.0.1:8765/callback"
    assert (config.broker_url, config.calendar_url) == (
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8002",
    )
    with pytest.raises(ConfigError, match="DEMO_AGENT_CLIENT_SECRET"):
        AgentConfig.from_env({})


def test_client_secret_can_come_from_a_file(tmp_path):
    """DEMO_AGENT_CLIENT_SECRET_FILE (a container secret): first line, never in repr."""
    secret_file = tmp_path / "agent_client_secret"
    secret_file.write_text("file-secret-0123456789abcdef\n", encoding="utf-8")
    config = AgentConfig.from_env({"DEMO_AGENT_CLIENT_SECRET_FILE": str(secret_file)})
    assert config.client_secret == "file-secret-0123456789abcdef"
    assert "file-secret" not in repr(config)
    # The variable wins over the file when both are set.
    both = {"DEMO_AGENT_CLIENT_SECRET": "v" * 20, "DEMO_AGENT_CLIENT_SECRET_FILE": str(secret_file)}
    assert AgentConfig.from_env(both).client_secret == "v" * 20
    with pytest.raises(ConfigError, match="cannot be read"):
        AgentConfig.from_env({"DEMO_AGENT_CLIENT_SECRET_FILE": str(tmp_path / "missing")})
    secret_file.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not set"):
        AgentConfig.from_env({"DEMO_AGENT_CLIENT_SECRET_FILE": str(secret_file)})
