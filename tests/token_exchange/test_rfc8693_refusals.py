"""RFC 8693 §2.1/§2.2.2 refusals: each MUST, each policy rule; nothing is issued."""

from __future__ import annotations

import time
from contextlib import contextmanager

import jwt
import pytest

from authserver.admin import TOKEN_EXCHANGE
from authserver.tokens import AccessTokenSpec
from tests.support.db import audit_events, issued_counts
from tests.support.factories import ClientInfo, make_client, make_resource

from .conftest import API, SUBJECT_ACCESS, SUBJECT_ID, exchange, make_agent, signed_in_agent


def refused(app, response, error, status=400):
    assert response.status_code == status, response.json
    assert response.json["error"] == error
    assert response.json["error_description"]


@contextmanager
def nothing_issued(app):
    """A refused exchange issues nothing: no token, grant or code row and no `token.exchanged`
    audit event (the refusal itself is audited by the token endpoint as an outcome)."""
    before = issued_counts(app), len(audit_events(app, "token.exchanged"))
    yield
    assert (issued_counts(app), len(audit_events(app, "token.exchanged"))) == before


def refused_exchange(
    app,
    client,
    agent,
    subject_token,
    subject_type=SUBJECT_ACCESS,
    *,
    error="invalid_request",
    **params,
):
    """The exchange is refused with `error` (RFC 8693 §2.2.2) and issues nothing."""
    with nothing_issued(app):
        response = exchange(client, agent, subject_token, subject_type, **params)
    refused(app, response, error)
    return response


def own_token(client, agent) -> str:
    """The agent's own client-credentials token (what a valid actor_token is)."""
    response = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=agent.basic_auth
    )
    return response.json["access_token"]


def resigned(runtime, token, **changes):
    """`token` with `changes` to its claims, signed again with this server's own key."""
    header = jwt.get_unverified_header(token)
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    key = runtime.signing_keys.verification_key(header["kid"])
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=header)


@pytest.mark.parametrize("missing", ["subject_token", "subject_token_type"])
def test_missing_required_parameter(app, client, setup, missing):
    """§2.1: subject_token and subject_token_type are REQUIRED."""
    before = issued_counts(app)
    params = {"subject_token": setup.tokens["access_token"], "subject_token_type": SUBJECT_ACCESS}
    params[missing] = ""
    refused_exchange(
        app, client, setup.agent, params["subject_token"], params["subject_token_type"]
    )
    assert issued_counts(app) == before


def test_actor_token_type_without_actor_token(app, client, setup):
    """§2.1: actor_token_type MUST NOT be included without actor_token."""
    refused_exchange(
        app, client, setup.agent, setup.tokens["access_token"], actor_token_type=SUBJECT_ACCESS
    )


def test_actor_token_without_type(app, client, setup):
    """§2.1: actor_token_type is REQUIRED when actor_token is present."""
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        actor_token=setup.tokens["access_token"],
    )


def test_unsupported_subject_token_type(app, client, setup):
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        "urn:ietf:params:oauth:token-type:saml2",
    )


def test_unsupported_actor_token_type(app, client, setup):
    """§2.1: the actor token must be of a type this server understands (its access tokens)."""
    actor = own_token(client, setup.agent)
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        actor_token=actor,
        actor_token_type="urn:ietf:params:oauth:token-type:saml2",
    )


def test_unsupported_requested_token_type(app, client, setup):
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        requested_token_type="urn:ietf:params:oauth:token-type:saml2",
    )


def test_garbage_subject_token(app, client, setup):
    """§2.2.2: an invalid subject_token is invalid_request."""
    refused_exchange(app, client, setup.agent, "not-a-token")


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
    refused_exchange(app, client, setup.agent, forged)


def test_subject_token_with_another_iss_under_our_key(app, client, setup, runtime):
    """§2.2.2 / RFC 8725 §3.8: `iss` must be this server even when the signature, `kid` and
    `jti` record are genuine; only the issuer check stands between this token and success."""
    foreign = resigned(runtime, setup.tokens["access_token"], iss="https://evil.example")
    refused_exchange(app, client, setup.agent, foreign)
    # Control: the same token re-signed unchanged is accepted, so the refusal was the issuer.
    genuine = resigned(runtime, setup.tokens["access_token"])
    assert exchange(client, setup.agent, genuine).status_code == 200


def test_id_token_subject_with_another_iss_under_our_key(app, client, browser, setup, runtime):
    """§2.2.2: an ID token has no server-side record, so its `iss` check is all there is."""
    agent, tokens = signed_in_agent(app, browser)
    foreign = resigned(runtime, tokens["id_token"], iss="https://evil.example")
    response = refused_exchange(app, client, agent, foreign, SUBJECT_ID, scope="portfolio:read")
    genuine = resigned(runtime, tokens["id_token"])
    response = exchange(client, agent, genuine, SUBJECT_ID, scope="portfolio:read")
    assert response.status_code == 200, response.json


