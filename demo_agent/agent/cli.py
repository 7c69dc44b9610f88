"""The command line of the demo agent: one request (`--ask`) or an interactive chat.

`build_agent` wires the SDK client, the planner (the LLM one when configured) and the
tools; `main` reads the DEMO_* settings and runs it. The SDK client lives only for the
process: the user's tokens are kept in memory, never written anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from demo_agent.sdk import AuthClient, Exchange
from demo_agent.sdk.signin import UserAgent

from .chat import Agent, Console, chat
from .config import AgentConfig, ConfigError
from .llm import LlmPlanner
from .planner import RulePlanner
from .tools import Toolbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo-agent", description="The demo's CLI agent.")
    parser.add_argument("--ask", metavar="REQUEST", help="run one request and exit")
    parser.add_argument("--trace", action="store_true", help="print each HTTP exchange (masked)")
    return parser


def build_agent(
    config: AgentConfig,
    out: Callable[[str], None] = print,
    user_agent: UserAgent | None = None,
    trace: bool = False,
) -> Agent:
    """The agent wired from its parts; `user_agent` drives sign-in without a browser."""
    holder: list[Console] = []

    def show(exchange: Exchange) -> None:
        body = json.dumps({"request": exchange.request, "response": exchange.response})
        holder[0].say(f"[http] {exchange.method} {exchange.url} -> {exchange.status} {body}")

    client = AuthClient(
        config.issuer,
        config.client_id,
        config.client_secret,
        redirect_uri=config.redirect_uri,
        trace=show if trace else None,
    )
    console = Console(client, out)
    holder.append(console)
    rules = RulePlanner()
    planner = LlmPlanner(config.llm, rules, console.say) if config.llm else rules
    return Agent(planner, Toolbox(config, client, console.say, user_agent), console)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    out: Callable[[str], None] = print,
    user_agent: UserAgent | None = None,
) -> int:
    """Run the agent; 0 when the request completed, 1 when not, 2 on a settings error."""
    args = _parser().parse_args(argv)
    try:
        config = AgentConfig.from_env(os.environ if env is None else env)
    except ConfigError as error:
        print(f"demo-agent: {error}", file=sys.stderr)
        return 2
    agent = build_agent(config, out, user_agent, args.trace)
    try:
        if args.ask is not None:
            return 0 if agent.handle(args.ask) else 1
        return chat(agent)
    except KeyboardInterrupt:
        agent.console.say("Stopped.")
        return 130
    finally:
        agent.tools.client.close()
