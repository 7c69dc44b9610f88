"""Token endpoint, RFC 6749 §2.3, §3.2, §4.1.3 and §5.2.

Every refusal is RFC-shaped JSON with the right status, and leaves nothing
behind: no token, no grant, and the code still unspent.
"""

from __future__ import annotations

import base64

import pytest
from werkzeug.datastructures import MultiDict

from authserver.models import AuthorizationCode, now
from authserver.oauth.grants import authorization_code
from tests.support.apps import build_test_app
from tests.support.db import issued_counts, rows
from tests.support.factories import (
    DEFAULT_PASSWORD,
    make_client,
    make_public_client,
    make_user,
)
from tests.support.flows import Browser, Pkce, code_params
from tests.support.oauth import age_code, redeem, token_error


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp")


@pytest.fixture
def signed_in(app, browser):
    make_user(app, "alice")
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


@pytest.fixture
def code(signed_in, rp):
    """A fresh code for `rp` (no PKCE: rp is confidential)."""
    return signed_in.code_for(code_params(rp.client_id, rp.redirect_uri))


def code_form(rp, code):
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}


def assert_code_still_redeemable(client, rp, code):
    """The refused request did not spend the code."""
    response = redeem(client, rp, code)
    assert response.status_code == 200, response.get_json()


def test_successful_response_is_not_cacheable(app, client, rp, code):
    """§5.1: a token response MUST carry Cache-Control: no-store (and Pragma: no-cache)."""
    response = redeem(client, rp, code)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.get_json()["token_type"] == "Bearer"


# §3.2: the request itself.


@pytest.mark.parametrize(
    "kind",
    ["json", "multipart", "text"],
)
def test_body_must_be_form_encoded(app, client, rp, code, kind):
    """§3.2: parameters are sent "using the application/x-www-form-urlencoded format"."""
    form = code_form(rp, code)
    before = issued_counts(app)
    if kind == "json":
        response = client.post("/token", json=form, auth=rp.basic_auth)
    elif kind == "multipart":
        response = client.post(
            "/token", data=form, auth=rp.basic_auth, content_type="multipart/form-data"
        )
    else:
        response = client.post(
            "/token",
            data="grant_type=authorization_code",
            auth=rp.basic_auth,
            content_type="text/plain",
        )
    body = token_error(response, "invalid_request")
    assert "application/x-www-form-urlencoded" in body["error_description"]
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


@pytest.mark.parametrize("in_url", ["code", "client_secret", "grant_type"])
def test_parameters_in_query_string_are_refused(app, client, rp, code, in_url):
    """§3.2 / §2.3.1: parameters (and credentials) belong in the body, never in the URL."""
    form = {**code_form(rp, code), "client_id": rp.client_id, "client_secret": rp.client_secret}
    url_value = form.pop(in_url)
    before = issued_counts(app)
    response = client.post(f"/token?{in_url}={url_value}", data=form)
    body = token_error(response, "invalid_request")
    assert body["error_description"] == "Parameters belong in the request body, not the URL."
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


@pytest.mark.parametrize("name", ["code", "grant_type", "redirect_uri", "client_id"])
def test_repeated_parameters_are_refused(app, client, rp, code, name):
    """§3.2: "Request and response parameters MUST NOT be included more than once"."""
    form = {**code_form(rp, code), "client_id": rp.client_id}
    pairs = [*form.items(), (name, form[name])]
    before = issued_counts(app)
    response = client.post("/token", data=MultiDict(pairs), auth=rp.basic_auth)
    body = token_error(response, "invalid_request")
    assert body["error_description"] == f"Parameter '{name}' is repeated."
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


def test_missing_grant_type(app, client, rp, code):
    """§4.1.3 grant_type is REQUIRED; §5.2: a missing parameter is invalid_request."""
    form = code_form(rp, code)
    del form["grant_type"]
    before = issued_counts(app)
    body = token_error(client.post("/token", data=form, auth=rp.basic_auth), "invalid_request")
    assert body["error_description"] == "Missing 'grant_type'."
    assert issued_counts(app) == before


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:example:unknown", 'x"y'])
def test_unknown_grant_type(app, client, rp, grant_type):
    """§5.2 unsupported_grant_type: the grant type is not supported by this server."""
    before = issued_counts(app)
    response = client.post("/token", data={"grant_type": grant_type}, auth=rp.basic_auth)
    token_error(response, "unsupported_grant_type")
    assert issued_counts(app) == before