def test_expired_id_token_subject(app, client, browser, setup, runtime):
    """§2.2.2: an expired ID token is not a usable subject token (its own client presents
    it, so expiry is the only fault)."""
    agent, tokens = signed_in_agent(app, browser)
    past = int(time.time()) - 600
    expired = resigned(runtime, tokens["id_token"], iat=past - 600, exp=past)
    refused_exchange(app, client, agent, expired, SUBJECT_ID)


@pytest.mark.parametrize(
    ("token", "declared"),
    [("access_token", SUBJECT_ID), ("id_token", SUBJECT_ACCESS)],
)
def test_token_of_another_type_than_declared(app, client, setup, token, declared):
    """§2.1 subject_token_type: the token must be of the declared type. An access token sent
    as an ID token would skip the revocation check; an ID token is not an access token."""
    refused_exchange(app, client, setup.agent, setup.tokens[token], declared)


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
    refused_exchange(app, client, setup.agent, issued.token)


def test_revoked_subject_token(app, client, setup):
    client.post("/revoke", auth=setup.web.basic_auth, data={"token": setup.tokens["access_token"]})
    refused_exchange(app, client, setup.agent, setup.tokens["access_token"])


def test_subject_token_of_a_revoked_grant(app, client, setup):
    """Revoking the grant (through its refresh token, RFC 7009 §2.1) ends its access tokens
    as subject tokens too."""
    client.post("/revoke", auth=setup.web.basic_auth, data={"token": setup.tokens["refresh_token"]})
    refused_exchange(app, client, setup.agent, setup.tokens["access_token"])


def test_invalid_actor_token(app, client, setup):
    """§2.2.2: an invalid actor_token is invalid_request, even with a good subject_token."""
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        actor_token="not-a-token",
        actor_token_type=SUBJECT_ACCESS,
    )


@pytest.mark.parametrize("revoked", ["actor_token", "subject_token"])
def test_revoked_actor_or_subject_token(app, client, setup, revoked):
    """§2.2.2: a revoked actor_token (RFC 7009) no longer speaks for the agent, nor a
    revoked subject_token for the user; the error names the one revoked, not the good
    one read with it."""
    tokens = {
        "actor_token": own_token(client, setup.agent),
        "subject_token": setup.tokens["access_token"],
    }
    owner = setup.agent if revoked == "actor_token" else setup.web
    client.post("/revoke", auth=owner.basic_auth, data={"token": tokens[revoked]})
    response = refused_exchange(
        app,
        client,
        setup.agent,
        tokens["subject_token"],
        actor_token=tokens["actor_token"],
        actor_token_type=SUBJECT_ACCESS,
    )
    assert f"'{revoked}'" in response.json["error_description"]


def test_client_without_delegation_rights(app, client, setup):
    """DESIGN: without delegation rights the exchange is refused."""
    plain = make_agent(app, "no-delegation", may_delegate=False)
    before = issued_counts(app)
    refused_exchange(app, client, plain, setup.tokens["access_token"])
    assert issued_counts(app) == before


def test_client_without_delegation_rights_even_with_actor_token(app, client, setup):
    """An actor token is delegation too (§4.1): the client policy still decides."""
    plain = make_agent(app, "no-delegation", may_delegate=False)
    actor = own_token(client, plain)
    refused_exchange(
        app,
        client,
        plain,
        setup.tokens["access_token"],
        actor_token=actor,
        actor_token_type=SUBJECT_ACCESS,
    )


def _token_with_may_act(runtime, user_id, may_act):
    with runtime.session_factory() as session:
        issued = runtime.minter.access_token(
            session,
            AccessTokenSpec(
                client_id="web-app",
                subject=user_id,
                audience=runtime.settings.issuer,
                scope="portfolio:read",
                ttl=300,
                extra_claims={"may_act": may_act},
            ),
        )
        session.commit()
    return issued.token


@pytest.mark.parametrize("may_act", [{"sub": "someone-else"}, "agent", {}, {"iss": "agent"}])
def test_may_act_naming_another_client(app, client, setup, runtime, may_act):
    """RFC 8693 §4.4: may_act names who may act; another client (or a claim that names
    nobody) is refused."""
    token = _token_with_may_act(runtime, setup.user_id, may_act)
    refused_exchange(app, client, setup.agent, token)


def test_may_act_naming_this_client_is_accepted(app, client, setup, runtime):
    token = _token_with_may_act(runtime, setup.user_id, {"sub": "agent"})
    assert exchange(client, setup.agent, token).status_code == 200


def test_actor_token_of_another_client(app, client, setup):
    """The actor_token must be the requesting client's own token."""
    other = make_agent(app, "other-agent")
    actor = own_token(client, other)
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        actor_token=actor,
        actor_token_type=SUBJECT_ACCESS,
    )


