"""POST /orders: RFC 9396 trade authorization details, one order per token, strict bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from demo_agent.broker.models import Account, Order
from tests.demo import broker_fixtures as fixtures
from tests.demo.broker_fixtures import (
    BROKER_AUDIENCE,
    BUY_NET,
    DROP,
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
broker_client = fixtures.broker_client


# RFC 9396 §2.2: the entry's locations leave this broker out (its audience, BROKER_AUDIENCE).
ELSEWHERE = f"approved locations do not include {BROKER_AUDIENCE}"


def assert_not_covered(response: TestResponse, reason: str) -> None:
    """RFC 9396 §7 + RFC 6750 §3.1: 403, insufficient_scope challenge, precise JSON error."""
    assert response.status_code == 403
    assert response.json["error"] == "insufficient_authorization_details"
    assert reason in response.json["error_description"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_covered_buy_fills_at_quote(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """RFC 9396 §7: a trade entry covering side, symbol, quantity and limit authorizes the order."""
    act = {"sub": "trading-agent", "act": {"sub": "planner"}}
    token = order_token(stub_issuer, trade(currency="USD"), act=act, client_id="trading-agent")
    response = post_order(broker_app.test_client(), token, BUY_NET)
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "filled" and body["fill_price"] == 118.5
    assert body["authorization_details"] == trade(currency="USD") and body["act"] == act
    (order,) = rows(broker_app, Order)
    assert order.id == body["id"] and order.approval == trade(currency="USD")
    assert (order.client_id, order.act) == ("trading-agent", act)
    assert order.jti == stub_issuer.decode(token)["jti"]
    assert order.token_iat == stub_issuer.decode(token)["iat"]
    assert rows(broker_app, Account)[0].cash_cents == 1_000_000 - 10 * 11850
    assert holdings(broker_app) == {"NET": 15, "AAPL": 10}


def test_smaller_order_within_approval(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 9396 §7: fewer shares at a better price than approved is covered."""
    order = {**BUY_NET, "quantity": 3, "limit_price": 119}
    assert post_order(broker_client, order_token(stub_issuer, trade()), order).status_code == 201


