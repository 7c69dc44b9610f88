"""The mock market: fixed, deterministic quotes so demo runs and tests are repeatable.

Prices are integer cents (no floating point in money arithmetic). A symbol is 1 to 10
uppercase ASCII letters; anything else is a malformed request, and a well-formed
symbol the market does not list is unknown.
"""

from __future__ import annotations

import re

from .errors import InvalidRequest, NotFound

CURRENCY = "USD"
SYMBOL = re.compile(r"[A-Z]{1,10}")
QUOTES_CENTS: dict[str, int] = {
    "NET": 11850,
    "AAPL": 22730,
    "MSFT": 43110,
    "GOOG": 17820,
    "AMZN": 20140,
    "NVDA": 13590,
}


def check_symbol(symbol: object) -> str:
    """Return ``symbol`` if it is 1-10 uppercase letters, else raise invalid_request."""
    if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol):
        raise InvalidRequest("symbol must be 1 to 10 uppercase letters")
    return symbol


def price_cents(symbol: str) -> int:
    """The mock price of a valid ``symbol`` in cents; unknown symbols raise not_found."""
    try:
        return QUOTES_CENTS[check_symbol(symbol)]
    except KeyError:
        raise NotFound(f"no quote for symbol {symbol}") from None


def dollars(cents: int) -> float:
    """Cents as a JSON number of dollars (exact for any realistic amount)."""
    return cents / 100


def quote(symbol: str) -> dict[str, object]:
    """The public quote document for ``symbol``."""
    return {"symbol": symbol, "price": dollars(price_cents(symbol)), "currency": CURRENCY}
