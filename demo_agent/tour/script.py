"""The tour's scenario: every flow of the product, in the order a user meets them.

The agent is the real CLI agent (planner, tools, SDK); the tour only types its
requests, prints what happens, and plays the person in the browser. Each step checks
its own outcome, so a tour that finishes with "every step went as expected" is also
an end-to-end test of the product.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

from demo_agent.agent.chat import Agent, Console
from demo_agent.agent.planner import RulePlanner
from demo_agent.agent.tools import Toolbox
from demo_agent.sdk import AuthClient

from .narrator import Narrator
from .screen import APPROVAL_CODE, CONNECT_LINK, WAIT_SECONDS, AgentLines
from .settings import TourSettings
from .user import SimulatedUser, TourError


def run_beside(ask: Callable[[], bool], person: Callable[[], None], person_seconds: float) -> bool:
    """`ask`'s answer, with `person` acting on another thread meanwhile.

    The agent may be waiting for the person (an approval): should the person fail (the
    browser does not start, a page is not what was expected), the tour stops at once
    rather than wait for the request to expire. The agent's thread is a daemon, ended
    with the tour; an exception of the agent's own is raised here as it was."""
    person_failed: list[BaseException] = []
    outcome: list[bool] = []
    agent_failed: list[BaseException] = []

    def act() -> None:
        try:
            person()
        except BaseException as error:  # noqa: BLE001 (reported on the main thread)
            person_failed.append(error)

    def answer() -> None:
        try:
            outcome.append(ask())
        except BaseException as error:  # noqa: BLE001 (re-raised on the main thread)
            agent_failed.append(error)

    helper = threading.Thread(target=act, daemon=True)
    asking = threading.Thread(target=answer, daemon=True)
    helper.start()
    asking.start()
    while asking.is_alive() and not person_failed:
        asking.join(0.1)
    if not person_failed and not agent_failed:
        helper.join(person_seconds)
    if person_failed:
        raise TourError(f"the simulated user failed: {person_failed[0]}")
    if agent_failed:
        raise agent_failed[0]
    return outcome[0]


