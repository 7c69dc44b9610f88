"""RFC 8693 token exchange: delegation with `act`, down-scoping, chains."""

from __future__ import annotations

import jwt

from authserver.admin import TOKEN_EXCHANGE
from tests.support.db import audit_events, issued_counts
from tests.support.factories import make_client, make_resource

from .conftest import (
    API,
    SUBJECT_ACCESS,
    SUBJECT_ID,
    SUBJECT_REFRESH,
    exchange,
    make_agent,
    signed_in_agent,
)


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


def test_subject_and_actor_tokens_are_each_judged_when_read_together(app, client, setup):
    """Both tokens' records are fetched with one query; each is still judged on its own:
    the user's token as subject, the agent's own as actor."""
    own = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=setup.agent.basic_auth
    ).json["access_token"]
    actor = {"actor_token": own, "actor_token_type": SUBJECT_ACCESS}
    delegated = exchange(client, setup.agent, setup.tokens["access_token"], **actor)
    assert delegated.status_code == 200, delegated.json
    assert claims(delegated.json["access_token"])["sub"] == setup.user_id
    assert claims(delegated.json["access_token"])["act"] == {"sub": "agent"}


def test_actor_naming_the_subject_itself_is_refused(app, client, setup):
    """§2.2.2: an actor_token unacceptable by policy is invalid_request. The agent's own token
    as both subject and actor would issue `act: {sub: agent}` for `sub: agent`, a delegation
    that never happened; without the actor the same down-scoping exchange is allowed."""
    own = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=setup.agent.basic_auth
    ).json["access_token"]
    before = issued_counts(app)
    response = exchange(
        client,
        setup.agent,
        own,
        scope="portfolio:read",
        actor_token=own,
        actor_token_type=SUBJECT_ACCESS,
    )
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_request"
    assert "names the subject itself" in response.json["error_description"]
    assert issued_counts(app) == before
    alone = exchange(client, setup.agent, own, scope="portfolio:read")
    assert alone.status_code == 200, alone.json
    assert claims(alone.json["access_token"])["sub"] == "agent"
    assert "act" not in claims(alone.json["access_token"])


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


def test_id_token_subject(app, client, browser, setup):
    """§3: id_token subject, presented by the client it was issued to (its `aud`); scopes are
    what the user consented to that client. No delegation, so no `act`."""
    agent, tokens = signed_in_agent(app, browser)
    response = exchange(client, agent, tokens["id_token"], SUBJECT_ID, scope="portfolio:read")
    assert response.status_code == 200, response.json
    token = claims(response.json["access_token"])
    assert token["sub"] == setup.user_id and token["aud"] == API
    assert token["scope"] == "portfolio:read" and "act" not in token


def test_revoking_the_grant_ends_its_id_token_as_a_subject(app, client, browser, setup):
    """An ID token has no record of its own, but it came from one grant (same user, client and
    sign-in `auth_time`). Revoking that grant (RFC 7009 §2.1, through its refresh token)
    deactivates what was exchanged from the ID token, and the ID token, though unexpired,
    is refused as a subject from then on. Nothing more is issued."""
    agent, tokens = signed_in_agent(app, browser)
    exchanged = exchange(client, agent, tokens["id_token"], SUBJECT_ID, scope="portfolio:read")
    assert exchanged.status_code == 200, exchanged.json
    revoked = client.post("/revoke", auth=agent.basic_auth, data={"token": tokens["refresh_token"]})
    assert revoked.status_code == 200
    introspection = client.post(
        "/introspect", auth=agent.basic_auth, data={"token": exchanged.json["access_token"]}
    )
    assert introspection.json == {"active": False}
    before = issued_counts(app)
    again = exchange(client, agent, tokens["id_token"], SUBJECT_ID, scope="portfolio:read")
    assert again.status_code == 400 and again.json["error"] == "invalid_request"
    assert issued_counts(app) == before


