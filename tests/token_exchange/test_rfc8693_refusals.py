"""RFC 8693 §2.1/§2.2.2 refusals: each MUST, each policy rule; nothing is issued."""

from __future__ import annotations

import time

import jwt
import pytest

from authserver.admin import TOKEN_EXCHANGE
from authserver.tokens import AccessTokenSpec
from tests.support.db import issued_counts
from tests.support.factories import make_client, make_resource

from .conftest import API, SUBJECT_ACCESS, exchange, make_agent


def refused(app, response, error, status=400):
    assert response.status_code == status, response.json
    assert response.json["error"] == error
    assert response.json["error_description"]


@pytest.mark.parametrize("missing", ["subject_token", "subject_token_type"])
def test_missing_required_parameter(app, client, setup, missing):
    """§2.1: subject_token and subject_token_type are REQUIRED."""
    before = issued_counts(app)
    params = {"subject_token": setup.tokens["access_token"], "subject_token_type": SUBJECT_ACCESS}
    params[missing] = ""
    response = exchange(client, setup.agent, params["subject_token"], params["subject_token_type"])
    refused(app, response, "invalid_request")
    assert issued_counts(app) == before


def test_actor_token_type_without_actor_token(app, client, setup):
    """§2.1: actor_token_type MUST NOT be included without actor_token."""
    response = exchange(
        client, setup.agent, setup.tokens["access_token"], actor_token_type=SUBJECT_ACCESS
    )
    refused(app, response, "invalid_request")


def test_actor_token_without_type(app, client, setup):
    """§2.1: actor_token_type is REQUIRED when actor_token is present."""
    response = exchange(
        client, setup.agent, setup.tokens["access_token"], actor_token=setup.tokens["access_token"]
    )
    refused(app, response, "invalid_request")


def test_unsupported_subject_token_type(app, client, setup):
    response = exchange(
        client, setup.agent, setup.tokens["access_token"], "urn:ietf:params:oauth:token-type:saml2"
    )
    refused(app, response, "invalid_request")


def test_unsupported_requested_token_type(app, client, setup):
    response = exchange(
        client,
        setup.agent,
        setup.tokens["access_token"],
        requested_token_type="urn:ietf:params:oauth:token-type:saml2",
    )
    refused(app, response, "invalid_request")


def test_garbage_subject_token(app, client, setup):
    """§2.2.2: an invalid subject_token is invalid_request."""
    refused(app, exchange(client, setup.agent, "not-a-token"), "invalid_request")


def test_subject_token_from_another_issuer(app, client, setup, runtime):
    """§2.2.2: a token signed by a key this server never published is refused."""
    from cryptography.hazmat.primitives.asymmetric import ec

    foreign = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    forged = jwt.encode(
        {
            "iss": "https://evil.example",
            "sub": setup.user_id,
            "aud": API,
            "client_id": "web-app",
            "scope": "portfolio:read",
            "iat": now,
            "exp": now + 300,
            "jti": "x",
        },
        foreign,
        algorithm="ES256",
        headers={"typ": "at+jwt", "kid": runtime.signing_keys.signing_key("ES256").kid},
    )
    refused(app, exchange(client, setup.agent, forged), "invalid_request")


def test_expired_subject_token(app, client, setup, runtime):
    with runtime.session_factory() as session:
        issued = runtime.minter.access_token(
            session,
            AccessTokenSpec(
                client_id="web-app",
                subject=setup.user_id,
                audience=runtime.settings.issuer,
                scope="portfolio:read",
                ttl=-120,
            ),
        )
        session.commit()
    refused(app, exchange(client, setup.agent, issued.token), "invalid_request")


def test_revoked_subject_token(app, client, setup):
    client.post("/revoke", auth=setup.web.basic_auth, data={"token": setup.tokens["access_token"]})
    refused(app, exchange(client, setup.agent, setup.tokens["access_token"]), "invalid_request")


