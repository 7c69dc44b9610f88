"""What a planner produces, and the validators every tool call must pass.

A plan is either a `ToolCall` (a tool name and validated arguments) or a `Reply`
(a refusal or a clarifying question). Both the deterministic parser and the LLM
planner go through `validate`, so an LLM cannot reach a tool with arguments the
parser would refuse: trades need an exact positive whole quantity within bounds and
a price limit (never a market order), symbols are 1 to 10 letters, calendar slots
lie in the next 62 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

SYMBOL = re.compile(r"[A-Z]{1,10}")
MAX_QUANTITY = 10_000
MAX_PRICE = Decimal("1000000")
CENT = Decimal("0.01")
DEFAULT_MINUTES = 60
MAX_MINUTES = 24 * 60
HORIZON = timedelta(days=62)
TOOLS = ("quote", "portfolio", "orders", "buy", "sell", "am_i_free")


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A refusal, a clarifying question or help; `pending` holds a call awaiting `missing`."""

    text: str
    kind: str = "question"
    pending: ToolCall | None = None
    missing: str | None = None


Plan = ToolCall | Reply


class Invalid(ValueError):
    """An argument fails validation; the message is shown to the user."""


def refusal(text: str) -> Reply:
    return Reply(text, "refusal")


def check_symbol(value: Any) -> str:
    symbol = str(value or "").strip().upper().lstrip("$")
    if not SYMBOL.fullmatch(symbol):
        raise Invalid(f"{value!r} is not a ticker symbol (1 to 10 letters, like NET or AAPL).")
    return symbol


def check_quantity(value: Any) -> int:
    if isinstance(value, bool):
        raise Invalid("The quantity must be a whole number of shares.")
    try:
        number = Decimal(str(value).replace(",", ""))
    except InvalidOperation:
        raise Invalid("The quantity must be a whole number of shares.") from None
    if not number.is_finite() or number <= 0:
        raise Invalid("The quantity must be a positive number of shares.")
    if number != number.to_integral_value():
        raise Invalid("I trade whole shares only.")
    if number > MAX_QUANTITY:
        raise Invalid(f"That is more than I will trade in one order (at most {MAX_QUANTITY:,}).")
    return int(number)


def check_price(value: Any) -> Decimal:
    try:
        price = Decimal(str(value).replace(",", "").lstrip("$"))
    except InvalidOperation:
        raise Invalid("The price limit must be a number of dollars.") from None
    if not price.is_finite() or price <= 0 or price > MAX_PRICE:
        raise Invalid(f"The price limit must be above 0 and at most {MAX_PRICE:,} USD.")
    if price != price.quantize(CENT):
        raise Invalid("The price limit has at most 2 decimal places.")
    return price.quantize(CENT)


def _trade(name: str, args: dict[str, Any]) -> Plan:
    symbol = check_symbol(args.get("symbol")) if args.get("symbol") else None
    quantity = check_quantity(args["quantity"]) if args.get("quantity") is not None else None
    price = check_price(args["limit_price"]) if args.get("limit_price") is not None else None
    partial = {"symbol": symbol, "quantity": quantity, "limit_price": price}
    pending = ToolCall(name, {k: v for k, v in partial.items() if v is not None})
    if symbol is None:
        return Reply(f"Which symbol should I {name}?", pending=pending, missing="symbol")
    if quantity is None:
        text = f"How many {symbol} shares should I {name}?"
        return Reply(text, pending=pending, missing="quantity")
    if price is None:
        bound = "highest price you will pay" if name == "buy" else "lowest price you will accept"
        text = f"I never trade without a limit: what is the {bound} per {symbol} share (USD)?"
        return Reply(text, pending=pending, missing="limit_price")
    return ToolCall(name, {"symbol": symbol, "quantity": quantity, "limit_price": price})


def _slot(args: dict[str, Any], now: datetime) -> ToolCall:
    start = args.get("start")
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            raise Invalid("The time must be an ISO 8601 date-time.") from None
    if not isinstance(start, datetime):
        raise Invalid("When? For example: 'am I free tomorrow at 3pm?'")
    if start.tzinfo is None:
        start = start.replace(tzinfo=now.tzinfo)
    minutes = _check_minutes(args.get("duration_minutes") or DEFAULT_MINUTES)
    # The horizon first: the arithmetic below overflows near datetime's year 1 and 9999.
    if start > now + HORIZON:
        raise Invalid("I can only look 62 days ahead.")
    if start < now - timedelta(days=1):
        raise Invalid("That time has already passed.")
    if start + timedelta(minutes=minutes) <= now:
        raise Invalid("That time has already passed.")
    return ToolCall("am_i_free", {"start": start, "duration_minutes": minutes})


def _check_minutes(value: Any) -> int:
    """A length to check the calendar for: whole minutes, at most a day."""
    if isinstance(value, bool):
        raise Invalid("How long? For example: 'for 30 minutes'.")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise Invalid("How long? For example: 'for 30 minutes'.") from None
    if not number.is_finite() or number <= 0 or number != number.to_integral_value():
        raise Invalid("How long? For example: 'for 30 minutes'.")
    if number > MAX_MINUTES:
        raise Invalid("I can check at most one day at a time.")
    return int(number)


def validate(name: str, args: dict[str, Any] | None, now: datetime) -> Plan:
    """The validated call, a clarifying question, or a refusal."""
    args = dict(args or {})
    try:
        if name not in TOOLS:
            return refusal(f"I have no tool called {name!r}.")
        if name == "quote" and not args.get("symbol"):
            return Reply("Which symbol should I quote?")
        if name == "quote":
            return ToolCall("quote", {"symbol": check_symbol(args.get("symbol"))})
        if name in ("buy", "sell"):
            return _trade(name, args)
        if name == "am_i_free":
            return _slot(args, now)
        return ToolCall(name, {})
    except Invalid as problem:
        return refusal(str(problem))