def test_get_is_method_not_allowed(app, client, rp):
    """§3.2: "The client MUST use the HTTP POST method"; GET gets 405 with JSON and Allow."""
    before = issued_counts(app)
    response = client.get("/token?grant_type=client_credentials", auth=rp.basic_auth)
    token_error(response, "invalid_request", status=405)
    assert "POST" in response.headers["Allow"]
    assert issued_counts(app) == before


# §4.1.3: the authorization code.


def test_missing_code(app, client, rp):
    """§4.1.3 code is REQUIRED: invalid_request."""
    form = {"grant_type": "authorization_code", "redirect_uri": rp.redirect_uri}
    before = issued_counts(app)
    body = token_error(client.post("/token", data=form, auth=rp.basic_auth), "invalid_request")
    assert body["error_description"] == "Missing 'code' in request."
    assert issued_counts(app) == before


@pytest.mark.parametrize("value", ["not-a-code", "x" * 600])
def test_unknown_code(app, client, rp, code, value):
    """§5.2 invalid_grant: the authorization code is invalid."""
    before = issued_counts(app)
    response = client.post("/token", data=code_form(rp, value), auth=rp.basic_auth)
    token_error(response, "invalid_grant")
    assert issued_counts(app) == before


def test_expired_code(app, client, rp, code):
    """§4.1.2 / §5.2: a code MUST expire shortly after issue; an expired one is invalid_grant."""
    age_code(app, code, now() - 1)
    before = issued_counts(app)
    token_error(redeem(client, rp, code), "invalid_grant")
    assert issued_counts(app) == before


def test_code_lifetime_follows_the_setting(migrated_database, app, monkeypatch):
    """§4.1.2: codes expire after AUTHSERVER_AUTHORIZATION_CODE_TTL (here 1 second)."""
    short = build_test_app(migrated_database, authorization_code_ttl=1)
    try:
        rp = make_client(short, "short-rp")
        make_user(short, "alice")
        browser = Browser(short.test_client())
        browser.login("alice", DEFAULT_PASSWORD)
        issued_at = now()
        code = browser.code_for(code_params(rp.client_id, rp.redirect_uri))
        (row,) = rows(short, AuthorizationCode)
        assert issued_at + 1 <= row.expires_at <= now() + 1
        monkeypatch.setattr(authorization_code, "now", lambda: row.expires_at)
        before = issued_counts(short)
        token_error(redeem(short.test_client(), rp, code), "invalid_grant")
        assert issued_counts(short) == before
    finally:
        short.extensions["authserver"].engine.dispose()


def test_code_issued_to_another_client(app, client, rp, code):
    """§4.1.3: ensure the code was issued to the authenticated client; else invalid_grant."""
    other = make_client(app, "other-rp")
    before = issued_counts(app)
    response = client.post(
        "/token",
        data={**code_form(rp, code), "redirect_uri": rp.redirect_uri},
        auth=other.basic_auth,
    )
    token_error(response, "invalid_grant")
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


# §2.3 and §5.2: client authentication.


def basic(client_id, secret):
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda rp: basic(rp.client_id, "wrong-secret"), id="wrong-secret"),
        pytest.param(lambda rp: basic("no-such-client", rp.client_secret), id="unknown-client"),
        pytest.param(lambda rp: basic(rp.client_id, ""), id="empty-secret"),
        pytest.param(lambda rp: {"Authorization": "Basic !!!not-base64"}, id="garbage"),
    ],
)
def test_basic_authentication_failure_is_401_with_challenge(app, client, rp, code, headers):
    """§5.2 invalid_client: after Basic, "MUST respond with an HTTP 401" and WWW-Authenticate."""
    before = issued_counts(app)
    response = client.post("/token", data=code_form(rp, code), headers=headers(rp))
    token_error(response, "invalid_client", status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


def test_no_client_authentication_at_all(app, client, rp, code):
    """§3.2.1: a confidential client MUST authenticate; nothing presented is invalid_client."""
    before = issued_counts(app)
    response = client.post("/token", data=code_form(rp, code))
    token_error(response, "invalid_client", status=401)
    assert issued_counts(app) == before


def test_wrong_secret_with_client_secret_post(app, client, signed_in):
    """§2.3.1 / §5.2: a wrong secret in the body is invalid_client too."""
    rp = make_client(app, "post-rp", auth_method="client_secret_post")
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri))
    form = {**code_form(rp, code), "client_id": rp.client_id, "client_secret": "wrong-secret"}
    before = issued_counts(app)
    token_error(client.post("/token", data=form), "invalid_client", status=401)
    assert issued_counts(app) == before
    form["client_secret"] = rp.client_secret
    assert client.post("/token", data=form).status_code == 200


