"""The ledger: accounts, portfolio reads and order placement, one transaction each.

Accounts are created lazily: the first request for a new token ``sub`` opens an account
seeded with 10,000.00 USD cash, 5 NET and 10 AAPL, so every demo user has something to
look at and trade. Every portfolio or order-list read is recorded (time, sub, client_id,
the RFC 8693 ``act`` chain, endpoint) and logged with the actor chain, never the token.

Orders (DESIGN "The demo"): a buy needs the cash, a sell the shares. An order whose
limit the mock quote satisfies fills at the quote; otherwise it rests ``open`` and its
cash (buy, at the limit) or shares (sell) are reserved. The token's ``jti`` is stored
UNIQUE on the order, so one token places at most one order. A rejected order (not
enough cash or shares) is rolled back and does not consume the token.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import market
from .errors import OrderRejected, TokenAlreadyUsed
from .models import Account, Order, Position, Read
from .tokens import actor_chain
from .trading import OrderRequest

log = logging.getLogger(__name__)

SEED_CASH_CENTS = 1_000_000
SEED_POSITIONS = {"NET": 5, "AAPL": 10}


class Ledger:
    """Account state behind the API; each public method is one database transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction: commit on success, roll back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def portfolio(self, claims: dict[str, Any]) -> dict[str, Any]:
        """Cash and positions of the token's ``sub``; records the read."""
        with self.transaction() as session:
            account = self._account(session, claims["sub"])
            positions = session.scalars(
                select(Position)
                .where(Position.account_id == account.id, Position.quantity > 0)
                .order_by(Position.symbol)
            ).all()
            self._record_read(session, claims, "GET /portfolio")
            return _portfolio_json(account, positions)

    def orders(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The token subject's orders, newest first; records the read."""
        with self.transaction() as session:
            account = self._account(session, claims["sub"])
            rows = session.scalars(
                select(Order)
                .where(Order.account_id == account.id)
                .order_by(Order.created_at.desc(), Order.id)
            ).all()
            self._record_read(session, claims, "GET /orders")
            return {"orders": [order_json(row) for row in rows]}

    def place_order(
        self, claims: dict[str, Any], order: OrderRequest, approval: dict[str, Any]
    ) -> dict[str, Any]:
        """Place ``order`` under the approving ``authorization_details`` entry, once per jti."""
        try:
            with self.transaction() as session:
                if session.scalar(select(Order.id).where(Order.jti == claims["jti"])):
                    raise TokenAlreadyUsed("this token has already placed an order")
                account = self._account(session, claims["sub"], lock=True)
                row = _new_order(account, order, claims, approval)
                _settle(session, account, row)
                session.add(row)
                session.flush()
                placed = order_json(row)
        except IntegrityError:
            if self._jti_used(claims["jti"]):
                raise TokenAlreadyUsed("this token has already placed an order") from None
            raise
        _log_event(f"order {placed['id']} {placed['status']}", claims)
        return placed

    def _jti_used(self, jti: str) -> bool:
        with self.transaction() as session:
            return session.scalar(select(Order.id).where(Order.jti == jti)) is not None

    @staticmethod
    def _account(session: Session, sub: str, lock: bool = False) -> Account:
        """The account of ``sub``, created with the seeded portfolio on first use."""
        query = select(Account).where(Account.sub == sub)
        if lock:
            query = query.with_for_update()
        account = session.scalar(query)
        if account is not None:
            return account
        try:
            with session.begin_nested():
                account = Account(sub=sub, cash_cents=SEED_CASH_CENTS)
                session.add(account)
                session.flush()
                for symbol, quantity in SEED_POSITIONS.items():
                    session.add(Position(account_id=account.id, symbol=symbol, quantity=quantity))
        except IntegrityError:  # a concurrent request created it first
            account = session.scalars(query).one()
        return account

    @staticmethod
    def _record_read(session: Session, claims: dict[str, Any], endpoint: str) -> None:
        sub, client_id = claims["sub"], claims["client_id"]
        session.add(Read(sub=sub, client_id=client_id, act=claims.get("act"), endpoint=endpoint))
        _log_event(f"{endpoint} read", claims)


def _log_event(event: str, claims: dict[str, Any]) -> None:
    """Log who did what through which agents: ``act=agent-b<agent-a`` (current actor
    first, ``-`` when undelegated) and the token's jti, never the token itself."""
    chain = "<".join(actor_chain(claims.get("act"))) or "-"
    log.info(
        "%s sub=%s client_id=%s act=%s jti=%s",
        event,
        claims["sub"],
        claims["client_id"],
        chain,
        claims["jti"],
    )


def _new_order(
    account: Account, order: OrderRequest, claims: dict[str, Any], approval: dict[str, Any]
) -> Order:
    quote = market.price_cents(order.symbol)
    limit = order.limit_price_cents
    fills = quote <= limit if order.side == "buy" else quote >= limit
    return Order(
        id="ord_" + secrets.token_hex(12),
        account_id=account.id,
        side=order.side,
        symbol=order.symbol,
        quantity=order.quantity,
        limit_price_cents=limit,
        status="filled" if fills else "open",
        fill_price_cents=quote if fills else None,
        jti=claims["jti"],
        client_id=claims["client_id"],
        act=claims.get("act"),
        approval=approval,
        token_iat=int(claims["iat"]),
    )


def _settle(session: Session, account: Account, row: Order) -> None:
    """Move cash and shares for a fill, or reserve them for a resting order."""
    position = session.scalar(
        select(Position).where(Position.account_id == account.id, Position.symbol == row.symbol)
    )
    if position is None:
        position = Position(account_id=account.id, symbol=row.symbol, quantity=0)
        session.add(position)
    price = row.fill_price_cents if row.fill_price_cents is not None else row.limit_price_cents
    amount = row.quantity * price
    if row.side == "buy":
        if account.cash_cents < amount:
            raise OrderRejected("insufficient_funds", "not enough cash for this order")
        account.cash_cents -= amount
        position.quantity += row.quantity if row.status == "filled" else 0
    else:
        if position.quantity < row.quantity:
            raise OrderRejected("insufficient_position", f"not enough {row.symbol} shares")
        position.quantity -= row.quantity
        account.cash_cents += amount if row.status == "filled" else 0


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite returns naive datetimes; they were stored as UTC)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def order_json(row: Order) -> dict[str, Any]:
    """The API representation of an order, including the approval that authorized it."""
    fill = row.fill_price_cents
    return {
        "id": row.id,
        "side": row.side,
        "symbol": row.symbol,
        "quantity": row.quantity,
        "limit_price": market.dollars(row.limit_price_cents),
        "currency": market.CURRENCY,
        "status": row.status,
        "fill_price": None if fill is None else market.dollars(fill),
        "created_at": _iso(row.created_at),
        "client_id": row.client_id,
        "act": row.act,
        "authorization_details": row.approval,
    }


def _portfolio_json(account: Account, positions: Sequence[Position]) -> dict[str, Any]:
    holdings = [
        {
            "symbol": p.symbol,
            "quantity": p.quantity,
            "price": market.dollars(market.price_cents(p.symbol)),
            "market_value": market.dollars(p.quantity * market.price_cents(p.symbol)),
        }
        for p in positions
    ]
    total = account.cash_cents + sum(p.quantity * market.price_cents(p.symbol) for p in positions)
    return {
        "sub": account.sub,
        "currency": market.CURRENCY,
        "cash": market.dollars(account.cash_cents),
        "positions": holdings,
        "total_value": market.dollars(total),
    }
