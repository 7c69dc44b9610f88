"""RFC 8693 token exchange: delegation with `act`, down-scoping, chains."""

from __future__ import annotations

import jwt

from tests.support.db import audit_events

from .conftest import API, SUBJECT_ACCESS, SUBJECT_ID, SUBJECT_REFRESH, exchange, make_agent


def claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def test_delegated_exchange_carries_act_and_narrow_scope(app, client, setup, runtime):
    """§2.2.1 response with issued_token_type; §4.1 `act` names the agent; RFC 9068 shape."""
    response = exchange(client, setup.agent, setup.tokens["access_token"], scope="portfolio:read")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["issued_token_type"] == SUBJECT_ACCESS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == runtime.settings.delegated_token_ttl == 300
    assert "refresh_token" not in body
    token = claims(body["access_token"])
    assert token["sub"] == setup.user_id
    assert token["aud"] == API
    assert token["client_id"] == "agent"
    assert token["scope"] == "portfolio:read"
    assert token["act"] == {"sub": "agent"}
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


def test_exchange_is_audited_with_actor_chain(app, client, setup):
    """DESIGN audit: subject, acting client and chain, audience and scope."""
    exchange(client, setup.agent, setup.tokens["access_token"], scope="portfolio:read")
    [event] = audit_events(app, "token.exchanged")
    assert event.user_id == setup.user_id and event.client_id == "agent"
    assert event.actor_chain == ["agent"]
    assert event.details["audience"] == API and event.details["scope"] == "portfolio:read"


def test_scope_defaults_to_intersection(app, client, setup):
    """Without `scope`: subject ∩ client ∩ resource."""
    response = exchange(client, setup.agent, setup.tokens["access_token"])
    assert claims(response.json["access_token"])["scope"] == "portfolio:read trade"


def test_actor_token_of_the_agent(app, client, setup):
    """§2.1 actor_token: the agent's own client-credentials token; result has act.sub = agent."""
    actor = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=setup.agent.basic_auth
    ).json["access_token"]
    response = exchange(
        client,
        setup.agent,
        setup.tokens["access_token"],
        actor_token=actor,
        actor_token_type=SUBJECT_ACCESS,
    )
    assert response.status_code == 200, response.json
    assert claims(response.json["access_token"])["act"] == {"sub": "agent"}


def test_chain_of_three_agents_nests_act(app, client, setup):
    """§4.1: prior actors nest under `act`, most recent first; introspection shows the chain."""
    second = make_agent(app, "agent-two")
    third = make_agent(app, "agent-three")
    first_token = exchange(client, setup.agent, setup.tokens["access_token"]).json["access_token"]
    second_token = exchange(client, second, first_token).json["access_token"]
    response = exchange(client, third, second_token, scope="portfolio:read")
    assert response.status_code == 200, response.json
    expected = {"sub": "agent-three", "act": {"sub": "agent-two", "act": {"sub": "agent"}}}
    assert claims(response.json["access_token"])["act"] == expected
    introspection = client.post(
        "/introspect", auth=third.basic_auth, data={"token": response.json["access_token"]}
    )
    assert introspection.json["active"] is True
    assert introspection.json["act"] == expected
    assert introspection.json["scope"] == "portfolio:read"
    [*_, last] = audit_events(app, "token.exchanged")
    assert last.actor_chain == ["agent-three", "agent-two", "agent"]


def test_refresh_token_subject_needs_its_own_client(app, client, setup):
    """RFC 9700 §4.14.2: a refresh token is usable only by its client, also as a subject."""
    response = exchange(client, setup.agent, setup.tokens["refresh_token"], SUBJECT_REFRESH)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_id_token_subject(app, client, setup):
    """§3: id_token subject; scopes are what the user consented to the ID token's client."""
    response = exchange(
        client, setup.agent, setup.tokens["id_token"], SUBJECT_ID, scope="portfolio:read"
    )
    assert response.status_code == 200, response.json
    token = claims(response.json["access_token"])
    assert token["sub"] == setup.user_id and token["act"] == {"sub": "agent"}


def test_revoking_subject_grant_deactivates_exchanged_tokens(app, client, setup):
    """DESIGN: revoking the subject token's grant makes exchanged tokens inactive."""
    exchanged = exchange(client, setup.agent, setup.tokens["access_token"]).json["access_token"]
    revoked = client.post(
        "/revoke", auth=setup.web.basic_auth, data={"token": setup.tokens["refresh_token"]}
    )
    assert revoked.status_code == 200
    introspection = client.post(
        "/introspect", auth=setup.agent.basic_auth, data={"token": exchanged}
    )
    assert introspection.json == {"active": False}
