"""What an exchange can never extend: the subject's user, its lifetime, the client's rights.

RFC 8693 §2.2.2: a subject token "unacceptable based on policy" is `invalid_request`. The
policies here are the ones the other grants already hold: a disabled user's tokens get
nothing more (as at the refresh grant, OIDC userinfo and CIBA), an exchanged token does not
outlive the token it came from, and a delegated token exchanged again is still delegation.
"""

from __future__ import annotations

from dataclasses import replace

import jwt
from sqlalchemy import update

from authserver import registry
from authserver.db import transaction
from authserver.models import AccessTokenRecord, Client, User
from authserver.tokens import AccessTokenSpec
from tests.support.db import issued_counts

from .conftest import (
    API,
    SUBJECT_ACCESS,
    SUBJECT_ID,
    SUBJECT_REFRESH,
    exchange,
    signed_in_agent,
)


def claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def set_disabled(app, user_id, disabled):
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(update(User).where(User.id == user_id).values(disabled=disabled))


def introspect(client, agent, token):
    return client.post("/introspect", auth=agent.basic_auth, data={"token": token}).json


def test_a_disabled_users_tokens_are_refused_as_subjects(app, client, browser, setup):
    """Each kind of subject token: the user's access token (delegation), and an agent's own
    refresh token and ID token. Refused with the subject named; nothing issued."""
    agent, own = signed_in_agent(app, browser)
    set_disabled(app, setup.user_id, True)
    attempts = [
        (setup.agent, setup.tokens["access_token"], SUBJECT_ACCESS),
        (agent, own["refresh_token"], SUBJECT_REFRESH),
        (agent, own["id_token"], SUBJECT_ID),
    ]
    before = issued_counts(app)
    for requester, token, kind in attempts:
        response = exchange(client, requester, token, kind, scope="portfolio:read")
        assert response.status_code == 400, (kind, response.json)
        assert response.json["error"] == "invalid_request"
        assert "'subject_token'" in response.json["error_description"]
    assert issued_counts(app) == before
    # Control: the same three, once the user is enabled again.
    set_disabled(app, setup.user_id, False)
    for requester, token, kind in attempts:
        response = exchange(client, requester, token, kind, scope="portfolio:read")
        assert response.status_code == 200, (kind, response.json)


def test_a_disabled_users_tokens_introspect_inactive(app, client, setup):
    """RFC 7662 §2.2: `active` says the token may be used now; a resource server asking after
    the user was disabled is told no, for the token and for what was exchanged from it."""
    exchanged = exchange(client, setup.agent, setup.tokens["access_token"]).json["access_token"]
    assert introspect(client, setup.agent, exchanged)["active"] is True
    set_disabled(app, setup.user_id, True)
    assert introspect(client, setup.agent, exchanged) == {"active": False}
    assert introspect(client, setup.web, setup.tokens["access_token"]) == {"active": False}
    # Not revoked: the user's tokens are usable again once the account is.
    set_disabled(app, setup.user_id, False)
    assert introspect(client, setup.agent, exchanged)["active"] is True


def test_an_exchanged_token_never_outlives_its_subject(app, client, setup):
    """DESIGN: exchanged tokens are short-lived. Exchanging again before the subject expires
    must not renew one access token for as long as its grant lasts."""
    runtime = app.extensions["authserver"]
    jti = claims(setup.tokens["access_token"])["jti"]
    with transaction(runtime.session_factory) as session:
        grant_id = session.get(AccessTokenRecord, jti).grant_id
        spec = AccessTokenSpec(
            client_id=setup.web.client_id,
            subject=setup.user_id,
            audience=API,
            scope="portfolio:read",
            ttl=30,
            grant_id=grant_id,
        )
        short = runtime.minter.access_token(session, spec).token
    first = exchange(client, setup.agent, short, scope="portfolio:read")
    assert first.status_code == 200, first.json
    assert claims(first.json["access_token"])["exp"] == claims(short)["exp"]
    assert first.json["expires_in"] <= 30
    again = exchange(client, setup.agent, first.json["access_token"], scope="portfolio:read")
    assert again.status_code == 200, again.json
    assert claims(again.json["access_token"])["exp"] == claims(short)["exp"]
    # A subject with less than MIN_LIFETIME left gives nothing: it would be issued dead.
    with transaction(runtime.session_factory) as session:
        expiring = runtime.minter.access_token(session, replace(spec, ttl=2)).token
    before = issued_counts(app)
    refused = exchange(client, setup.agent, expiring, scope="portfolio:read")
    assert refused.status_code == 400 and refused.json["error"] == "invalid_request"
    assert issued_counts(app) == before
    # A long-lived subject: the delegated lifetime (5 minutes) applies.
    long = exchange(client, setup.agent, setup.tokens["access_token"])
    token = claims(long.json["access_token"])
    assert token["exp"] - token["iat"] == long.json["expires_in"] == 300


def test_exchanging_a_delegated_token_again_needs_delegation_rights(app, client, setup):
    """The agent's delegated token is its own token, but it still acts for the user:
    once the operator withdraws delegation, exchanging it again is refused too."""
    delegated = exchange(client, setup.agent, setup.tokens["access_token"]).json["access_token"]
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(
            update(Client).where(Client.client_id == "agent").values(may_delegate=False)
        )
    registry.invalidate()
    before = issued_counts(app)
    for subject in (setup.tokens["access_token"], delegated):
        response = exchange(client, setup.agent, subject, scope="portfolio:read")
        assert response.status_code == 400, response.json
        assert response.json["error"] == "invalid_request"
        assert response.json["error_description"] == "This client may not act on behalf of users."
    assert issued_counts(app) == before


def test_the_same_actor_again_is_one_link_of_the_chain(app, client, setup):
    """§4.1 `act` lists who acted, most recent first. The agent exchanging its own delegated
    token, with its own token as actor, is still the one agent acting for the user."""
    delegated = exchange(client, setup.agent, setup.tokens["access_token"]).json["access_token"]
    own = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=setup.agent.basic_auth
    ).json["access_token"]
    response = exchange(
        client, setup.agent, delegated, actor_token=own, actor_token_type=SUBJECT_ACCESS
    )
    assert response.status_code == 200, response.json
    token = claims(response.json["access_token"])
    assert token["sub"] == setup.user_id and token["act"] == {"sub": "agent"}
