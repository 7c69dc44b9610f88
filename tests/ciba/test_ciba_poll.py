"""CIBA Core §7, §10.1, §11 in poll mode, with RFC 9396 authorization details."""

from __future__ import annotations

import jwt

from tests.support.db import audit_events
from tests.support.factories import DEFAULT_PASSWORD

from .conftest import BROKER, TRADE, approval_form, bc_authorize, poll


def test_poll_flow_approved(app, client, browser, alice, agent):
    """§7.3 response, §11 authorization_pending, then tokens with exactly the approved detail."""
    response = bc_authorize(client, agent)
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {"auth_req_id", "expires_in", "interval"}
    assert body["interval"] == 5 and body["expires_in"] == 300
    pending = poll(client, agent, body["auth_req_id"])
    assert pending.status_code == 400 and pending.json["error"] == "authorization_pending"
    browser.login("alice", DEFAULT_PASSWORD)
    request_id, decided = approval_form(browser)
    assert decided.status_code == 302
    assert body["auth_req_id"] not in request_id
    tokens = poll(client, agent, body["auth_req_id"])
    assert tokens.status_code == 200, tokens.json
    access = jwt.decode(tokens.json["access_token"], options={"verify_signature": False})
    assert access["authorization_details"] == [TRADE]
    assert access["aud"] == BROKER and access["sub"] == alice.id
    assert access["exp"] - access["iat"] == 300
    assert tokens.json["authorization_details"] == [TRADE]
    assert "refresh_token" not in tokens.json
    assert "id_token" in tokens.json
    again = poll(client, agent, body["auth_req_id"])
    assert again.json["error"] == "invalid_grant"
    assert [e.outcome for e in audit_events(app, "ciba.decided")] == ["approved"]


def test_poll_flow_denied(app, client, browser, alice, agent):
    """§11 access_denied after the user denies, without a password."""
    body = bc_authorize(client, agent).json
    browser.login("alice", DEFAULT_PASSWORD)
    _, decided = approval_form(browser, password="", decision="deny")
    assert decided.status_code == 302
    assert poll(client, agent, body["auth_req_id"]).json["error"] == "access_denied"


def test_approval_page_shows_details_escaped(app, client, browser, alice, agent):
    """The page shows the agent, the binding message (escaped) and the trade for people."""
    bc_authorize(client, agent, binding_message="<script>alert(1)</script>")
    browser.login("alice", DEFAULT_PASSWORD)
    page = browser.client.get("/approvals").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert "buy 10 NET at no more than 120.00 USD" in page
    assert "Client agent" in page
