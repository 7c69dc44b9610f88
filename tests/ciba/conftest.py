"""Fixtures for CIBA with RAR: the broker resource with its `trade` type, an agent, a user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authserver.admin import CIBA, create_resource
from authserver.db import transaction
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user

BROKER = "https://broker.example.com"
TRADE_TYPE = json.loads(
    (Path(__file__).resolve().parents[2] / "demo_agent/broker/trade_type.json").read_text()
)
TRADE = {
    "type": "trade",
    "side": "buy",
    "symbol": "NET",
    "quantity": 10,
    "limit_price": 120.0,
    "currency": "USD",
}


def register_broker(app):
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        create_resource(
            session,
            identifier=BROKER,
            name="Broker",
            scopes=["portfolio:read"],
            detail_types=[TRADE_TYPE],
        )


def make_ciba_client(app, client_id="agent", mode="poll", endpoint=None):
    return make_client(
        app,
        client_id,
        grant_types=[CIBA],
        redirect_uris=[],
        scope="openid profile portfolio:read",
        backchannel_mode=mode,
        backchannel_endpoint=endpoint,
    )


@pytest.fixture
def broker(app):
    register_broker(app)
    return BROKER


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


@pytest.fixture
def agent(app, broker):
    return make_ciba_client(app)


def bc_authorize(client, agent, **params):
    data = {
        "scope": "openid",
        "login_hint": "alice",
        "binding_message": "ORDER-7",
        "authorization_details": json.dumps([TRADE]),
    }
    data.update(params)
    data = {k: v for k, v in data.items() if v is not None}
    return client.post("/bc-authorize", data=data, auth=agent.basic_auth)


def poll(client, agent, auth_req_id):
    return client.post(
        "/token", auth=agent.basic_auth, data={"grant_type": CIBA, "auth_req_id": auth_req_id}
    )


def approval_form(browser, password=DEFAULT_PASSWORD, decision="approve"):
    """The first pending request on /approvals, decided through its HTML form."""
    from tests.support.flows import csrf_token

    page = browser.client.get("/approvals").get_data(as_text=True)
    start = page.index('action="/approvals/') + len('action="/approvals/')
    request_id = page[start : page.index('"', start)]
    form = {"csrf_token": csrf_token(page), "decision": decision, "password": password}
    return request_id, browser.client.post(f"/approvals/{request_id}", data=form)
