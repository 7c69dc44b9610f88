"""Turning API answers into short, readable text for the terminal."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def money(value: Any) -> str:
    return f"{float(value):,.2f}"


def quote(body: dict[str, Any]) -> str:
    return f"{body['symbol']}: {money(body['price'])} {body.get('currency', 'USD')}"


def portfolio(body: dict[str, Any], who: str | None) -> str:
    currency = body.get("currency", "USD")
    lines = [f"Portfolio{' of ' + who if who else ''} ({currency}):"]
    lines.append(f"  {'cash':<8}{'':>24}{money(body['cash']):>14}")
    for row in body.get("positions", []):
        held = f"{row['quantity']} x {money(row['price'])}"
        lines.append(f"  {row['symbol']:<8}{held:>24}{money(row['market_value']):>14}")
    lines.append(f"  {'total':<8}{'':>24}{money(body['total_value']):>14}")
    return "\n".join(lines)


def orders(body: dict[str, Any]) -> str:
    rows = body.get("orders", [])
    if not rows:
        return "You have no orders yet."
    lines = [f"Your orders ({len(rows)}):"]
    for row in rows:
        fill = f" at {money(row['fill_price'])}" if row.get("fill_price") is not None else ""
        lines.append(
            f"  {row['id']}  {row['side']} {row['quantity']} {row['symbol']} "
            f"limit {money(row['limit_price'])}  {row['status']}{fill}"
        )
    return "\n".join(lines)


def order_placed(order: dict[str, Any]) -> str:
    verb = "Bought" if order["side"] == "buy" else "Sold"
    what = f"{order['quantity']} {order['symbol']}"
    if order.get("status") == "filled":
        return f"{verb} {what} at {money(order['fill_price'])} USD (order {order['id']}, filled)."
    limit = money(order["limit_price"])
    return f"Order {order['id']} is open: {order['side']} {what}, limit {limit} USD."


def _day(moment: datetime, now: datetime) -> str:
    if moment.date() == now.date():
        return "today"
    if moment.date() == (now + timedelta(days=1)).date():
        return "tomorrow"
    return moment.strftime("on %a %d %b")


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%H:%M}-{end:%H:%M}"


def freebusy(body: dict[str, Any], start: datetime, minutes: int, now: datetime) -> str:
    """Free or busy for a slot; for a long range (a day), the busy intervals."""
    end = start + timedelta(minutes=minutes)
    tz = start.tzinfo
    busy = [
        (
            datetime.fromisoformat(b["start"]).astimezone(tz),
            datetime.fromisoformat(b["end"]).astimezone(tz),
        )
        for b in body.get("busy", [])
    ]
    when = _day(start, now)
    if not busy:
        span = "" if minutes >= 12 * 60 else f" {_span(start, end)}"
        return f"Yes, you are free {when}{span}."
    listed = ", ".join(_span(b, e) for b, e in busy)
    if minutes >= 12 * 60:
        return f"{when.capitalize()} you are busy {listed}; free otherwise."
    return f"No, you are busy {when} {_span(start, end)}: {listed} is taken."
