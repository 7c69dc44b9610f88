"""Resource indicators, RFC 8707, on the code and refresh grants.

`resource` binds the access token's `aud` (RFC 9068 §3) and narrows its scope to
what that resource server defines. An unknown or malformed resource is
invalid_target; at the token endpoint `resource` may only narrow the set the
user authorized.
"""

from __future__ import annotations

import pytest

from tests.support.db import issued_counts
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_resource, make_user
from tests.support.flows import Pkce, code_params
from tests.support.oauth import redeem, redirect_error, refresh, token_error, verify_with_jwks

API = "https://api.example.com"
CALENDAR = "https://calendar.example.com/v1"
BILLING = "https://billing.example.com"


@pytest.fixture
def resources(app):
    make_resource(app, API, scopes=("read", "write"))
    make_resource(app, CALENDAR, scopes=("calendar.read",), name="Calendar")
    make_resource(app, BILLING, scopes=("invoices",), name="Billing")


@pytest.fixture
def rp(app, resources):
    return make_client(app, "web-rp", scope="openid profile read write calendar.read invoices")


@pytest.fixture
def signed_in(app, browser):
    make_user(app, "alice")
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


@pytest.fixture
def issuer(runtime):
    return runtime.settings.issuer


def authorize_and_redeem(browser, client, rp, scope, resources, **token_extra):
    pkce = Pkce.new()
    params = code_params(rp.client_id, rp.redirect_uri, pkce, scope=scope, resource=resources)
    code = browser.code_for(params)
    return code, pkce, redeem(client, rp, code, code_verifier=pkce.verifier, **token_extra)


def access_claims(client, token, audience, issuer):
    return verify_with_jwks(client, token, audience=audience, issuer=issuer, alg="ES256")


def test_resource_binds_audience_and_narrows_scope(app, client, signed_in, rp, issuer):
    """§2: the token is audience-restricted to the resource, with the scopes it defines."""
    _, _, response = authorize_and_redeem(signed_in, client, rp, "openid read calendar.read", [API])
    body = response.get_json()
    claims = access_claims(client, body["access_token"], API, issuer)
    assert claims["aud"] == API
    assert claims["scope"] == "read"
    assert body["scope"] == "read"
    assert "id_token" in body  # openid was granted, even though the API token does not carry it


def test_without_resource_audience_is_the_issuer(app, client, signed_in, rp, issuer):
    """RFC 9068 §3: no resource named: the token is for this server (its userinfo)."""
    _, _, response = authorize_and_redeem(signed_in, client, rp, "openid read", [])
    claims = access_claims(client, response.get_json()["access_token"], issuer, issuer)
    assert claims["aud"] == issuer and claims["scope"] == "openid read"


def test_two_resources_give_both_audiences(app, client, signed_in, rp, issuer):
    """§2: several resources may be requested; the token names each one."""
    _, _, response = authorize_and_redeem(
        signed_in, client, rp, "read calendar.read invoices", [API, CALENDAR]
    )
    claims = access_claims(client, response.get_json()["access_token"], API, issuer)
    assert sorted(claims["aud"]) == sorted([API, CALENDAR])
    assert claims["scope"] == "read calendar.read"


@pytest.mark.parametrize(
    "resource",
    [
        "https://unknown.example.com",
        API + "/",
        API + "#section",
        "api.example.com",
        "/relative",
        "urn:example:api",
        "https://[::1",
    ],
    ids=[
        "unregistered",
        "trailing-slash",
        "fragment",
        "no-scheme",
        "relative",
        "urn-unknown",
        "unclosed-ipv6",
    ],
)
def test_bad_resource_at_authorize_is_invalid_target(app, signed_in, rp, issuer, resource):
    """§2: "the authorization server ... MUST reject" an invalid, unknown or fragment-bearing
    resource with invalid_target (a redirect: client and redirect URI are fine)."""
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new(), scope="read")
    params["resource"] = resource
    before = issued_counts(app)
    query = redirect_error(signed_in.authorize(params), rp, "invalid_target", issuer)
    assert query["state"] == params["state"]
    assert issued_counts(app) == before


