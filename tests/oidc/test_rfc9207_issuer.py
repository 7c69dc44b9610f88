"""Authorization server issuer identification, RFC 9207.

Every authorization response that reaches the client, success or error, carries
exactly one `iss` equal to the issuer of the discovery document; error pages
(no redirect) carry nothing to the client at all.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import Browser, Pkce, code_params


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp")


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


@pytest.fixture
def signed_in(browser, alice):
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


def iss_values(response, rp):
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(rp.redirect_uri + "?"), location
    return parse_qs(urlsplit(location).query)["iss"]


@pytest.mark.parametrize("well_known", ["openid-configuration", "oauth-authorization-server"])
def test_discovery_announces_iss_parameter(client, runtime, well_known):
    """§3: authorization_response_iss_parameter_supported is true, and `issuer` is the value."""
    metadata = client.get(f"/.well-known/{well_known}").get_json()
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["issuer"] == runtime.settings.issuer


def test_iss_in_successful_response(app, signed_in, rp, client):
    """§2: the iss parameter is in the authorization response, once, equal to the issuer."""
    issuer = client.get("/.well-known/openid-configuration").get_json()["issuer"]
    response = signed_in.authorize(code_params(rp.client_id, rp.redirect_uri, Pkce.new()))
    assert iss_values(response, rp) == [issuer]
    assert "code" in parse_qs(urlsplit(response.headers["Location"]).query)


def test_iss_in_silent_success(app, signed_in, rp, runtime):
    """§2: also on a response without any page (remembered consent, prompt=none)."""
    signed_in.authorize(code_params(rp.client_id, rp.redirect_uri, Pkce.new()))
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new(), prompt="none")
    response = signed_in.client.get("/authorize?" + urlencode(params))
    assert iss_values(response, rp) == [runtime.settings.issuer]


ERROR_REQUESTS = {
    "unsupported_response_type": {"response_type": "token"},
    "invalid_scope": {"scope": "openid no-such-scope"},
    "invalid_request": {"code_challenge_method": "plain"},
    "request_not_supported": {"request": "e30"},
    "invalid_target": {"resource": "https://unknown.example.com"},
    "consent_required": {"prompt": "none"},
}


@pytest.mark.parametrize("error", sorted(ERROR_REQUESTS))
def test_iss_in_error_responses(app, signed_in, rp, runtime, error):
    """§2: "including error responses" the response carries iss."""
    params = {**code_params(rp.client_id, rp.redirect_uri, Pkce.new()), **ERROR_REQUESTS[error]}
    response = signed_in.client.get("/authorize?" + urlencode(params))
    assert iss_values(response, rp) == [runtime.settings.issuer]
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == [error]


def test_iss_in_access_denied(app, signed_in, rp, runtime):
    """§2: the user's refusal (access_denied from the consent page) carries iss."""
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new())
    response = signed_in.authorize(params, decision="deny")
    assert iss_values(response, rp) == [runtime.settings.issuer]


def test_iss_in_login_required(app, alice, rp, runtime):
    """§2: prompt=none without a session: login_required, with iss."""
    browser = Browser(app.test_client())
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new(), prompt="none")
    response = browser.client.get("/authorize?" + urlencode(params))
    assert iss_values(response, rp) == [runtime.settings.issuer]
