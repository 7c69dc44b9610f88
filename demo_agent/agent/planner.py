"""The deterministic planner: plain requests to tool calls, or a question, or a refusal.

Intent is found by keywords (trade verbs first, then the calendar, orders, portfolio
and quotes); arguments are pulled out with small patterns and then go through the
same validators as the LLM planner's (`plans.validate`). Anything unsafe or
ambiguous gets a refusal or a clarifying question, never a guess: "buy everything",
a negative or fractional quantity, a trade without a price limit, a limit on the
wrong side ("buy ... at least 120"), or an unreadable symbol.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .plans import Plan, Reply, ToolCall, refusal, validate
from .when import Unclear, parse_slot

HELP = (
    "I can: quote a symbol ('quote NET'), show your portfolio ('what do I own?') or "
    "orders ('my orders'), buy or sell with a price limit ('buy 10 NET at most 120', "
    "'sell 5 AAPL limit 230'), and check your calendar ('am I free tomorrow at 3pm?')."
)
TRADE = re.compile(r"\b(buy|purchase|acquire|sell|dump|unload)\b")
SELLS = ("sell", "dump", "unload")
EVERYTHING = re.compile(r"\b(everything|all|entire|whole|as many|as much|max(?:imum)? shares)\b")
NO_LIMIT = re.compile(r"\b(at|the) market\b|\bmarket (order|price)\b|\b(any|whatever) price\b")
# "don't buy", "never sell", "cancel that buy": a trade word that is not a request to trade.
NEGATED = re.compile(
    r"\b(\w+n't|dont|didnt|wont|wouldnt|shouldnt|cant|cannot|do not|did not|never|cancel"
    r"|stop|not|no need)\b"
)
# "at most 120, no wait, at most 100": more than one limit is a correction to ask about.
CORRECTION = re.compile(r"\b(no wait|actually|i mean|make that|rather|instead)\b")
NUMBER = r"\$?\s*(-?\d[\d,]*(?:\.\d+)?)\s*(?:usd|dollars?|\$)?"
CEILING = r"at\s+most|no\s+more\s+than|not\s+more\s+than|up\s+to|max(?:imum)?|under|below|<=?"
FLOOR = r"at\s+least|no\s+less\s+than|not\s+less\s+than|min(?:imum)?|above|over|>=?"
NEUTRAL = r"limit(?:\s+price)?(?:\s+of)?|at|for|@"
LIMIT = re.compile(rf"(?:({CEILING})|({FLOOR})|({NEUTRAL}))\s*{NUMBER}(?:\s*(?:each|per share))?")
QUANTITY = re.compile(r"(?<![\w.])(-?\s?\d[\d,]*(?:\.\d+)?)(?![\w.])")
WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "five": 5, "ten": 10}
STOPWORDS = set(
    """buy purchase acquire sell dump unload please me my some shares share of stock stocks
    the a an i want to would like could you can for and with price limit usd dollars dollar
    order orders now today quickly x each per on at most least let's lets go ahead just
    one two three five ten please""".split()
)
MONEY_MOVES = re.compile(r"\b(transfer|withdraw|wire|send money|pay)\b")
PAST_TRADES = re.compile(r"\b(did|have) i (buy|sell|bought|sold)\b|\bi (bought|sold)\b")
CALENDAR = re.compile(r"\b(free|available|busy|calendar|schedule|meeting|appointments?)\b")
ORDERS = re.compile(r"\b(orders?|trades?|order history)\b")
PORTFOLIO = re.compile(
    r"\b(own|holdings?|portfolio|positions?|balance|cash|account|shares do i have)\b"
)
QUOTE = re.compile(r"\b(quote|price|prices|trading|worth|cost|how much is|value of)\b")
QUOTE_WORDS = set(
    "quote price prices of for what is what's whats the trading at worth cost how "
    "much value current get me show tell stock share a please".split()
)


class RulePlanner:
    """Keyword intent + argument patterns; `now` gives the local time for calendar questions."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self.now = now or (lambda: datetime.now().astimezone())

    def plan(self, text: str) -> Plan:
        text = text.replace("\u2019", "'")  # a phone keyboard's apostrophe: don’t, won’t
        text = re.sub(r"'s\b", "", text)
        lowered = " ".join(text.lower().split())
        if not lowered:
            return Reply("What would you like me to do? " + HELP)
        if re.search(r"\b(help|what can you do)\b", lowered):
            return Reply(HELP, "help")
        if MONEY_MOVES.search(lowered):
            return refusal("I cannot move money; I only trade listed shares with your approval.")
        if PAST_TRADES.search(lowered):
            return ToolCall("orders")
        if TRADE.search(lowered):
            return self._trade(text, lowered)
        if CALENDAR.search(lowered):
            return self._calendar(lowered)
        if ORDERS.search(lowered):
            return ToolCall("orders")
        if PORTFOLIO.search(lowered):
            return ToolCall("portfolio")
        if QUOTE.search(lowered):
            return self._quote(text)
        return Reply("I did not understand that. " + HELP)

    def follow_up(self, question: Reply, text: str) -> Plan | None:
        """The answer to a question about a pending trade ("10", "at most 120", "NET"),
        or None when `text` is not such an answer (then it is a new request)."""
        if question.pending is None or question.missing is None:
            return None
        answer = " ".join(text.lower().split())
        args = dict(question.pending.args)
        if question.missing == "limit_price":
            match = re.fullmatch(rf"(?:{CEILING}|{FLOOR}|{NEUTRAL})?\s*{NUMBER}", answer)
            value = match.group(1) if match else None
        elif question.missing == "quantity":
            match = re.fullmatch(r"(-?[\d,]+(?:\.\d+)?)(?:\s*shares?)?", answer)
            value = match.group(1).replace(",", "") if match else None
        else:
            value = answer if re.fullmatch(r"\$?[a-z]{1,10}", answer) else None
        if value is None:
            return None
        args[question.missing] = value.replace(",", "")
        return validate(question.pending.name, args, self.now())

    def _trade(self, text: str, lowered: str) -> Plan:
        match = TRADE.search(lowered)
        assert match is not None  # noqa: S101 (the caller matched)
        side = "sell" if match.group(1) in SELLS else "buy"
        if NEGATED.search(lowered[: match.start()]):
            return refusal(f"I will not {side} anything then. Tell me what to do instead.")
        if CORRECTION.search(lowered) or len(LIMIT.findall(lowered)) > 1:
            return Reply(
                f"I heard more than one order there. Tell me the one {side} to place, "
                f"e.g. '{side} 10 NET {'at most' if side == 'buy' else 'at least'} 120'."
            )
        if EVERYTHING.search(lowered):
            return refusal(f"I only {side} an exact number of shares; tell me how many.")
        if NO_LIMIT.search(lowered):
            return refusal("I never place market orders: give me a price limit.")
        args: dict[str, Any] = {}
        rest, problem = _take_limit(lowered, side, args)
        if problem is not None:
            return problem
        if re.search(r"\$\s*\d", rest):
            return Reply(f"I {side} a number of shares, not a dollar amount: how many shares?")
        rest = _take_quantity(rest, args)
        symbol = _symbol(text, rest)
        if isinstance(symbol, Reply):
            return symbol
        if symbol:
            args["symbol"] = symbol
        return validate(side, args, self.now())

    def _calendar(self, lowered: str) -> Plan:
        now = self.now()
        try:
            slot = parse_slot(lowered, now)
        except Unclear as question:
            return Reply(str(question))
        args = {"start": slot.start, "duration_minutes": slot.minutes}
        return validate("am_i_free", args, now)

    def _quote(self, text: str) -> Plan:
        words = [w for w in re.findall(r"[\w$.\-]+", text) if w.lower() not in QUOTE_WORDS]
        if not words:
            return Reply("Which symbol should I quote?")
        if len(words) > 1:
            return Reply("Which one symbol should I quote?")
        return validate("quote", {"symbol": words[0]}, self.now())


