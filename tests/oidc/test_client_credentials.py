"""Client credentials grant, RFC 6749 §4.4, with RFC 8707 resources and RFC 9068 tokens.

A confidential client acting for itself: `sub` is the client, the audience is
this server unless a resource is named. No user, so no OpenID scopes and no
refresh token.
"""

from __future__ import annotations

import jwt
import pytest

from tests.support.db import audit_events, issued_counts
from tests.support.factories import (
    make_client,
    make_machine_client,
    make_public_client,
    make_resource,
)
from tests.support.oauth import token_error, verify_with_jwks

API = "https://api.example.com"


@pytest.fixture
def api(app):
    return make_resource(app, API, scopes=("read", "write"))


@pytest.fixture
def service(app, api):
    return make_machine_client(app, "batch-job", "read write", [API])


@pytest.fixture
def issuer(runtime):
    return runtime.settings.issuer


def client_credentials(client, rp, **extra):
    return client.post(
        "/token", data={"grant_type": "client_credentials", **extra}, auth=rp.basic_auth
    )


def test_token_for_the_client_itself(app, client, service, issuer):
    """§4.4.3 / RFC 9068 §2.2: sub is the client; without resource the audience is the issuer;
    no refresh token (§4.4.3: "A refresh token SHOULD NOT be included")."""
    response = client_credentials(client, service)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert "refresh_token" not in body and "id_token" not in body
    assert response.headers["Cache-Control"] == "no-store"
    claims = verify_with_jwks(
        client, body["access_token"], audience=issuer, issuer=issuer, alg="ES256"
    )
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    assert claims["sub"] == service.client_id
    assert claims["client_id"] == service.client_id
    assert claims["aud"] == issuer
    assert claims["scope"] == "read write"
    assert "auth_time" not in claims


def test_resource_binds_the_audience(app, client, service, issuer):
    """RFC 8707 §2: with resource, aud is that resource and the scope is narrowed to it."""
    response = client_credentials(client, service, resource=API, scope="read")
    body = response.get_json()
    claims = verify_with_jwks(
        client, body["access_token"], audience=API, issuer=issuer, alg="ES256"
    )
    assert claims["aud"] == API
    assert claims["sub"] == service.client_id
    assert claims["scope"] == body["scope"] == "read"


def test_resource_the_client_is_not_allowed_is_invalid_target(app, client, service, api):
    """RFC 8707 §2: a registered resource this client may not get tokens for is
    invalid_target, even where the scope names match; nothing is issued."""
    other = make_resource(app, "https://other.example.com", scopes=("read", "write"))
    before = issued_counts(app)
    for resources in ([other], [API, other]):
        response = client_credentials(client, service, resource=resources, scope="read")
        token_error(response, "invalid_target")
    assert issued_counts(app) == before


def test_client_without_allowed_audiences_gets_only_its_own_audience(app, client, api, issuer):
    """A client registered with no allowed audience gets tokens for this server (its
    userinfo, introspection) only: naming any resource is invalid_target."""
    plain = make_client(app, "plain-job", grant_types=["client_credentials"], scope="read")
    before = issued_counts(app)
    token_error(client_credentials(client, plain, resource=API, scope="read"), "invalid_target")
    assert issued_counts(app) == before
    body = client_credentials(client, plain, scope="read").get_json()
    claims = verify_with_jwks(
        client, body["access_token"], audience=issuer, issuer=issuer, alg="ES256"
    )
    assert claims["aud"] == issuer


def test_allowed_audiences_changed_take_effect_at_once(app, client, service, api, runtime):
    """`change_allowed_audiences` (the CLI's `clients audiences`): a newly allowed API gets
    tokens, a disallowed one is invalid_target from the next request on."""
    from authserver.admin import change_allowed_audiences
    from authserver.db import transaction

    other = make_resource(app, "https://other.example.com", scopes=("read",))
    token_error(client_credentials(client, service, resource=other, scope="read"), "invalid_target")
    with transaction(runtime.session_factory) as session:
        change_allowed_audiences(session, service.client_id, [other], [])
    assert client_credentials(client, service, resource=other, scope="read").status_code == 200
    with transaction(runtime.session_factory) as session:
        change_allowed_audiences(session, service.client_id, [], [API])
    before = issued_counts(app)
    token_error(client_credentials(client, service, resource=API, scope="read"), "invalid_target")
    assert issued_counts(app) == before


def test_audit_row_written(app, client, service):
    """Every issued token is an audit event, with grant type and scope, never the token."""
    body = client_credentials(client, service, scope="read").get_json()
    (event,) = audit_events(app, "token.issued")
    assert event.client_id == service.client_id
    assert event.outcome == "success"
    assert event.details["grant_type"] == "client_credentials"
    assert event.details["scope"] == "read"
    assert body["access_token"] not in str(event.details)


@pytest.mark.parametrize("scope", ["openid", "read openid", "profile", "offline_access"])
def test_openid_scopes_are_refused(app, client, service, scope):
    """§4.4 has no End-User: OpenID Connect scopes are invalid_scope."""
    before = issued_counts(app)
    token_error(client_credentials(client, service, scope=scope), "invalid_scope")
    assert issued_counts(app) == before


@pytest.mark.parametrize("scope", ["admin", "read admin"])
def test_scope_not_allowed_is_invalid_scope(app, client, service, scope):
    """§5.2 invalid_scope: beyond what the client is registered for; never silently dropped."""
    make_resource(app, "https://admin.example.com", scopes=("admin",))
    before = issued_counts(app)
    token_error(client_credentials(client, service, scope=scope), "invalid_scope")
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    "resource", ["https://unknown.example.com", "https://[::1", "https://api.example.com:99999"]
)
def test_unknown_resource_is_invalid_target(app, client, service, resource):
    """RFC 8707 §2: an unregistered or malformed resource is invalid_target (never a 500)."""
    before = issued_counts(app)
    response = client_credentials(client, service, resource=resource)
    token_error(response, "invalid_target")
    assert issued_counts(app) == before


def test_public_client_cannot_use_it(app, client):
    """§4.4: "The client credentials grant type MUST only be used by confidential clients"."""
    native = make_public_client(app)
    before = issued_counts(app)
    response = client.post(
        "/token", data={"grant_type": "client_credentials", "client_id": native.client_id}
    )
    token_error(response, "invalid_client", status=401)
    assert issued_counts(app) == before


def test_client_without_the_grant_is_unauthorized(app, client, api):
    """§5.2 unauthorized_client: the client is not registered for client_credentials."""
    web = make_client(app, "web-rp", scope="openid read")
    before = issued_counts(app)
    token_error(client_credentials(client, web, scope="read"), "unauthorized_client")
    assert issued_counts(app) == before


def test_wrong_secret(app, client, service):
    """§4.4.2 / §5.2: the client MUST authenticate; a wrong secret is invalid_client (401)."""
    before = issued_counts(app)
    response = client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(service.client_id, "wrong-secret"),
    )
    token_error(response, "invalid_client", status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert issued_counts(app) == before


def test_refusal_is_audited(app, client, service):
    """A refused token request leaves an audit row (and nothing else)."""
    client_credentials(client, service, scope="openid")
    (event,) = audit_events(app, "token")
    assert event.outcome == "refused"
    assert event.details["error"] == "invalid_scope"
    assert event.details["grant_type"] == "client_credentials"