class Tour:
    def __init__(self, settings: TourSettings, out: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.seen = AgentLines()
        config = settings.agent
        self.client = AuthClient(
            config.issuer, config.client_id, config.client_secret, redirect_uri=config.redirect_uri
        )
        self.narrator = Narrator(self.client.redactor, out)
        self.client.transport.trace = self.narrator.exchange
        self.client.on_tokens = self.narrator.tokens
        self.console = Console(self.client, self._agent_line)
        self.agent = Agent(
            RulePlanner(), Toolbox(config, self.client, self.console.say), self.console
        )
        self.user = SimulatedUser(
            self.narrator,
            config.issuer,
            settings.user,
            config.calendar_url,
            settings.calendar_user,
            settings.browser,
        )

    def _agent_line(self, line: str) -> None:
        self.narrator.line(line)
        self.seen.feed(line)

    def ask(self, text: str, expect_done: bool) -> None:
        self.seen.drain()
        self.narrator.line(f"you> {text}")
        done = self.agent.handle(text)
        if done != expect_done:
            outcome = "completed" if done else "did not complete"
            raise TourError(f"{text!r} {outcome}, which the tour did not expect")

    def ask_while(self, text: str, expect_done: bool, person: Callable[[], None]) -> None:
        """Ask, while the person acts in the browser at the same time (as they would)."""
        self.seen.drain()
        self.narrator.line(f"you> {text}")
        done = run_beside(lambda: self.agent.handle(text), person, WAIT_SECONDS)
        if done != expect_done:
            raise TourError(f"{text!r} ended {'done' if done else 'not done'}, unexpectedly")

    # -- the steps ---------------------------------------------------------------------

    def run(self) -> None:
        self.introduction()
        self.discovery()
        self.sign_in()
        self.portfolio()
        self.approved_trade()
        self.denied_trade()
        self.calendar()
        self.sign_out()
        self.audit()

    def introduction(self) -> None:
        who = self.settings.user.username
        self.narrator.line("The tour: an AI agent acting for a person, one standard at a time.")
        self.narrator.line(
            f"Lines starting 'agent>' are the agent talking; 'agent -->' and 'agent <--' are the "
            f"HTTP requests it sends and the answers; '[simulated user {who}]' is a script "
            "standing in for the person at their browser. Every credential is shown only as "
            "<redacted sha256:...>, the first 8 hex digits of its SHA-256."
        )

    def discovery(self) -> None:
        self.narrator.step(
            "Discovery: the agent learns the server's endpoints and keys",
            "OpenID Connect Discovery 1.0 §4, RFC 8414, RFC 7517 (JWKS)",
            "The agent is configured with nothing but the issuer URL and its client id.",
        )
        self.client.metadata  # noqa: B018 (fetches and caches the document)

    def sign_in(self) -> None:
        self.narrator.step(
            "Sign-in: authorization code flow with PKCE",
            "RFC 6749 §4.1, RFC 7636 (PKCE, S256), OpenID Connect Core 1.0 §3.1, "
            "RFC 8252 §7.3 (loopback redirect), RFC 9207 (iss in the response)",
            "The agent listens on its loopback redirect URI and prints the sign-in link.\n"
            "The person signs in and consents in the browser; the browser brings a one-time\n"
            "code back to the agent, which redeems it with its PKCE code_verifier.",
        )
        self.client.sign_in(
            scope=self.settings.agent.scope,
            announce=self.console.say,
            opener=self.user.open_in_browser,
        )
        self.console.say(f"Signed in as {self.client.username()}.")

    def portfolio(self) -> None:
        self.narrator.step(
            "Reading the portfolio: token exchange for one API",
            "RFC 8693 (token exchange, act claim), RFC 9068 (JWT access tokens), RFC 8707",
            "The user's token is for the agent, not for the broker. The agent exchanges it,\n"
            "with its own client-credentials token as actor_token, for a short-lived token\n"
            "whose audience is the broker only, whose scope is portfolio:read only, and\n"
            "whose `act` claim names the agent: the broker records who acted for whom.",
        )
        self.ask("what do I own?", expect_done=True)

    def _decide(self, decision: str) -> Callable[[], None]:
        def person() -> None:
            code = self.seen.wait_for(APPROVAL_CODE)
            self.user.decide(code, decision, timeout=WAIT_SECONDS)

        return person

    def approved_trade(self) -> None:
        self.narrator.step(
            "A trade the person approves: CIBA with rich authorization requests",
            "OpenID Connect CIBA Core 1.0 (poll mode), RFC 9396 (authorization_details)",
            "The agent cannot trade on its portfolio token. It asks the server to get the\n"
            "person's approval for one exact order (a `trade` entry in authorization_details)\n"
            "with a short code (binding_message) shown both by the agent and on the approval\n"
            "page. The person compares the code, approves with their password, and the agent's\n"
            "poll returns a token that covers that order and nothing else.",
        )
        self.ask_while("buy 10 NET at most 120", True, self._decide("approve"))

    def denied_trade(self) -> None:
        self.narrator.step(
            "A trade the person denies",
            "CIBA Core §11 (access_denied), RFC 9396",
            "The person denies the second request on the approval page. The agent's poll gets\n"
            "access_denied, no token is issued and nothing is ordered.",
        )
        self.ask_while("buy 5 NET at most 110", False, self._decide("deny"))
        self.ask("show my orders", expect_done=True)

    def calendar(self) -> None:
        self.narrator.step(
            "A question about the calendar: the token vault",
            "RFC 8693 (federated token exchange), RFC 6749 §6 upstream, AES-256-GCM at rest",
            "The calendar is another company's API. The agent asks the vault for a calendar\n"
            "token; the person has not connected the calendar yet, so the answer is an\n"
            "interrupt carrying a connect link. The person connects (the provider's own sign-in\n"
            "and consent); the vault stores the upstream refresh token encrypted and from then\n"
            "on hands the agent short-lived upstream access tokens, never the refresh token.",
        )
        question = "am I free tomorrow at 3pm?"

        def person() -> None:
            self.user.connect(self.seen.wait_for(CONNECT_LINK))

        self.ask_while(question, False, person)
        self.narrator.line("  (the person has connected the calendar; the same question again)")
        self.ask(question, expect_done=True)

    def sign_out(self) -> None:
        self.narrator.step(
            "Signing out: revoking the refresh token",
            "RFC 7009 (token revocation), RFC 9700 §4.14",
            "The agent revokes its refresh token; every token it held is forgotten.",
        )
        self.client.sign_out()
        self.console.say("Signed out.")

    def audit(self) -> None:
        self.narrator.step(
            "What the operator sees: the audit log",
            "tamper-evident log: an HMAC per row, chained",
            "Every sign-in, consent, token, exchange, approval and vault use above left a row.\n"
            "`authserver audit verify` recomputes every MAC and the chain.",
        )
        for args in (["audit", "list", "--limit", "40"], ["audit", "verify"]):
            self.narrator.line(f"  operator$ authserver {' '.join(args)}")
            result = subprocess.run(  # noqa: S603 (our own interpreter and CLI)
                [sys.executable, "-m", "authserver.cli.entry", *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            # stderr carries only the development-defaults warning unless something failed.
            shown = result.stdout if result.returncode == 0 else result.stdout + result.stderr
            for text in shown.splitlines():
                self.narrator.line(f"    {text}")
            if result.returncode != 0:
                raise TourError(f"`authserver {' '.join(args)}` failed ({result.returncode})")

    def close(self) -> None:
        self.client.close()


def main(env: Mapping[str, str] | None = None, out: Callable[[str], None] = print) -> int:
    settings = TourSettings.from_env(os.environ if env is None else env)
    started = time.monotonic()
    tour = Tour(settings, out)
    try:
        tour.run()
    except TourError as error:
        tour.narrator.line(f"\nThe tour stopped: {error}")
        return 1
    finally:
        tour.close()
    took = time.monotonic() - started
    tour.narrator.line(f"\nEvery step went as expected. The tour is over ({took:.1f} s).")
    return 0