def _take_limit(lowered: str, side: str, args: dict[str, Any]) -> tuple[str, Reply | None]:
    """Find the price limit; a limit on the wrong side is a question, not a guess."""
    match = LIMIT.search(lowered)
    if match is None:
        return lowered, None
    ceiling, floor, _neutral, amount = match.groups()
    if (side == "buy" and floor) or (side == "sell" and ceiling):
        bound = "the most you will pay" if side == "buy" else "the least you will accept"
        return lowered, Reply(
            f"For a {side} I need {bound} per share, e.g. '{side} 10 NET "
            f"{'at most' if side == 'buy' else 'at least'} 120'."
        )
    args["limit_price"] = amount.replace(",", "")
    return lowered[: match.start()] + " " + lowered[match.end() :], None


def _take_quantity(rest: str, args: dict[str, Any]) -> str:
    match = QUANTITY.search(rest)
    if match is not None:
        args["quantity"] = match.group(1).replace(" ", "").replace(",", "")
        return rest[: match.start()] + " " + rest[match.end() :]
    words = re.findall(r"\b(a|an|one|two|three|five|ten)\s+shares?\b", rest)
    if words:
        args["quantity"] = WORD_NUMBERS[words[0]]
    return rest


def _symbol(original: str, rest: str) -> str | Reply | None:
    """The one remaining word that is not filler; uppercase words win over lowercase ones."""
    found: list[str] = re.findall(r"[\w$.\-]+", rest)
    words = [w for w in found if w.lower() not in STOPWORDS and not re.fullmatch(r"-?[\d.,]+", w)]
    if not words:
        return None
    tokens: list[str] = re.findall(r"[\w$.\-]+", original)
    upper = [w for w in tokens if w.isupper() and w.lower() in words]
    if len(set(upper)) == 1:
        return upper[0]
    if len(words) == 1:
        return words[0]
    return Reply("Which symbol do you mean? Say it like 'buy 10 NET at most 120'.")