def test_id_token_of_another_client_is_refused(app, client, setup):
    """OIDC Core §2: an ID token is for its audience only. Front ends pass ID tokens around
    freely, so another client's ID token is no credential here, even for a client with
    delegation rights; delegation goes through an access token. Nothing is issued."""
    before = issued_counts(app)
    response = exchange(
        client, setup.agent, setup.tokens["id_token"], SUBJECT_ID, scope="portfolio:read"
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert issued_counts(app) == before


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


def test_refresh_token_subject_of_the_requesting_client(app, client, browser, setup):
    """§3 refresh_token subject, presented by the client it was issued to: no delegation, so
    no `act`; the result is still a short-lived token for the one audience."""
    agent, tokens = signed_in_agent(app, browser)
    response = exchange(client, agent, tokens["refresh_token"], SUBJECT_REFRESH)
    assert response.status_code == 200, response.json
    token = claims(response.json["access_token"])
    assert token["sub"] == setup.user_id and token["aud"] == API
    assert token["scope"] == "portfolio:read" and "act" not in token
    assert "refresh_token" not in response.json


def test_used_refresh_token_subject_revokes_the_family(app, client, browser, setup):
    """RFC 9700 §4.14.2: a rotated-out refresh token presented again, here as a subject token,
    is refused and revokes the whole family, as at the refresh grant."""
    agent, tokens = signed_in_agent(app, browser)
    rotated = client.post(
        "/token",
        auth=agent.basic_auth,
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert rotated.status_code == 200, rotated.json
    before = issued_counts(app)
    response = exchange(client, agent, tokens["refresh_token"], SUBJECT_REFRESH)
    assert response.status_code == 400 and response.json["error"] == "invalid_request"
    assert issued_counts(app) == before
    assert not audit_events(app, "token.exchanged")
    newest = client.post(
        "/token",
        auth=agent.basic_auth,
        data={"grant_type": "refresh_token", "refresh_token": rotated.json["refresh_token"]},
    )
    assert newest.status_code == 400 and newest.json["error"] == "invalid_grant"
    introspection = client.post(
        "/introspect", auth=agent.basic_auth, data={"token": rotated.json["access_token"]}
    )
    assert introspection.json == {"active": False}


def test_discovery_lists_token_exchange(client):
    """RFC 8414 §2 grant_types_supported: clients find the RFC 8693 grant through discovery."""
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        assert TOKEN_EXCHANGE in client.get(path).json["grant_types_supported"]


def test_lifetime_is_the_delegated_default(app, client, setup, runtime):
    """DESIGN "Tokens": exchanged tokens live 5 minutes by default, in `exp` as in expires_in."""
    token = claims(exchange(client, setup.agent, setup.tokens["access_token"]).json["access_token"])
    assert token["exp"] - token["iat"] == runtime.settings.delegated_token_ttl == 300


def test_resource_server_introspects_the_delegated_token(app, client, setup):
    """RFC 7662 §2.2 with RFC 8693 §4.1: the API's own client sees `act`, scope and audience;
    a client that is neither the token's nor the audience's learns only active=false."""
    broker = make_client(app, "broker-rs", grant_types=["client_credentials"], redirect_uris=[])
    outsider = make_client(app, "outsider", grant_types=["client_credentials"], redirect_uris=[])
    other_api = "https://rs.example.com"
    make_resource(app, other_api, scopes=("portfolio:read",), client_id="broker-rs")
    agent = make_agent(app, "rs-agent", audiences=(other_api,))
    token = exchange(
        client, agent, setup.tokens["access_token"], audience=other_api, scope="portfolio:read"
    ).json["access_token"]
    seen = client.post("/introspect", auth=broker.basic_auth, data={"token": token}).json
    assert seen["active"] is True and seen["act"] == {"sub": "rs-agent"}
    assert seen["sub"] == setup.user_id and seen["scope"] == "portfolio:read"
    assert seen["aud"] == other_api and seen["client_id"] == "rs-agent"
    hidden = client.post("/introspect", auth=outsider.basic_auth, data={"token": token}).json
    assert hidden == {"active": False}


def test_chain_deeper_than_the_limit_is_refused(app, client, setup):
    """§4.1 lets chains nest without bound; this server stops at MAX_CHAIN_DEPTH actors so the
    whole chain stays in the token, introspection and the audit row. The next hop is an
    invalid_request, and nothing is issued."""
    from authserver.oauth.exchange.policy import MAX_CHAIN_DEPTH

    token = setup.tokens["access_token"]
    for hop in range(MAX_CHAIN_DEPTH):
        agent = setup.agent if hop == 0 else make_agent(app, f"agent-{hop}")
        response = exchange(client, agent, token)
        assert response.status_code == 200, (hop, response.json)
        token = response.json["access_token"]
    assert len(claims(token)["act"]) == 2  # sub and the nested act
    last = make_agent(app, "agent-last")
    before = issued_counts(app)
    response = exchange(client, last, token)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert str(MAX_CHAIN_DEPTH) in response.json["error_description"]
    assert issued_counts(app) == before
    # The last agent of the full chain may still exchange its own token again: that adds
    # no actor, and the chain stays as it is.
    again = exchange(client, agent, token)
    assert again.status_code == 200, again.json
    assert claims(again.json["access_token"])["act"] == claims(token)["act"]
