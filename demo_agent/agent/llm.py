"""An optional LLM planner over any OpenAI-compatible chat completions endpoint.

Used only when OPENAI_BASE_URL, OPENAI_MODEL and OPENAI_API_KEY are all set. The model
sees the tools as function definitions and answers with a tool call or a question;
its arguments go through the same validators as the deterministic parser's
(`plans.validate`), so a model cannot trade without a limit either. Any failure
(network, HTTP status, malformed answer) falls back to the deterministic parser with a
notice; the API key is never printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from demo_agent.sdk.masking import mask

from .planner import RulePlanner
from .plans import Plan, Reply, validate

TIMEOUT = 20.0
SYSTEM = (
    "You are a trading and calendar assistant. Call exactly one tool for the user's "
    "request, or answer with a short question when something is missing. Never invent a "
    "quantity or a price limit: trades need both, given by the user. Times are ISO 8601 "
    "with the user's UTC offset. Now it is {now} ({weekday})."
)
SYMBOL = {"type": "string", "description": "ticker symbol, 1-10 letters, e.g. NET"}
TRADE = {
    "type": "object",
    "properties": {
        "symbol": SYMBOL,
        "quantity": {"type": "integer", "minimum": 1},
        "limit_price": {"type": "number", "exclusiveMinimum": 0, "description": "USD"},
    },
    "required": ["symbol", "quantity", "limit_price"],
}
NONE: dict[str, Any] = {"type": "object", "properties": {}}
SPECS: list[tuple[str, str, dict[str, Any]]] = [
    ("quote", "Current price of a symbol", {"type": "object", "properties": {"symbol": SYMBOL}}),
    ("portfolio", "The user's cash and holdings", NONE),
    ("orders", "The user's orders", NONE),
    ("buy", "Buy shares with a price limit (the user approves it on their phone)", TRADE),
    ("sell", "Sell shares with a price limit (the user approves it on their phone)", TRADE),
    (
        "am_i_free",
        "Whether the user's calendar is free for a slot",
        {
            "type": "object",
            "properties": {
                "start": {"type": "string", "description": "ISO 8601 date-time with offset"},
                "duration_minutes": {"type": "integer", "minimum": 1, "maximum": 1440},
            },
            "required": ["start"],
        },
    ),
]
TOOL_DEFINITIONS = [
    {"type": "function", "function": {"name": n, "description": d, "parameters": p}}
    for n, d, p in SPECS
]


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    model: str
    api_key: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LlmConfig | None:
        values = [
            env.get(k, "").strip() for k in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY")
        ]
        if not all(values):
            return None
        return cls(values[0].rstrip("/"), values[1], values[2])

    def __repr__(self) -> str:
        key = mask(self.api_key)
        return f"LlmConfig(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"


class PlannerUnavailable(Exception):
    """The endpoint failed or answered something unusable; the message names why."""


class LlmPlanner:
    """Plans with the model; falls back to `fallback` (with a notice) when it cannot."""

    def __init__(
        self,
        config: LlmConfig,
        fallback: RulePlanner,
        notice: Callable[[str], None],
        session: requests.Session | None = None,
    ) -> None:
        self.config = config
        self.fallback = fallback
        self.notice = notice
        self.session = session or requests.Session()
        self.now = fallback.now

    def plan(self, text: str) -> Plan:
        now = self.now()
        try:
            message = self._complete(text, now)
            return _to_plan(message, now)
        except PlannerUnavailable as problem:
            self.notice(f"The LLM planner is unavailable ({problem}); using the built-in parser.")
            return self.fallback.plan(text)

    def follow_up(self, question: Reply, text: str) -> Plan | None:
        return self.fallback.follow_up(question, text)

    def _complete(self, text: str, now: datetime) -> dict[str, Any]:
        system = SYSTEM.format(now=now.isoformat(timespec="minutes"), weekday=now.strftime("%A"))
        body = {
            "model": self.config.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
            "tools": TOOL_DEFINITIONS,
            "tool_choice": "auto",
            "temperature": 0,
        }
        headers = {"Authorization": f"Bearer {self.config.api_key}"}
        url = f"{self.config.base_url}/chat/completions"
        try:
            response = self.session.post(url, json=body, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise PlannerUnavailable(type(error).__name__) from None
        if response.status_code != 200:
            raise PlannerUnavailable(f"HTTP {response.status_code}")
        try:
            message = response.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PlannerUnavailable("malformed response") from None
        if not isinstance(message, dict):
            raise PlannerUnavailable("malformed response")
        return message


def _to_plan(message: dict[str, Any], now: datetime) -> Plan:
    """The first tool call, validated; a plain answer becomes a question to the user."""
    calls = message.get("tool_calls") or []
    if not calls:
        content = str(message.get("content") or "").strip()
        if not content:
            raise PlannerUnavailable("empty answer")
        return Reply(content, "question")
    try:
        function = calls[0]["function"]
        name = str(function["name"])
        raw = function.get("arguments") or "{}"
        args = json.loads(raw) if isinstance(raw, str) else raw
    except (KeyError, TypeError, ValueError):
        raise PlannerUnavailable("malformed tool call") from None
    if not isinstance(args, dict):
        raise PlannerUnavailable("malformed tool arguments")
    return validate(name, args, now)
