"""Order requests and RFC 9396 ``trade`` authorization details.

``parse_order`` validates a ``POST /orders`` body strictly (RFC 6750 §3.1
invalid_request on anything unexpected). ``covering_entry`` implements the resource
server's side of RFC 9396 §7: the token's ``authorization_details`` must contain a
``trade`` entry (the type the broker registered, DESIGN "CIBA with rich authorization
requests") that covers the exact order: meant for this broker (its ``locations``, RFC 9396
§2.2, when present, include the broker's own identifier, its audience), same side and
symbol, no more shares than approved, a limit no worse than approved (buy: at most; sell:
at least), and USD when a currency is named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from . import market
from .errors import InsufficientAuthorizationDetails, InvalidRequest

TRADE = "trade"
NOT_TRADE = "no entry of type trade"
SIDES = ("buy", "sell")
ORDER_FIELDS = frozenset({"side", "symbol", "quantity", "limit_price", "currency"})
REQUIRED_FIELDS = ("side", "symbol", "quantity", "limit_price")
MAX_QUANTITY = 1_000_000
MAX_PRICE = Decimal("1000000")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class OrderRequest:
    """A validated order: ``limit_price`` is an exact Decimal with at most 2 places."""

    side: str
    symbol: str
    quantity: int
    limit_price: Decimal

    @property
    def limit_price_cents(self) -> int:
        """The limit price in integer cents."""
        return int(self.limit_price * 100)


def parse_order(body: bytes) -> OrderRequest:
    """Parse and validate a JSON order body, or raise :class:`InvalidRequest`."""
    document = _load_json(body)
    if not isinstance(document, dict):
        raise InvalidRequest("order body must be a JSON object")
    unknown = sorted(set(document) - ORDER_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown order field {unknown[0]}")
    missing = [name for name in REQUIRED_FIELDS if name not in document]
    if missing:
        raise InvalidRequest(f"order field {missing[0]} is required")
    if document.get("currency", market.CURRENCY) != market.CURRENCY:
        raise InvalidRequest("currency must be USD")
    if document["side"] not in SIDES:
        raise InvalidRequest("side must be buy or sell")
    return OrderRequest(
        side=document["side"],
        symbol=_symbol(document["symbol"]),
        quantity=_quantity(document["quantity"]),
        limit_price=_price(document["limit_price"]),
    )


def _load_json(body: bytes) -> Any:
    """JSON with exact decimals; NaN, Infinity and oversized integers are rejected."""

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(body, parse_float=Decimal, parse_constant=reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise InvalidRequest("order body is not valid JSON") from None


def _symbol(value: Any) -> str:
    symbol = market.check_symbol(value)
    if symbol not in market.QUOTES_CENTS:
        raise InvalidRequest(f"symbol {symbol} is not traded")
    return symbol


def _quantity(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_QUANTITY:
        raise InvalidRequest(f"quantity must be an integer from 1 to {MAX_QUANTITY}")
    return value


def _price(value: Any) -> Decimal:
    if type(value) not in (int, Decimal):
        raise InvalidRequest("limit_price must be a number")
    price = Decimal(value)
    if not price.is_finite() or not 0 < price <= MAX_PRICE:
        raise InvalidRequest(f"limit_price must be above 0 and at most {MAX_PRICE}")
    if price != price.quantize(CENT):
        raise InvalidRequest("limit_price has at most 2 decimal places")
    return price


def covering_entry(details: Any, order: OrderRequest, audience: str) -> dict[str, Any]:
    """The first ``trade`` entry for ``audience`` covering ``order``; else raise 403 with why."""
    if not isinstance(details, list) or not details:
        raise InsufficientAuthorizationDetails("token carries no authorization_details")
    reasons = []
    for entry in details:
        reason = mismatch(entry, order, audience)
        if reason is None:
            return dict(entry)
        reasons.append(reason)
    reason = next((r for r in reasons if r != NOT_TRADE), NOT_TRADE)
    raise InsufficientAuthorizationDetails("no trade entry covers this order: " + reason)


def mismatch(entry: Any, order: OrderRequest, audience: str) -> str | None:
    """Why ``entry`` does not cover ``order`` at the broker ``audience``, or None when it does.

    RFC 9396 §2.2: ``locations`` says where the approved action may happen, and a resource
    server serves only details meant for it. An entry whose ``locations`` leave this
    broker out was approved for somewhere else (a "paper-trading sandbox", say), so it
    places no real order here.
    """
    if not isinstance(entry, dict) or entry.get("type") != TRADE:
        return NOT_TRADE
    locations = entry.get("locations", [audience])
    if not isinstance(locations, list) or audience not in locations:
        return f"approved locations do not include {audience}"
    if entry.get("side") != order.side:
        return f"approved side is {entry.get('side')}, not {order.side}"
    if entry.get("symbol") != order.symbol:
        return f"approved symbol is {entry.get('symbol')}, not {order.symbol}"
    if entry.get("currency", market.CURRENCY) != market.CURRENCY:
        return "approved currency is not USD"
    approved_quantity = entry.get("quantity")
    if type(approved_quantity) is not int or order.quantity > approved_quantity:
        return f"quantity exceeds the approved {approved_quantity}"
    approved_price = _approved_price(entry.get("limit_price"))
    if approved_price is None:
        return "approved limit_price is missing"
    if order.side == "buy" and order.limit_price > approved_price:
        return f"limit_price is above the approved {approved_price}"
    if order.side == "sell" and order.limit_price < approved_price:
        return f"limit_price is below the approved {approved_price}"
    return None


def _approved_price(value: Any) -> Decimal | None:
    """The approved limit as a Decimal (repr of the JSON float, so 120.1 stays 120.1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        price = Decimal(repr(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() and price > 0 else None