def test_limit_below_quote_rests_open(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """An order the quote does not satisfy rests open; its cash is reserved at the limit."""
    token = order_token(stub_issuer, trade(limit_price=111.0))
    response = post_order(broker_app.test_client(), token, {**BUY_NET, "limit_price": 110.25})
    assert response.status_code == 201
    assert response.json["status"] == "open" and response.json["fill_price"] is None
    assert rows(broker_app, Account)[0].cash_cents == 1_000_000 - 10 * 11025
    assert holdings(broker_app) == {"NET": 5, "AAPL": 10}


def test_covered_sell(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """A sell covered by a sell entry with a lower floor fills at the quote."""
    token = order_token(stub_issuer, trade(side="sell", quantity=5, limit_price=100.0))
    order = {"side": "sell", "symbol": "NET", "quantity": 5, "limit_price": 100.5}
    response = post_order(broker_app.test_client(), token, order)
    assert response.status_code == 201 and response.json["fill_price"] == 118.5
    assert holdings(broker_app) == {"AAPL": 10}
    assert rows(broker_app, Account)[0].cash_cents == 1_000_000 + 5 * 11850


def test_locations_naming_the_broker(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 9396 §2.2: an entry whose locations include the broker's identifier is for it."""
    token = order_token(
        stub_issuer, trade(locations=["https://other.example.com", BROKER_AUDIENCE])
    )
    assert post_order(broker_client, token, BUY_NET).status_code == 201


def test_second_entry_can_cover(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 9396 §2: authorization_details is an array; any trade entry may cover the order."""
    token = order_token(stub_issuer, {"type": "quote"}, trade(symbol="AAPL"), trade())
    assert post_order(broker_client, token, BUY_NET).status_code == 201


def test_replay_places_no_second_order(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """DESIGN "The demo": each token places at most one order; a replay is 409."""
    client, token = broker_app.test_client(), order_token(stub_issuer, trade())
    assert post_order(client, token, {**BUY_NET, "quantity": 1}).status_code == 201
    response = post_order(client, token, {**BUY_NET, "quantity": 1})
    assert response.status_code == 409
    assert response.json["error"] == "token_already_used"
    assert len(rows(broker_app, Order)) == 1


@pytest.mark.parametrize(
    ("entry", "order", "reason"),
    [
        (trade(), {**BUY_NET, "quantity": 11}, "quantity exceeds the approved 10"),
        (trade(), {**BUY_NET, "limit_price": 120.01}, "limit_price is above the approved 120.0"),
        (
            trade(side="sell", limit_price=115.0),
            {**BUY_NET, "side": "sell", "limit_price": 114.99},
            "limit_price is below the approved 115.0",
        ),
        (trade(side="sell"), BUY_NET, "approved side is sell, not buy"),
        (trade(symbol="AAPL"), BUY_NET, "approved symbol is AAPL, not NET"),
        (trade(currency="EUR"), BUY_NET, "approved currency is not USD"),
        (trade(quantity="10"), BUY_NET, "quantity exceeds the approved"),
        (trade(limit_price=DROP), BUY_NET, "approved limit_price is missing"),
        ({**trade(), "type": "payment"}, BUY_NET, "no entry of type trade"),
        (trade(locations=["paper-trading sandbox (no real money)"]), BUY_NET, ELSEWHERE),
        (trade(locations=["https://sandbox.example.com"]), BUY_NET, ELSEWHERE),
        (trade(locations=[BROKER_AUDIENCE + "/sandbox"]), BUY_NET, ELSEWHERE),
        (trade(locations=[]), BUY_NET, ELSEWHERE),
        (trade(locations=BROKER_AUDIENCE), BUY_NET, ELSEWHERE),
    ],
)
def test_order_not_covered(
    broker_app: Flask, stub_issuer: StubIssuer, entry: dict, order: dict, reason: str
) -> None:
    """RFC 9396 §7: an entry that does not cover the exact order is 403; nothing is placed."""
    token = order_token(stub_issuer, entry)
    assert_not_covered(post_order(broker_app.test_client(), token, order), reason)
    assert rows(broker_app, Order) == []


@pytest.mark.parametrize("details", [DROP, [], {"type": "trade"}])
def test_no_authorization_details(broker_app: Flask, stub_issuer: StubIssuer, details: Any) -> None:
    """RFC 9396 §7: a token without authorization_details cannot place orders (even with scopes)."""
    token = stub_issuer.mint(authorization_details=details, scope="openid portfolio:read")
    response = post_order(broker_app.test_client(), token, BUY_NET)
    if isinstance(details, dict):  # not an array: the token itself is malformed
        assert response.status_code == 401
    else:
        assert_not_covered(response, "token carries no authorization_details")
    assert rows(broker_app, Order) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        *[json.dumps({k: v for k, v in BUY_NET.items() if k != name}).encode() for name in BUY_NET],
        b'{"side": "buy", "symbol": "NET", "quantity": -1, "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": 0, "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": "10", "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1.5, "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1e1, "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": true, "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1000000000000, "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": ' + b"9" * 5000 + b', "limit_price": 1}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": -120}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": 0}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": "120"}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": NaN}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": Infinity}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": 1e400}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": 119.999}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": null}',
        b'{"side": "short", "symbol": "NET", "quantity": 1, "limit_price": 120}',
        b'{"side": "buy", "symbol": "net", "quantity": 1, "limit_price": 120}',
        b'{"side": "buy", "symbol": "ZZZZ", "quantity": 1, "limit_price": 120}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": 120, "currency": "EUR"}',
        b'{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": 120, "account": "bob"}',
        b'[{"side": "buy", "symbol": "NET", "quantity": 1, "limit_price": 120}]',
        b'{"side": "buy", "symbol": "NET", "quantity": 1,',
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_order_body(broker_app: Flask, stub_issuer: StubIssuer, body: bytes) -> None:
    """RFC 6750 §3.1 invalid_request: a malformed order is 400, places nothing, spends nothing."""
    token, client = order_token(stub_issuer, trade()), broker_app.test_client()
    response = client.post(
        "/orders", data=body, headers={**bearer(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert rows(broker_app, Order) == []
    assert post_order(client, token, BUY_NET).status_code == 201  # the approval was not consumed


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type(broker_app: Flask, stub_issuer: StubIssuer, content_type: Any) -> None:
    """POST /orders takes application/json only; anything else is 400 and places nothing."""
    headers = bearer(order_token(stub_issuer, trade()))
    if content_type:
        headers["Content-Type"] = content_type
    body = json.dumps(BUY_NET)
    response = broker_app.test_client().post("/orders", data=body, headers=headers)
    assert response.status_code == 400 and response.json["error"] == "invalid_request"
    assert rows(broker_app, Order) == []


def test_oversized_body(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """Bodies are capped (16 KiB): an oversized one is rejected before parsing."""
    body = {**BUY_NET, "pad": "x" * 20000}
    response = post_order(broker_client, order_token(stub_issuer, trade()), body)
    assert response.status_code == 413


def test_order_needs_a_valid_token(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """RFC 6750 §3.1: no token → 401; an expired token with a covering entry → 401."""
    client = broker_app.test_client()
    assert client.post("/orders", json=BUY_NET).status_code == 401
    expired = order_token(stub_issuer, trade(), exp=1_000_000)
    assert post_order(client, expired, BUY_NET).status_code == 401
    assert rows(broker_app, Order) == []


def test_insufficient_funds(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """A buy needs the cash; a rejected order places nothing and keeps the approval usable."""
    entry = trade(symbol="MSFT", quantity=100, limit_price=500.0)
    token, client = order_token(stub_issuer, entry), broker_app.test_client()
    order = {"side": "buy", "symbol": "MSFT", "quantity": 100, "limit_price": 450}
    response = post_order(client, token, order)
    assert response.status_code == 422 and response.json["error"] == "insufficient_funds"
    assert rows(broker_app, Order) == []
    assert post_order(client, token, {**order, "quantity": 20}).status_code == 201
    assert rows(broker_app, Account)[0].cash_cents == 1_000_000 - 20 * 43110


def test_insufficient_position(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """A sell needs the shares."""
    token = order_token(stub_issuer, trade(side="sell", symbol="MSFT", limit_price=400.0))
    order = {"side": "sell", "symbol": "MSFT", "quantity": 1, "limit_price": 400}
    response = post_order(broker_app.test_client(), token, order)
    assert response.status_code == 422 and response.json["error"] == "insufficient_position"
    assert rows(broker_app, Order) == []


def test_depth_three_chain_recorded_on_order(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """RFC 8693 §4.1: the order records the full act.act.act chain of the approving token."""
    act = {"sub": "agent-c", "act": {"sub": "agent-b", "act": {"sub": "agent-a"}}}
    token = order_token(stub_issuer, trade(), act=act, client_id="agent-c")
    client = broker_app.test_client()
    assert post_order(client, token, BUY_NET).status_code == 201
    (order,) = rows(broker_app, Order)
    assert order.act == act and order.client_id == "agent-c"
    listing = client.get("/orders", headers=bearer(stub_issuer.mint()))
    assert listing.json["orders"][0]["act"] == act
