"""Approved trades at the real mock broker: a token does exactly what the user approved.

RFC 9396 §7 (the resource server checks that the token's authorization_details cover
the request), DESIGN "The demo" (each trade token places at most one order), with
tokens from the live authserver: CIBA for trades (CIBA Core §10.1), token exchange
(RFC 8693) for portfolio reads. The broker verifies them against the authserver's
JWKS (RFC 9068 §4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests
from sqlalchemy import update

from authserver.admin import CIBA, TOKEN_EXCHANGE, create_resource
from authserver.credentials import digest
from authserver.db import transaction
from authserver.models import BackchannelRequest
from tests.support.apps import reset_database
from tests.support.ciba_live import ApprovalBrowser, broker_orders, live_broker
from tests.support.db import count, issued_counts
from tests.support.factories import DEFAULT_PASSWORD, ClientInfo, make_client, make_user
from tests.support.flows import Pkce, code_params, query_of
from tests.support.live import LiveBrowser, LiveServer, live_server

from .conftest import TRADE, TRADE_TYPE, make_ciba_client

BUY_NET = {"side": "buy", "symbol": "NET", "quantity": 10, "limit_price": 120.0}


@pytest.fixture(scope="module")
def server(migrated_database):
    with live_server(migrated_database, ciba_interval=1) as up:
        yield up


@pytest.fixture(scope="module")
def broker(server, tmp_path_factory):
    database = tmp_path_factory.mktemp("broker") / "broker.db"
    with live_broker(server.url, f"sqlite:///{database}") as running:
        yield running


@dataclass
class Market:
    server: LiveServer
    broker_url: str
    broker_app: Any
    alice: ApprovalBrowser
    agent: ClientInfo

    def request_trade(self, entry: dict[str, Any]) -> requests.Response:
        """POST /bc-authorize (CIBA §7.1) asking alice to approve `entry`."""
        return requests.post(
            f"{self.server.url}/bc-authorize",
            data={
                "scope": "openid",
                "login_hint": "alice",
                "authorization_details": json.dumps([entry]),
            },
            auth=self.agent.basic_auth,
            timeout=10,
        )

    def approved_token(self, entry: dict[str, Any], stored: dict[str, Any] | None = None) -> str:
        """A CIBA request for `entry`, approved by alice on /approvals, redeemed (§10.1).

        `stored` replaces the entry in the pending request before alice sees it: a request
        the authorization server accepted before it checked what it now refuses.
        """
        agent = self.agent.basic_auth
        started = self.request_trade(entry)
        assert started.status_code == 200, started.text
        if stored is not None:
            with transaction(self.server.runtime.session_factory) as session:
                session.execute(
                    update(BackchannelRequest)
                    .where(
                        BackchannelRequest.auth_req_hash == digest(started.json()["auth_req_id"])
                    )
                    .values(authorization_details=[stored])
                )
        [request_id] = self.alice.pending_ids()
        assert self.alice.decide(request_id).status_code == 302
        tokens = requests.post(
            f"{self.server.url}/token",
            data={"grant_type": CIBA, "auth_req_id": started.json()["auth_req_id"]},
            auth=agent,
            timeout=10,
        )
        assert tokens.status_code == 200, tokens.text
        return str(tokens.json()["access_token"])

    def order(self, token: str, **changes: Any) -> requests.Response:
        return requests.post(
            f"{self.broker_url}/orders",
            json={**BUY_NET, **changes},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def orders_of(self, token: str) -> list[Any]:
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        return [row for row in broker_orders(self.broker_app) if row.jti == jti]


@pytest.fixture
def market(server, broker):
    reset_database(server.app)
    broker_url, broker_app = broker
    with transaction(server.runtime.session_factory) as session:
        create_resource(
            session,
            identifier=broker_url,
            name="Broker",
            scopes=["portfolio:read"],
            detail_types=[TRADE_TYPE],
        )
    make_user(server.app, "alice")
    agent = make_ciba_client(server.app, "agent")
    alice = ApprovalBrowser(server.url, "alice", DEFAULT_PASSWORD)
    alice.sign_in()
    return Market(server, broker_url, broker_app, alice, agent)


def refused_order(response: requests.Response, reason: str) -> None:
    """RFC 9396 §7 at the broker: 403 with a Bearer challenge and the precise reason."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "insufficient_authorization_details"
    assert reason in body["error_description"], body
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_approved_trade_places_exactly_one_order(market):
    """One approval, one order: the order records the token's jti and the approved entry;
    the same token again is 409 token_already_used and places nothing."""
    token = market.approved_token(TRADE)
    placed = market.order(token)
    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert (body["side"], body["symbol"], body["quantity"]) == ("buy", "NET", 10)
    [order] = market.orders_of(token)
    assert order.id == body["id"] and order.approval == TRADE and order.client_id == "agent"
    again = market.order(token)
    assert again.status_code == 409 and again.json()["error"] == "token_already_used"
    smaller = market.order(token, quantity=1)
    assert smaller.status_code == 409
    assert len(market.orders_of(token)) == 1


