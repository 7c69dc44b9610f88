"""UserInfo endpoint (OIDC Core §5.3) with bearer tokens (RFC 6750).

RFC 6750 §2.1 (Authorization header), §2.2 (form body, POST only), §2.3 (URI query:
refused here, as RFC 9700 §2.4 recommends), §3 and §3.1 (WWW-Authenticate and the
error codes); OIDC Core §5.4 (claims by scope); RFC 8707 / RFC 9068 §4 (a token for
another audience is not accepted).
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

import authserver.tokens
from authserver.db import transaction
from authserver.models import User
from tests.support.db import issued_counts
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_resource, make_user
from tests.support.oauth import tokens_for

API = "https://api.example.com"


@pytest.fixture
def alice(app):
    return make_user(app, "alice", name="Alice Liddell", email="alice@example.com")


@pytest.fixture
def rp(app):
    make_resource(app, API, ("read", "write"))
    return make_client(
        app,
        "web-rp",
        scope="openid profile email offline_access read",
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
    )


@pytest.fixture
def signed_in(browser, alice):
    assert browser.login("alice", DEFAULT_PASSWORD).status_code == 302
    return browser


@pytest.fixture
def tokens(signed_in, client, rp):
    return tokens_for(signed_in, client, rp, scope="openid profile email offline_access")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge(response) -> str:
    value = response.headers["WWW-Authenticate"]
    assert value.startswith("Bearer"), value
    return value


def assert_bearer_error(response, status: int, error: str) -> dict:
    """RFC 6750 §3: the status, a Bearer challenge naming the error, and a JSON body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert f'error="{error}"' in challenge(response)
    body = response.get_json()
    assert body["error"] == error and body["error_description"], body
    assert "sub" not in body
    return body


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bearer_header(client, alice, tokens, method):
    """RFC 6750 §2.1 / OIDC Core §5.3.1: GET and POST with the Authorization header."""
    response = client.open("/userinfo", method=method, headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["sub"] == alice.id
    assert response.headers["Cache-Control"] == "no-store"


def test_form_body_on_post(client, alice, tokens):
    """RFC 6750 §2.2: the access_token form parameter in a form-encoded POST body."""
    response = client.post("/userinfo", data={"access_token": tokens["access_token"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["sub"] == alice.id


def test_form_body_must_be_form_encoded(client, tokens):
    """RFC 6750 §2.2: the body method requires application/x-www-form-urlencoded; a token in
    a multipart or JSON body is not a presented token."""
    multipart = client.post(
        "/userinfo",
        data={"access_token": tokens["access_token"]},
        content_type="multipart/form-data",
    )
    as_json = client.post("/userinfo", json={"access_token": tokens["access_token"]})
    for response in (multipart, as_json):
        assert response.status_code == 401
        assert "sub" not in response.get_json()


def test_token_in_query_string_is_refused(client, tokens):
    """RFC 6750 §2.3 is not supported (RFC 9700 §2.4: tokens in URLs leak to logs and
    Referer); the request is refused even with a valid token, and reveals no claims."""
    for method in ("GET", "POST"):
        response = client.open(
            "/userinfo", method=method, query_string={"access_token": tokens["access_token"]}
        )
        assert_bearer_error(response, 400, "invalid_request")


def test_two_methods_at_once_are_refused(client, tokens):
    """RFC 6750 §3.1: "uses more than one method for including an access token" is
    invalid_request."""
    response = client.post(
        "/userinfo",
        headers=bearer(tokens["access_token"]),
        data={"access_token": tokens["access_token"]},
    )
    assert_bearer_error(response, 400, "invalid_request")


def test_repeated_form_token_is_refused(client, tokens):
    """RFC 6750 §3.1: a request that "repeats the same parameter" is invalid_request."""
    token = tokens["access_token"]
    response = client.post(
        "/userinfo",
        data=f"access_token={token}&access_token={token}",
        content_type="application/x-www-form-urlencoded",
    )
    assert_bearer_error(response, 400, "invalid_request")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_missing_token(client, method):
    """RFC 6750 §3 / §3.1: no credentials at all: 401 with a Bearer challenge that carries
    no error code ("the resource server SHOULD NOT include an error code")."""
    response = client.open("/userinfo", method=method)
    assert response.status_code == 401
    assert "error=" not in challenge(response)
    assert "sub" not in response.get_json()


def test_other_scheme_is_not_a_token(client, tokens):
    """RFC 6750 §2.1: only the Bearer scheme carries an access token."""
    response = client.get("/userinfo", headers={"Authorization": "Basic " + tokens["access_token"]})
    assert response.status_code == 401
    challenge(response)


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    return f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"


@pytest.mark.parametrize("kind", ["garbage", "tampered", "id_token", "refresh_token"])
def test_invalid_token(client, tokens, kind):
    """RFC 6750 §3.1 invalid_token: malformed, forged, or not an access token at all (an ID
    token has typ JWT, not at+jwt; a refresh token is for the token endpoint only)."""
    token = {
        "garbage": "not.a.token",
        "tampered": _tampered(tokens["access_token"]),
        "id_token": tokens["id_token"],
        "refresh_token": tokens["refresh_token"],
    }[kind]
    assert_bearer_error(client.get("/userinfo", headers=bearer(token)), 401, "invalid_token")


def test_expired_token(app, client, signed_in, rp, monkeypatch):
    """RFC 6750 §3.1 invalid_token: "The access token provided is expired"."""
    past = int(time.time()) - 3600
    monkeypatch.setattr(authserver.tokens, "now", lambda: past)
    expired = tokens_for(signed_in, client, rp)["access_token"]
    monkeypatch.undo()
    response = client.get("/userinfo", headers=bearer(expired))
    assert_bearer_error(response, 401, "invalid_token")


def test_revoked_access_token(client, rp, tokens):
    """RFC 7009 §2: once the client revokes the access token, userinfo refuses it."""
    revoked = client.post("/revoke", data={"token": tokens["access_token"]}, auth=rp.basic_auth)
    assert revoked.status_code == 200
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert_bearer_error(response, 401, "invalid_token")


def test_revoked_grant(client, rp, tokens):
    """RFC 7009 §2.1: revoking the refresh token revokes the grant and its access tokens."""
    client.post("/revoke", data={"token": tokens["refresh_token"]}, auth=rp.basic_auth)
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert_bearer_error(response, 401, "invalid_token")


def test_disabled_user(app, client, alice, tokens):
    """A token of a user who has since been disabled no longer answers for them."""
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(update(User).where(User.id == alice.id).values(disabled=True))
    response = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert_bearer_error(response, 401, "invalid_token")


def test_token_without_openid_scope(client, signed_in, rp):
    """OIDC Core §5.3: userinfo needs a token with `openid`; RFC 6750 §3.1: otherwise 403
    insufficient_scope naming the scope required."""
    plain = tokens_for(signed_in, client, rp, scope="profile")["access_token"]
    response = client.get("/userinfo", headers=bearer(plain))
    assert_bearer_error(response, 403, "insufficient_scope")
    assert 'scope="openid"' in challenge(response)


def test_client_credentials_token(client, rp):
    """A client's own token (no user, so never `openid`) cannot read userinfo: 403."""
    issued = client.post("/token", data={"grant_type": "client_credentials"}, auth=rp.basic_auth)
    assert issued.status_code == 200, issued.get_json()
    response = client.get("/userinfo", headers=bearer(issued.get_json()["access_token"]))
    assert_bearer_error(response, 403, "insufficient_scope")


def test_token_for_another_audience(app, client, signed_in, rp):
    """RFC 8707 §2 / RFC 9068 §4: a token bound to another resource (its `aud`) is not a
    token for this server's userinfo, even with `openid` in its scope."""
    bound = tokens_for(signed_in, client, rp, scope="openid read", resource=API)
    before = issued_counts(app)
    response = client.get("/userinfo", headers=bearer(bound["access_token"]))
    assert_bearer_error(response, 401, "invalid_token")
    assert issued_counts(app) == before


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("openid", {"sub"}),
        ("openid profile", {"sub", "name", "preferred_username"}),
        ("openid email", {"sub", "email", "email_verified"}),
        (
            "openid profile email",
            {"sub", "name", "preferred_username", "email", "email_verified"},
        ),
    ],
)
def test_claims_by_scope(client, signed_in, rp, alice, scope, expected):
    """OIDC Core §5.4: profile and email scopes each release their claims, nothing more."""
    access_token = tokens_for(signed_in, client, rp, scope=scope)["access_token"]
    claims = client.get("/userinfo", headers=bearer(access_token)).get_json()
    assert set(claims) == expected
    assert claims["sub"] == alice.id
    if "name" in expected:
        assert claims["name"] == "Alice Liddell" and claims["preferred_username"] == "alice"
    if "email" in expected:
        assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
