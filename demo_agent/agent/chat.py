"""The conversation: plan each request, run the tool, print the outcome.

`Agent.handle` runs one request (the one-shot `--ask` mode); `chat` loops over input
lines. Every line printed goes through `Console`, which masks any secret the SDK has
handled and anything shaped like a JWT, so a refresh token, an upstream token or the
client secret cannot reach the terminal even by mistake.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from demo_agent.sdk import AuthClient, OAuthError, SdkError
from demo_agent.sdk.masking import mask

from .plans import Plan, Reply, ToolCall
from .tools import Toolbox

JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]+")
PROMPT = "you> "
QUIT = {"quit", "exit", "bye", "q"}


class Planner(Protocol):
    def plan(self, text: str) -> Plan: ...

    def follow_up(self, question: Reply, text: str) -> Plan | None: ...


class Console:
    """Prints agent lines with every known secret (and any JWT) masked."""

    def __init__(self, client: AuthClient, out: Callable[[str], None] = print) -> None:
        self.client = client
        self.out = out

    def say(self, text: str) -> None:
        scrubbed = JWT.sub(lambda m: mask(m.group(0)), self.client.redact(text))
        for line in scrubbed.splitlines() or [""]:
            self.out(f"agent> {line}")


class Agent:
    def __init__(self, planner: Planner, tools: Toolbox, console: Console) -> None:
        self.planner = planner
        self.tools = tools
        self.console = console
        self.question: Reply | None = None

    def handle(self, text: str) -> bool:
        """Plan and run one request; True when a tool completed or an answer was given."""
        plan = self.planner.follow_up(self.question, text) if self.question else None
        plan = plan or self.planner.plan(text)
        self.question = None
        if isinstance(plan, Reply):
            self.console.say(plan.text)
            self.question = plan if plan.pending is not None else None
            return plan.kind == "help"
        return self._run(plan)

    def _run(self, call: ToolCall) -> bool:
        try:
            return self.tools.run(call)
        except OAuthError as error:
            reason = f": {error.description}" if error.description else ""
            self.console.say(f"That did not work ({error.error}{reason}).")
        except SdkError as error:
            self.console.say(f"That did not work: {error}.")
        return False


def chat(agent: Agent, read: Callable[[str], str] = input) -> int:
    """Read requests until EOF or 'quit'; Ctrl-C cancels the current wait, twice quits."""
    agent.console.say("Hello! " + "Ask me about quotes, your portfolio, trades or your calendar.")
    while True:
        try:
            text = read(PROMPT).strip()
        except (EOFError, KeyboardInterrupt):
            agent.console.say("Bye.")
            return 0
        if text.lower() in QUIT:
            agent.console.say("Bye.")
            return 0
        if not text:
            continue
        try:
            agent.handle(text)
        except KeyboardInterrupt:
            agent.console.say("Stopped. Nothing more will happen for that request.")
