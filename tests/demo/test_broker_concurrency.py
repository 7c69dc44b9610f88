"""Concurrency: one order per token, no overspending, one lazily created account.

These run on SQLite by default (writers serialized by BEGIN IMMEDIATE) and exercise row
locks and the jti UNIQUE constraint when ``BROKER_TEST_DATABASE_URL`` names PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask

from demo_agent.broker.models import Account, Order, Position
from tests.demo import broker_fixtures as fixtures
from tests.demo.broker_fixtures import (
    BUY_NET,
    StubIssuer,
    bearer,
    holdings,
    order_token,
    post_order,
    rows,
    trade,
)

stub_issuer = fixtures.stub_issuer
broker_app = fixtures.broker_app


def run_concurrently(count: int, action: Callable[[int], int]) -> list[int]:
    """Run ``action(index)`` in ``count`` threads released together; return status codes."""
    barrier, statuses = threading.Barrier(count), []

    def worker(index: int) -> None:
        barrier.wait()
        statuses.append(action(index))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(statuses)


def test_concurrent_replay_places_one_order(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """The jti UNIQUE constraint holds under 10 concurrent requests: exactly one order."""
    token = order_token(stub_issuer, trade())
    statuses = run_concurrently(
        10, lambda _i: post_order(broker_app.test_client(), token, BUY_NET).status_code
    )
    assert statuses == [201] + [409] * 9
    assert len(rows(broker_app, Order)) == 1
    assert holdings(broker_app)["NET"] == 15


def test_concurrent_orders_cannot_overspend(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """Cash is checked under a lock: 10 approved buys of 10 MSFT (4,311 each) fill at most 2."""
    entry = trade(symbol="MSFT", limit_price=450.0)
    tokens = [order_token(stub_issuer, entry, sub="dave") for _ in range(10)]
    order = {"side": "buy", "symbol": "MSFT", "quantity": 10, "limit_price": 450}
    broker_app.test_client().get("/portfolio", headers=bearer(stub_issuer.mint(sub="dave")))

    statuses = run_concurrently(
        10, lambda i: post_order(broker_app.test_client(), tokens[i], order).status_code
    )
    assert statuses == [201] * 2 + [422] * 8
    (account,) = rows(broker_app, Account)
    assert account.cash_cents == 1_000_000 - 2 * 10 * 43110


def test_concurrent_first_reads_create_one_account(
    broker_app: Flask, stub_issuer: StubIssuer
) -> None:
    """Lazy account creation is race-free: concurrent first requests share one account."""
    token = stub_issuer.mint(sub="erin")
    statuses = run_concurrently(
        10, lambda _i: broker_app.test_client().get("/portfolio", headers=bearer(token)).status_code
    )
    assert statuses == [200] * 10
    assert [a.sub for a in rows(broker_app, Account)] == ["erin"]
    assert sorted(p.symbol for p in rows(broker_app, Position)) == ["AAPL", "NET"]
