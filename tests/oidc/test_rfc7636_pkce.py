"""PKCE, RFC 7636, as profiled by OAuth 2.1 and RFC 9700 §2.1.1 / §4.8: S256 only.

Refusals at /authorize go back to the client (the client and redirect URI are
fine); refusals at /token are JSON. Nothing is issued by either, and a refused
redemption does not spend the code.
"""

from __future__ import annotations

import pytest

from tests.support.db import issued_counts
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_public_client, make_user
from tests.support.flows import Pkce, code_params, query_of
from tests.support.oauth import redeem, redirect_error, token_error

NATIVE_REDIRECT = "http://127.0.0.1:5555/callback"


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp")


@pytest.fixture
def native(app):
    client = make_public_client(app)
    # The port is free on loopback (RFC 8252 §7.3); use one fixed redirect for these tests.
    return type(client)(client.client_id, None, NATIVE_REDIRECT)


@pytest.fixture
def signed_in(app, browser):
    make_user(app, "alice")
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


@pytest.fixture
def issuer(runtime):
    return runtime.settings.issuer


def authorize(browser, rp, **extra):
    return browser.authorize({**code_params(rp.client_id, rp.redirect_uri), **extra})


def test_s256_round_trip(app, client, signed_in, rp):
    """§4.1-4.6: S256 challenge at /authorize, the verifier at /token: tokens."""
    pkce = Pkce.new()
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri, pkce))
    response = redeem(client, rp, code, code_verifier=pkce.verifier)
    assert response.status_code == 200, response.get_json()


def test_s256_round_trip_for_public_client(app, client, signed_in, native):
    """§4.1-4.6 and RFC 8252 §8.1: a native app proves possession of the verifier."""
    pkce = Pkce.new()
    code = signed_in.code_for(code_params(native.client_id, native.redirect_uri, pkce))
    response = redeem(client, native, code, code_verifier=pkce.verifier)
    assert response.status_code == 200, response.get_json()


def test_discovery_lists_s256_only(client):
    """RFC 8414 §2 code_challenge_methods_supported: S256 and nothing else."""
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]


# At the authorization endpoint.


def test_plain_method_is_refused(app, signed_in, rp, issuer):
    """RFC 9700 §2.1.1: clients MUST NOT use `plain`; the server refuses it (invalid_request)."""
    pkce = Pkce.new()
    before = issued_counts(app)
    response = authorize(signed_in, rp, code_challenge=pkce.verifier, code_challenge_method="plain")
    query = redirect_error(response, rp, "invalid_request", issuer)
    assert query["error_description"] == "'code_challenge_method' must be S256."
    assert issued_counts(app) == before


def test_challenge_without_method_is_refused(app, signed_in, rp, issuer):
    """§4.3 defaults a missing method to `plain`; this server requires an explicit S256."""
    before = issued_counts(app)
    response = authorize(signed_in, rp, code_challenge=Pkce.new().challenge)
    query = redirect_error(response, rp, "invalid_request", issuer)
    assert query["error_description"] == "'code_challenge_method' must be S256."
    assert issued_counts(app) == before


def test_method_without_challenge_is_refused(app, signed_in, rp, issuer):
    """§4.4.1: a method without a code_challenge is invalid_request."""
    before = issued_counts(app)
    response = authorize(signed_in, rp, code_challenge_method="S256")
    redirect_error(response, rp, "invalid_request", issuer)
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    "challenge",
    ["a" * 42, "a" * 129, "+" * 43, "abc/def=" * 6],
    ids=["too-short", "too-long", "plus", "slash-and-padding"],
)
def test_malformed_challenge_is_refused(app, signed_in, rp, issuer, challenge):
    """§4.2: code_challenge is 43-128 characters of [A-Z a-z 0-9 - . _ ~]."""
    before = issued_counts(app)
    response = authorize(signed_in, rp, code_challenge=challenge, code_challenge_method="S256")
    redirect_error(response, rp, "invalid_request", issuer)
    assert issued_counts(app) == before


def test_public_client_without_challenge_is_refused_at_authorize(app, signed_in, native, issuer):
    """§4.4.1 / OAuth 2.1 §7.5.1: public clients MUST use PKCE; refused before a code exists."""
    params = code_params(native.client_id, native.redirect_uri)
    before = issued_counts(app)
    query = redirect_error(signed_in.authorize(params), native, "invalid_request", issuer)
    assert query["state"] == params["state"]
    assert "PKCE" in query["error_description"]
    assert issued_counts(app) == before


