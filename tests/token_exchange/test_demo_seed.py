"""`authserver demo --seed-only` registers what token exchange needs (issue 3, item 4):
the broker resource, and an agent that may exchange a user's token for it.

Checked by behaviour, not by reading rows: the seeded agent signs alice in (code + PKCE
on its loopback redirect) and exchanges her token for a broker token (RFC 8693).
"""

from __future__ import annotations

import jwt

from authserver.admin import TOKEN_EXCHANGE
from authserver.db import transaction
from authserver.demo import AGENT_REDIRECT_URI, BROKER_URL, DEMO_USERS, demo_secret, seed
from tests.support.flows import Pkce, code_params

from .conftest import SUBJECT_ACCESS

AGENT = "demo-agent"


def _seeded(app):
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        described = seed(session, runtime)
    return described, (AGENT, demo_secret(runtime, AGENT))


def test_seed_lists_the_broker_and_an_exchanging_agent(app):
    described, _ = _seeded(app)
    [broker] = [r for r in described["resources"] if r["identifier"] == BROKER_URL]
    assert "portfolio:read" in broker["scopes"]
    [agent] = [c for c in described["clients"] if c["client_id"] == AGENT]
    assert TOKEN_EXCHANGE in agent["grant_types"] and agent["client_secret"]


def test_seeded_agent_exchanges_the_users_token_for_the_broker(app, client, browser):
    """The seeded agent, acting for alice (its actor token), gets a broker token with `act`."""
    _, auth = _seeded(app)
    alice = DEMO_USERS[0]
    assert browser.login(alice["username"], alice["password"]).status_code == 302
    pkce = Pkce.new()
    scope = "openid portfolio:read"
    code = browser.code_for(code_params(AGENT, AGENT_REDIRECT_URI, pkce, scope=scope))
    user = client.post(
        "/token",
        auth=auth,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": AGENT_REDIRECT_URI,
            "code_verifier": pkce.verifier,
        },
    ).json
    actor = client.post("/token", auth=auth, data={"grant_type": "client_credentials"}).json
    response = client.post(
        "/token",
        auth=auth,
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": user["access_token"],
            "subject_token_type": SUBJECT_ACCESS,
            "actor_token": actor["access_token"],
            "actor_token_type": SUBJECT_ACCESS,
            "audience": BROKER_URL,
            "scope": "portfolio:read",
        },
    )
    assert response.status_code == 200, response.json
    claims = jwt.decode(response.json["access_token"], options={"verify_signature": False})
    assert claims["aud"] == BROKER_URL and claims["act"] == {"sub": AGENT}
    assert claims["scope"] == "portfolio:read"