def test_user_token_as_actor_token(app, client, setup):
    """The actor_token must name the agent itself (`sub` = its client_id), not a user."""
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        actor_token=setup.tokens["access_token"],
        actor_token_type=SUBJECT_ACCESS,
    )


def test_scope_escalation(app, client, setup):
    """DESIGN: asking for more than subject ∩ client ∩ resource is invalid_scope, never widened."""
    before = issued_counts(app)
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        scope="portfolio:read admin",
        error="invalid_scope",
    )
    assert issued_counts(app) == before


def test_scope_beyond_subject_token(app, client, browser, setup):
    """The subject token only had portfolio:read; asking for trade is refused."""
    from .conftest import user_tokens

    narrow = user_tokens(app, browser, setup.web, scope="openid portfolio:read")
    refused_exchange(
        app, client, setup.agent, narrow["access_token"], scope="trade", error="invalid_scope"
    )


def test_scope_beyond_the_client(app, client, setup):
    """The client's registered scopes bound the result: an agent registered for
    portfolio:read only cannot get trade, though the user and the resource have it."""
    reader = make_agent(app, "reader-agent", scope="portfolio:read")
    refused_exchange(
        app, client, reader, setup.tokens["access_token"], scope="trade", error="invalid_scope"
    )


def test_scope_beyond_the_resource(app, client, setup):
    """The resource's scopes bound the result: openid is the user's but not the broker's."""
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        scope="openid",
        error="invalid_scope",
    )


def test_nothing_in_common_is_invalid_scope(app, client, browser, setup):
    """Without `scope`, an empty intersection is refused rather than a token with no scope."""
    from .conftest import user_tokens

    bare = user_tokens(app, browser, setup.web, scope="openid profile")
    refused_exchange(app, client, setup.agent, bare["access_token"], error="invalid_scope")


def test_unknown_audience(app, client, setup):
    """§2.2.2: invalid_target for an audience that is not a registered resource server."""
    response = refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        audience="https://unknown.example",
        error="invalid_target",
    )
    # The description names the parameter the client sent, not one it never used.
    assert "'audience'" in response.json["error_description"]


def test_unknown_resource(app, client, setup):
    """§2.1 / RFC 8707 §2: `resource` alone names the target the same way."""
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": setup.tokens["access_token"],
        "subject_token_type": SUBJECT_ACCESS,
        "resource": "https://unknown.example",
    }
    with nothing_issued(app):
        response = client.post("/token", data=data, auth=setup.agent.basic_auth)
    refused(app, response, "invalid_target")
    assert "'resource'" in response.json["error_description"]


def test_no_target(app, client, setup):
    """A token for no API is not issued: the exchange must name its audience."""
    refused_exchange(
        app, client, setup.agent, setup.tokens["access_token"], audience="", error="invalid_target"
    )


def test_audience_not_allowed_to_client(app, client, setup):
    make_resource(app, "https://other-api.example.com", scopes=("portfolio:read",))
    refused_exchange(
        app,
        client,
        setup.agent,
        setup.tokens["access_token"],
        audience="https://other-api.example.com",
        error="invalid_target",
    )


def test_two_targets_refused(app, client, setup):
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": setup.tokens["access_token"],
        "subject_token_type": SUBJECT_ACCESS,
        "audience": API,
        "resource": "https://other.example.com",
    }
    with nothing_issued(app):
        response = client.post("/token", data=data, auth=setup.agent.basic_auth)
    refused(app, response, "invalid_target")


def test_two_registered_and_allowed_targets_refused(app, client, setup):
    """One token, one audience: two targets the client may each use are still refused,
    so a token is never valid at two APIs at once."""
    other = make_resource(app, "https://other-api.example.com", scopes=("portfolio:read",))
    two = make_agent(app, "two-apis", audiences=(API, other))
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": setup.tokens["access_token"],
        "subject_token_type": SUBJECT_ACCESS,
        "audience": [API, other],
    }
    with nothing_issued(app):
        response = client.post("/token", data=data, auth=two.basic_auth)
    refused(app, response, "invalid_target")


def test_client_not_registered_for_exchange(app, client, setup):
    """RFC 6749 §5.2 unauthorized_client."""
    refused_exchange(
        app, client, setup.web, setup.tokens["access_token"], error="unauthorized_client"
    )


@pytest.mark.parametrize("secret", ["wrong-secret", ""])
def test_client_authentication_failure(app, client, setup, secret):
    """RFC 6749 §5.2 invalid_client (401): a confidential client must authenticate."""
    with nothing_issued(app):
        response = exchange(client, ClientInfo("agent", secret, ""), setup.tokens["access_token"])
    refused(app, response, "invalid_client", status=401)


def test_public_client_cannot_register_for_exchange(app):
    from authserver.admin import AdminError

    with pytest.raises(AdminError):
        make_client(
            app, "public-agent", auth_method="none", grant_types=[TOKEN_EXCHANGE], redirect_uris=[]
        )
