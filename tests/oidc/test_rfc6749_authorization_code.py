"""Authorization code grant, RFC 6749 §4.1, with PKCE and OIDC Core §3.1."""

from __future__ import annotations

import jwt
import pytest

from tests.support.db import audit_events, issued_counts
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_public_client, make_user
from tests.support.flows import Pkce, code_params, query_of


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp", grant_types=["authorization_code", "refresh_token"])


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


def redeem(client, rp, code, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    data.update(extra)
    return client.post("/token", data=data, auth=rp.basic_auth)


def test_code_flow_issues_tokens_and_id_token(app, client, browser, rp, alice, runtime):
    """§4.1.2-4.1.4: code then tokens; OIDC §3.1.3.6 ID token with nonce, aud and at_hash."""
    browser.login("alice", DEFAULT_PASSWORD)
    pkce = Pkce.new()
    params = code_params(rp.client_id, rp.redirect_uri, pkce)
    response = browser.authorize(params)
    query = query_of(response.headers["Location"])
    assert query["state"] == params["state"]
    assert query["iss"] == runtime.settings.issuer
    token = redeem(client, rp, query["code"], code_verifier=pkce.verifier)
    assert token.status_code == 200, token.json
    body = token.json
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    assert token.headers["Cache-Control"] == "no-store"
    id_token = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_token["aud"] == rp.client_id
    assert id_token["nonce"] == params["nonce"]
    assert id_token["sub"] == alice.id
    assert "at_hash" in id_token and "auth_time" in id_token
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


def test_code_is_single_use_and_replay_revokes_tokens(app, client, browser, rp, alice):
    """§4.1.2: a code used twice is refused and what it issued is revoked."""
    browser.login("alice", DEFAULT_PASSWORD)
    code = browser.code_for(code_params(rp.client_id, rp.redirect_uri))
    first = redeem(client, rp, code)
    assert first.status_code == 200
    second = redeem(client, rp, code)
    assert second.status_code == 400 and second.json["error"] == "invalid_grant"
    refresh = client.post(
        "/token",
        auth=rp.basic_auth,
        data={"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]},
    )
    assert refresh.json["error"] == "invalid_grant"
    introspection = client.post(
        "/introspect", auth=rp.basic_auth, data={"token": first.json["access_token"]}
    )
    assert introspection.json == {"active": False}
    assert audit_events(app, "token.code_replayed")


def test_wrong_redirect_uri_at_token_endpoint(app, client, browser, rp, alice):
    """§4.1.3: redirect_uri must be identical to the one in the authorization request."""
    browser.login("alice", DEFAULT_PASSWORD)
    code = browser.code_for(code_params(rp.client_id, rp.redirect_uri))
    before = issued_counts(app)
    response = client.post(
        "/token",
        auth=rp.basic_auth,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://rp.example.com/other",
        },
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert issued_counts(app) == before


def test_public_client_without_pkce_is_refused(app, browser, alice):
    """RFC 7636 §4.4.1 / OAuth 2.1: a public client must send a code_challenge."""
    native = make_public_client(app)
    browser.login("alice", DEFAULT_PASSWORD)
    response = browser.authorize(code_params(native.client_id, "http://127.0.0.1:5555/callback"))
    query = query_of(response.headers["Location"])
    assert query["error"] == "invalid_request"
    assert "code" not in query


def test_loopback_redirect_any_port_for_public_client(app, client, browser, alice):
    """RFC 8252 §7.3: any port on a registered loopback redirect for a native app."""
    native = make_public_client(app)
    browser.login("alice", DEFAULT_PASSWORD)
    pkce = Pkce.new()
    redirect_uri = "http://127.0.0.1:49152/callback"
    code = browser.code_for(code_params(native.client_id, redirect_uri, pkce))
    response = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": native.client_id,
            "code_verifier": pkce.verifier,
        },
    )
    assert response.status_code == 200, response.json