def test_confidential_client_cannot_use_auth_method_none(app, client, rp, code):
    """§3.2.1: confidential clients MUST authenticate; client_id alone is not enough."""
    form = {**code_form(rp, code), "client_id": rp.client_id}
    before = issued_counts(app)
    token_error(client.post("/token", data=form), "invalid_client", status=401)
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


def test_basic_client_cannot_use_client_secret_post(app, client, rp, code):
    """RFC 7591 §2 token_endpoint_auth_method: only the registered method authenticates."""
    form = {**code_form(rp, code), "client_id": rp.client_id, "client_secret": rp.client_secret}
    before = issued_counts(app)
    token_error(client.post("/token", data=form), "invalid_client", status=401)
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


def test_post_client_cannot_use_client_secret_basic(app, client, signed_in):
    """RFC 7591 §2 token_endpoint_auth_method: only the registered method authenticates."""
    rp = make_client(app, "post-rp", auth_method="client_secret_post")
    code = signed_in.code_for(code_params(rp.client_id, rp.redirect_uri))
    before = issued_counts(app)
    response = client.post("/token", data=code_form(rp, code), auth=rp.basic_auth)
    token_error(response, "invalid_client", status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert issued_counts(app) == before


def test_public_client_secret_is_refused(app, client, signed_in):
    """§2.3.1: a public client has no secret; presenting one does not authenticate it."""
    native = make_public_client(app)
    pkce = Pkce.new()
    redirect_uri = "http://127.0.0.1:5555/callback"
    code = signed_in.code_for(code_params(native.client_id, redirect_uri, pkce))
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": pkce.verifier,
        "client_id": native.client_id,
        "client_secret": "made-up",
    }
    before = issued_counts(app)
    token_error(client.post("/token", data=form), "invalid_client", status=401)
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        (["authorization_code"], "client_credentials"),
        (["authorization_code"], "refresh_token"),
        (["client_credentials"], "authorization_code"),
    ],
)
def test_client_not_allowed_the_grant_type(app, client, registered, requested):
    """§5.2 unauthorized_client: the client is not authorized to use this grant type."""
    rp = make_client(app, "limited", grant_types=registered)
    form = {
        "grant_type": requested,
        "code": "whatever",
        "refresh_token": "whatever",
        "redirect_uri": rp.redirect_uri,
    }
    before = issued_counts(app)
    response = client.post("/token", data=form, auth=rp.basic_auth)
    token_error(response, "unauthorized_client")
    assert issued_counts(app) == before


def test_wrong_redirect_uri_does_not_spend_the_code(app, client, rp, code):
    """§4.1.3: redirect_uri must be identical; a mismatch is invalid_grant and spends nothing."""
    before = issued_counts(app)
    response = redeem(client, rp, code, redirect_uri=rp.redirect_uri + "/x")
    token_error(response, "invalid_grant")
    assert issued_counts(app) == before
    assert_code_still_redeemable(client, rp, code)


def test_missing_redirect_uri_is_refused(app, client, rp, code):
    """§4.1.3: redirect_uri is REQUIRED when it was in the authorization request."""
    form = code_form(rp, code)
    del form["redirect_uri"]
    before = issued_counts(app)
    token_error(client.post("/token", data=form, auth=rp.basic_auth), "invalid_grant")
    assert issued_counts(app) == before
