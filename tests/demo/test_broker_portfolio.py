"""Broker reads: public quotes, portfolio and order lists for the token's sub, read audit."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from demo_agent.broker.models import Read
from tests.demo import broker_fixtures as fixtures
from tests.demo.broker_fixtures import StubIssuer, bearer, rows

stub_issuer = fixtures.stub_issuer
broker_app = fixtures.broker_app
broker_client = fixtures.broker_client

DEPTH_3 = {"sub": "agent-c", "act": {"sub": "agent-b", "act": {"sub": "agent-a"}}}


@pytest.mark.parametrize(
    ("symbol", "price"), [("NET", 118.5), ("AAPL", 227.3), ("MSFT", 431.1), ("GOOG", 178.2)]
)
def test_public_quote(broker_client: FlaskClient, symbol: str, price: float) -> None:
    """DESIGN "The demo": GET /quotes/<symbol> is public and deterministic."""
    response = broker_client.get(f"/quotes/{symbol}")
    assert response.status_code == 200
    assert response.json == {"symbol": symbol, "price": price, "currency": "USD"}
    assert "Cache-Control" not in response.headers


def test_unknown_symbol(broker_client: FlaskClient) -> None:
    """A well-formed symbol the market does not list is 404 with a JSON error."""
    response = broker_client.get("/quotes/ZZZZ")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


@pytest.mark.parametrize("symbol", ["net", "N3T", "ABCDEFGHIJK", "NET%0A", "N-T", "%C3%89"])
def test_malformed_symbol(broker_client: FlaskClient, symbol: str) -> None:
    """Symbols are 1 to 10 uppercase letters; anything else is 400 invalid_request."""
    response = broker_client.get(f"/quotes/{symbol}")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_portfolio_seeded_for_new_sub(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """A new sub gets the seeded account: 10,000.00 USD, 5 NET, 10 AAPL."""
    response = broker_client.get("/portfolio", headers=bearer(stub_issuer.mint(sub="carol")))
    assert response.status_code == 200
    assert response.json == {
        "sub": "carol",
        "currency": "USD",
        "cash": 10000.0,
        "positions": [
            {"symbol": "AAPL", "quantity": 10, "price": 227.3, "market_value": 2273.0},
            {"symbol": "NET", "quantity": 5, "price": 118.5, "market_value": 592.5},
        ],
        "total_value": 12865.5,
    }


def test_portfolio_answers_for_the_token_sub(
    broker_client: FlaskClient, stub_issuer: StubIssuer
) -> None:
    """RFC 9068 §5: the resource server acts for the token's sub, never a request parameter."""
    alice = broker_client.get("/portfolio?sub=bob", headers=bearer(stub_issuer.mint()))
    bob = broker_client.get("/portfolio", headers=bearer(stub_issuer.mint(sub="bob")))
    assert alice.json["sub"] == "alice" and bob.json["sub"] == "bob"


def test_read_recorded_with_act_chain(
    broker_app: Flask, stub_issuer: StubIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """DESIGN "The demo": act is recorded with each read and logged, never the token."""
    act = {"sub": "trading-agent"}
    token = stub_issuer.mint(act=act, client_id="trading-agent")
    client = broker_app.test_client()
    with caplog.at_level(logging.INFO):
        assert client.get("/portfolio", headers=bearer(token)).status_code == 200
        assert client.get("/orders", headers=bearer(token)).json == {"orders": []}
    reads = rows(broker_app, Read)
    assert [(r.endpoint, r.sub, r.client_id, r.act) for r in reads] == [
        ("GET /portfolio", "alice", "trading-agent", act),
        ("GET /orders", "alice", "trading-agent", act),
    ]
    assert reads[0].at is not None
    assert "act=trading-agent" in caplog.text
    assert token not in caplog.text


def test_undelegated_read_recorded_without_act(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """A token without act (the user's own client) records act as null."""
    broker_app.test_client().get("/portfolio", headers=bearer(stub_issuer.mint()))
    assert [r.act for r in rows(broker_app, Read)] == [None]


def test_depth_three_delegation_chain(
    broker_app: Flask, stub_issuer: StubIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 8693 §4.1: a nested act.act.act chain is recorded intact, current actor first."""
    token = stub_issuer.mint(act=DEPTH_3, client_id="agent-c")
    with caplog.at_level(logging.INFO):
        response = broker_app.test_client().get("/portfolio", headers=bearer(token))
    assert response.status_code == 200
    (read,) = rows(broker_app, Read)
    assert read.act == DEPTH_3
    assert read.act["act"]["act"]["sub"] == "agent-a"
    assert "act=agent-c<agent-b<agent-a" in caplog.text