def test_confidential_client_without_pkce_is_allowed(app, client, signed_in, rp):
    """RFC 9700 §2.1.1: confidential clients SHOULD use PKCE; without it the flow still works."""
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri))
    response = redeem(client, rp, code)
    assert response.status_code == 200, response.get_json()


# At the token endpoint.


@pytest.fixture
def pkce():
    return Pkce.new()


@pytest.fixture
def code(signed_in, rp, pkce):
    return signed_in.code_for(code_params(rp.client_id, rp.redirect_uri, pkce))


def assert_code_unspent(client, rp, code, pkce):
    response = redeem(client, rp, code, code_verifier=pkce.verifier)
    assert response.status_code == 200, response.get_json()


def test_missing_verifier_when_challenge_was_sent(app, client, rp, code, pkce):
    """§4.5 / §4.6: with a challenge on the code, the verifier is required (invalid_request)."""
    before = issued_counts(app)
    body = token_error(redeem(client, rp, code), "invalid_request")
    assert body["error_description"] == "Missing 'code_verifier'"
    assert issued_counts(app) == before
    assert_code_unspent(client, rp, code, pkce)


def test_public_client_missing_verifier(app, client, signed_in, native):
    """§4.5: a public client's code is useless without its verifier."""
    pkce = Pkce.new()
    code = signed_in.code_for(code_params(native.client_id, native.redirect_uri, pkce))
    before = issued_counts(app)
    token_error(redeem(client, native, code), "invalid_request")
    assert issued_counts(app) == before


def test_wrong_verifier_is_invalid_grant(app, client, rp, code, pkce):
    """§4.6: "If the values are not equal, an error response indicating invalid_grant"."""
    before = issued_counts(app)
    body = token_error(redeem(client, rp, code, code_verifier=Pkce.new().verifier), "invalid_grant")
    assert body["error_description"] == "Code challenge failed."
    assert issued_counts(app) == before


def test_challenge_as_verifier_is_invalid_grant(app, client, rp, code, pkce):
    """§4.6 with S256: sending the challenge itself (a `plain` downgrade) does not verify."""
    before = issued_counts(app)
    token_error(redeem(client, rp, code, code_verifier=pkce.challenge), "invalid_grant")
    assert issued_counts(app) == before


def test_verifier_without_challenge_is_refused(app, client, signed_in, rp):
    """RFC 9700 §4.8.2: a code_verifier for a code that had no challenge MUST be rejected."""
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri))
    before = issued_counts(app)
    response = redeem(client, rp, code, code_verifier=Pkce.new().verifier)
    token_error(response, "invalid_request")
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "/", "a" * 42 + "=", "a" * 42 + " ", "é" * 43],
    ids=["too-short", "too-long", "plus", "slash", "padding", "space", "non-ascii"],
)
def test_malformed_verifier_is_refused(app, client, rp, code, pkce, verifier):
    """§4.1: code_verifier is 43-128 characters of [A-Z a-z 0-9 - . _ ~] (invalid_request)."""
    before = issued_counts(app)
    body = token_error(redeem(client, rp, code, code_verifier=verifier), "invalid_request")
    assert body["error_description"] == "Invalid 'code_verifier'"
    assert issued_counts(app) == before
    assert_code_unspent(client, rp, code, pkce)


def test_code_redeemed_with_pkce_is_single_use(app, client, rp, code, pkce):
    """§4.6 with RFC 6749 §4.1.2: the right verifier does not make a code reusable."""
    assert redeem(client, rp, code, code_verifier=pkce.verifier).status_code == 200
    token_error(redeem(client, rp, code, code_verifier=pkce.verifier), "invalid_grant")


def test_code_challenge_survives_the_consent_page(app, client, signed_in, rp):
    """§4.4: the challenge is bound to the code even when the user went through consent."""
    pkce = Pkce.new()
    response = signed_in.authorize(code_params(rp.client_id, rp.redirect_uri, pkce))
    code = query_of(response.headers["Location"])["code"]
    token_error(redeem(client, rp, code), "invalid_request")
    assert redeem(client, rp, code, code_verifier=pkce.verifier).status_code == 200