def test_client_without_delegation_rights(app, client, setup):
    """DESIGN: without delegation rights the exchange is refused."""
    plain = make_agent(app, "no-delegation", may_delegate=False)
    before = issued_counts(app)
    refused(app, exchange(client, plain, setup.tokens["access_token"]), "invalid_request")
    assert issued_counts(app) == before


def test_may_act_naming_another_client(app, client, setup, runtime):
    """RFC 8693 §4.4: may_act names who may act; another client is refused."""
    with runtime.session_factory() as session:
        issued = runtime.minter.access_token(
            session,
            AccessTokenSpec(
                client_id="web-app",
                subject=setup.user_id,
                audience=runtime.settings.issuer,
                scope="portfolio:read",
                ttl=300,
                extra_claims={"may_act": {"sub": "someone-else"}},
            ),
        )
        session.commit()
    refused(app, exchange(client, setup.agent, issued.token), "invalid_request")


def test_may_act_naming_this_client_is_accepted(app, client, setup, runtime):
    with runtime.session_factory() as session:
        issued = runtime.minter.access_token(
            session,
            AccessTokenSpec(
                client_id="web-app",
                subject=setup.user_id,
                audience=runtime.settings.issuer,
                scope="portfolio:read",
                ttl=300,
                extra_claims={"may_act": {"sub": "agent"}},
            ),
        )
        session.commit()
    assert exchange(client, setup.agent, issued.token).status_code == 200


def test_actor_token_of_another_client(app, client, setup):
    """The actor_token must be the requesting client's own token."""
    other = make_agent(app, "other-agent")
    actor = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=other.basic_auth
    ).json["access_token"]
    response = exchange(
        client,
        setup.agent,
        setup.tokens["access_token"],
        actor_token=actor,
        actor_token_type=SUBJECT_ACCESS,
    )
    refused(app, response, "invalid_request")


def test_scope_escalation(app, client, setup):
    """DESIGN: asking for more than subject ∩ client ∩ resource is invalid_scope, never widened."""
    before = issued_counts(app)
    response = exchange(
        client, setup.agent, setup.tokens["access_token"], scope="portfolio:read admin"
    )
    refused(app, response, "invalid_scope")
    assert issued_counts(app) == before


def test_scope_beyond_subject_token(app, client, browser, setup):
    """The subject token only had portfolio:read; asking for trade is refused."""
    from .conftest import user_tokens

    narrow = user_tokens(app, browser, setup.web, scope="openid portfolio:read")
    refused(
        app, exchange(client, setup.agent, narrow["access_token"], scope="trade"), "invalid_scope"
    )


def test_unknown_audience(app, client, setup):
    """§2.2.2: invalid_target for an audience that is not a registered resource server."""
    response = exchange(
        client, setup.agent, setup.tokens["access_token"], audience="https://unknown.example"
    )
    refused(app, response, "invalid_target")


def test_audience_not_allowed_to_client(app, client, setup):
    make_resource(app, "https://other-api.example.com", scopes=("portfolio:read",))
    response = exchange(
        client, setup.agent, setup.tokens["access_token"], audience="https://other-api.example.com"
    )
    refused(app, response, "invalid_target")


def test_two_targets_refused(app, client, setup):
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": setup.tokens["access_token"],
        "subject_token_type": SUBJECT_ACCESS,
        "audience": API,
        "resource": "https://other.example.com",
    }
    refused(app, client.post("/token", data=data, auth=setup.agent.basic_auth), "invalid_target")


def test_client_not_registered_for_exchange(app, client, setup):
    """RFC 6749 §5.2 unauthorized_client."""
    refused(app, exchange(client, setup.web, setup.tokens["access_token"]), "unauthorized_client")


def test_public_client_cannot_register_for_exchange(app):
    from authserver.admin import AdminError

    with pytest.raises(AdminError):
        make_client(
            app, "public-agent", auth_method="none", grant_types=[TOKEN_EXCHANGE], redirect_uris=[]
        )