def test_token_endpoint_resource_narrows_to_a_subset(app, client, signed_in, rp, issuer):
    """§2.2: at the token endpoint, `resource` picks among the resources authorized."""
    _, _, response = authorize_and_redeem(
        signed_in, client, rp, "read calendar.read", [API, CALENDAR], resource=CALENDAR
    )
    assert response.status_code == 200, response.get_json()
    claims = access_claims(client, response.get_json()["access_token"], CALENDAR, issuer)
    assert claims["aud"] == CALENDAR
    assert claims["scope"] == "calendar.read"


@pytest.mark.parametrize("resource", [BILLING, "https://unknown.example.com", API + "#x"])
def test_token_endpoint_resource_outside_the_authorized_set(app, client, signed_in, rp, resource):
    """§2.2: a resource the user did not authorize is invalid_target; the code stays unspent."""
    pkce = Pkce.new()
    params = code_params(rp.client_id, rp.redirect_uri, pkce, scope="read", resource=[API])
    code = signed_in.code_for(params)
    before = issued_counts(app)
    response = redeem(client, rp, code, code_verifier=pkce.verifier, resource=resource)
    token_error(response, "invalid_target")
    assert issued_counts(app) == before
    assert redeem(client, rp, code, code_verifier=pkce.verifier).status_code == 200


def test_token_endpoint_resource_without_any_at_authorize(app, client, signed_in, rp):
    """§2.2: with no resource authorized, naming one at the token endpoint widens: refused."""
    pkce = Pkce.new()
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri, pkce, scope="read"))
    before = issued_counts(app)
    token_error(
        redeem(client, rp, code, code_verifier=pkce.verifier, resource=API), "invalid_target"
    )
    assert issued_counts(app) == before


def test_refresh_may_narrow_the_resource(app, client, signed_in, rp, issuer):
    """§2.2: a refresh may ask for a token for one of the grant's resources."""
    _, _, response = authorize_and_redeem(
        signed_in, client, rp, "read calendar.read", [API, CALENDAR]
    )
    refreshed = refresh(client, rp, response.get_json()["refresh_token"], resource=API)
    assert refreshed.status_code == 200, refreshed.get_json()
    claims = access_claims(client, refreshed.get_json()["access_token"], API, issuer)
    assert claims["aud"] == API and claims["scope"] == "read"


def test_refresh_cannot_add_a_resource(app, client, signed_in, rp):
    """§2.2: a refresh naming a resource outside the grant is invalid_target; nothing rotates."""
    _, _, response = authorize_and_redeem(signed_in, client, rp, "read", [API])
    refresh_token = response.get_json()["refresh_token"]
    before = issued_counts(app)
    token_error(refresh(client, rp, refresh_token, resource=BILLING), "invalid_target")
    assert issued_counts(app) == before
    assert refresh(client, rp, refresh_token).status_code == 200


def test_too_many_resources(app, signed_in, rp, issuer):
    """§2: the server may bound the number of resources; beyond it, invalid_target."""
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new(), scope="read")
    params["resource"] = [API] * 6
    before = issued_counts(app)
    redirect_error(signed_in.authorize(params), rp, "invalid_target", issuer)
    assert issued_counts(app) == before


def test_consent_is_per_resource(app, signed_in, rp):
    """The consent page names the API the scopes are for, so a remembered consent covers that
    API only: `read` approved at one resource server is asked again at another that also
    defines `read`. The same request at the first API is not asked again (the control)."""
    other = "https://other-api.example.com"
    make_resource(app, other, scopes=("read",), name="Other")
    signed_in.code_for(
        code_params(rp.client_id, rp.redirect_uri, scope="openid read", resource=[API])
    )

    def first_step(resource: str) -> str:
        params = code_params(
            rp.client_id, rp.redirect_uri, scope="openid read", resource=[resource]
        )
        response = signed_in.client.get("/authorize", query_string=params)
        assert response.status_code == 302
        return response.headers["Location"]

    assert first_step(other).startswith("/consent")
    assert first_step(API).startswith(rp.redirect_uri)
