"""The agent's tools, each one flow of the product.

- quote: the broker's public `GET /quotes/<symbol>`; no token.
- portfolio, orders: a delegated broker token by token exchange (RFC 8693) with
  `portfolio:read`; the broker records the agent in `act`.
- buy, sell: a CIBA request (CIBA Core §7.1) carrying an RFC 9396 `trade` entry and a
  random binding message the user compares on the approval page; the approved token
  places exactly that order (`POST /orders`).
- am_i_free: an upstream calendar token from the token vault (federated token
  exchange); `ConnectionRequired` is an interrupt: the user is sent to `connect_uri`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from demo_agent.sdk import (
    AccessDenied,
    AuthClient,
    ConnectionRequired,
    ExpiredToken,
    PendingApproval,
    SdkError,
    TemporarilyUnavailable,
)
from demo_agent.sdk.signin import UserAgent

from . import render
from .config import CALENDAR_CONNECTION, CALENDAR_SCOPE, PORTFOLIO_SCOPE, AgentConfig
from .plans import ToolCall

WAITING_NOTE_SECONDS = 15.0


class Toolbox:
    """Runs validated tool calls; `say` prints (already redacted by the caller)."""

    def __init__(
        self,
        config: AgentConfig,
        client: AuthClient,
        say: Callable[[str], None],
        user_agent: UserAgent | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.say = say
        self.user_agent = user_agent
        self.now = now or (lambda: datetime.now().astimezone())

    def run(self, call: ToolCall) -> bool:
        """Run one call; False when it did not complete (refused, declined, interrupted)."""
        tool: Callable[..., bool] = getattr(self, call.name)
        return tool(**call.args)

    def _signed_in(self) -> None:
        if not self.client.signed_in:
            self.say("First, sign in so I can act for you.")
            self.client.sign_in(self.user_agent, scope=self.config.scope, announce=self.say)
            self.say(f"Signed in as {self.client.username() or 'you'}.")

    def _api(self, method: str, url: str, token: str | None = None, **kwargs: Any) -> Any:
        return self.client.transport.json(method, url, bearer=token, **kwargs)

    def quote(self, symbol: str) -> bool:
        body = self._api("GET", f"{self.config.broker_url}/quotes/{symbol}")
        self.say(render.quote(body))
        return True

    def _broker_token(self) -> str:
        self._signed_in()
        return self.client.exchange(self.config.broker_url, PORTFOLIO_SCOPE).access_token

    def portfolio(self) -> bool:
        body = self._api("GET", f"{self.config.broker_url}/portfolio", self._broker_token())
        self.say(render.portfolio(body, self.client.username()))
        return True

    def orders(self) -> bool:
        body = self._api("GET", f"{self.config.broker_url}/orders", self._broker_token())
        self.say(render.orders(body))
        return True

    def buy(self, symbol: str, quantity: int, limit_price: Decimal) -> bool:
        return self._trade("buy", symbol, quantity, limit_price)

    def sell(self, symbol: str, quantity: int, limit_price: Decimal) -> bool:
        return self._trade("sell", symbol, quantity, limit_price)

    def _login_hint(self) -> str:
        hint = self.config.username or self.client.username()
        if not hint:
            raise SdkError("I cannot tell who you are: set DEMO_USERNAME")
        return hint

    def _trade(self, side: str, symbol: str, quantity: int, limit_price: Decimal) -> bool:
        self._signed_in()
        order = {"side": side, "symbol": symbol, "quantity": quantity}
        order |= {"limit_price": float(limit_price), "currency": "USD"}
        code = f"{symbol}-{1000 + secrets.randbelow(9000)}"
        bound = "at most" if side == "buy" else "at least"
        self.say(f"I need your approval to {side} {quantity} {symbol} {bound} {limit_price} USD.")
        pending = self.client.request_approval(
            self._login_hint(),
            scope="openid",
            binding_message=code,
            authorization_details=[{"type": "trade", **order}],
        )
        self.say(
            f"Waiting for your approval: open {self.config.approvals_url} and approve the "
            f"request showing {code} (it expires in {pending.expires_in} s)."
        )
        try:
            tokens = self.client.wait_for_approval(pending, on_waiting=self._still_waiting(code))
        except AccessDenied:
            self.say(f"You declined {code}: nothing was ordered.")
            return False
        except ExpiredToken:
            self.say(f"The approval request {code} expired: nothing was ordered.")
            return False
        placed = self._api(
            "POST", f"{self.config.broker_url}/orders", tokens.access_token, json=order
        )
        self.say(f"Approved. {render.order_placed(placed)}")
        return True

    def _still_waiting(self, code: str) -> Callable[[PendingApproval], None]:
        last = [time.monotonic()]

        def note(pending: PendingApproval) -> None:
            if time.monotonic() - last[0] >= WAITING_NOTE_SECONDS:
                last[0] = time.monotonic()
                left = int(pending.remaining(self.client.clock()))
                self.say(
                    f"Still waiting for {code} at {self.config.approvals_url} ({left} s left)."
                )

        return note

    def am_i_free(self, start: datetime, duration_minutes: int) -> bool:
        self._signed_in()
        try:
            upstream = self.client.federated_token(CALENDAR_CONNECTION, CALENDAR_SCOPE)
        except ConnectionRequired as needed:
            self.say(f"Connect your calendar first: {needed.connect_uri}")
            return False
        except TemporarilyUnavailable:
            self.say("The calendar provider is not answering right now; try again shortly.")
            return False
        end = start + timedelta(minutes=duration_minutes)
        params = {"start": start.isoformat(), "end": end.isoformat()}
        url = f"{self.config.calendar_url}/freebusy"
        body = self._api("GET", url, upstream.access_token, params=params)
        del upstream  # used once, never kept
        self.say(render.freebusy(body, start, duration_minutes, self.now()))
        return True