def test_quantity_above_the_approved_is_refused(market):
    """Approved for 10 shares: 11 is refused; the refusal does not use up the approval."""
    token = market.approved_token(TRADE)
    refused_order(market.order(token, quantity=11), "quantity exceeds the approved 10")
    assert market.orders_of(token) == []
    assert market.order(token, quantity=10).status_code == 201


def test_limit_price_above_the_approved_is_refused(market):
    """A buy limit above the approved 120.00 is refused (a lower one would be no worse)."""
    token = market.approved_token(TRADE)
    refused_order(market.order(token, limit_price=120.01), "limit_price is above the approved")
    assert market.orders_of(token) == []
    assert market.order(token, limit_price=119.5).status_code == 201


def test_sell_approval_cannot_buy(market):
    """The side is part of the approval: a sell token cannot buy."""
    token = market.approved_token({**TRADE, "side": "sell", "quantity": 5, "limit_price": 100.0})
    refused_order(market.order(token, quantity=5, limit_price=100.0), "approved side is sell")
    assert market.orders_of(token) == []
    sold = market.order(token, side="sell", quantity=5, limit_price=100.0)
    assert sold.status_code == 201, sold.text


def test_approval_for_net_cannot_buy_aapl(market):
    """The symbol is part of the approval."""
    token = market.approved_token(TRADE)
    refused_order(market.order(token, symbol="AAPL"), "approved symbol is NET")
    assert market.orders_of(token) == []


def test_portfolio_read_token_cannot_place_orders(market):
    """A token from token exchange (RFC 8693) with portfolio:read and no trade detail reads
    the portfolio and places no order."""
    server = market.server
    web = make_client(server.app, "web-app", scope="openid portfolio:read")
    agent = make_client(
        server.app,
        "reader-agent",
        grant_types=[TOKEN_EXCHANGE],
        redirect_uris=[],
        scope="portfolio:read",
        may_delegate=True,
        allowed_audiences=[market.broker_url],
    )
    pkce = Pkce.new()
    params = code_params(web.client_id, web.redirect_uri, pkce, scope="openid portfolio:read")
    browser = LiveBrowser(server.url, "alice", DEFAULT_PASSWORD)
    redirect = browser.authorize(f"{server.url}/authorize?{urlencode(params)}")
    user = requests.post(
        f"{server.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": query_of(redirect)["code"],
            "redirect_uri": web.redirect_uri,
            "code_verifier": pkce.verifier,
        },
        auth=web.basic_auth,
        timeout=10,
    )
    assert user.status_code == 200, user.text
    exchanged = requests.post(
        f"{server.url}/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": user.json()["access_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": market.broker_url,
            "scope": "portfolio:read",
        },
        auth=agent.basic_auth,
        timeout=10,
    )
    assert exchanged.status_code == 200, exchanged.text
    token = exchanged.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "portfolio:read" and "authorization_details" not in claims
    portfolio = requests.get(
        f"{market.broker_url}/portfolio", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert portfolio.status_code == 200, portfolio.text
    refused_order(market.order(token), "token carries no authorization_details")
    assert market.orders_of(token) == []


SANDBOX = "paper-trading sandbox (no real money)"


@pytest.mark.parametrize("where", [SANDBOX, "https://sandbox.example.com"])
def test_trade_for_another_location_is_refused_at_bc_authorize(market, where):
    """RFC 9396 §2.2 and §5: alice would read "At (API): sandbox" and approve what looks like
    play money, while the token would be for the live broker. invalid_authorization_details;
    no request stored, nothing for alice to approve, nothing issued."""
    before = (count(market.server.app, BackchannelRequest), issued_counts(market.server.app))
    response = market.request_trade({**TRADE, "locations": [where]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_authorization_details"
    assert "locations" in body["error_description"]
    assert market.alice.pending_ids() == []
    after = (count(market.server.app, BackchannelRequest), issued_counts(market.server.app))
    assert after == before


@pytest.mark.parametrize("where", [SANDBOX, "https://sandbox.example.com"])
def test_trade_approved_for_another_location_places_no_order(market, where):
    """RFC 9396 §2.2 at the resource server: a token whose approved trade entry names only
    another location (here a request stored before the authorization server checked
    locations) is not meant for this broker: 403 insufficient_authorization_details, no
    order, however exactly the order matches the rest of the entry."""
    token = market.approved_token(TRADE, stored={**TRADE, "locations": [where]})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == market.broker_url
    assert claims["authorization_details"] == [{**TRADE, "locations": [where]}]
    refused_order(market.order(token), f"approved locations do not include {market.broker_url}")
    assert market.orders_of(token) == []


def test_trade_approved_for_the_broker_places_the_order(market):
    """RFC 9396 §2.2: an entry whose locations name the broker (its RFC 8707 identifier, the
    token's audience) is accepted by the authorization server and honoured by the broker."""
    entry = {**TRADE, "locations": [market.broker_url]}
    token = market.approved_token(entry)
    placed = market.order(token)
    assert placed.status_code == 201, placed.text
    [order] = market.orders_of(token)
    assert order.approval == entry
