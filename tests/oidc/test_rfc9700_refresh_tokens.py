"""Refresh tokens, RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2).

Every use rotates the token; a rotated token presented again revokes the whole
family (the newest refresh token and every access token of the grant). Other
refusals are invalid_grant / invalid_scope and change nothing.
"""

from __future__ import annotations

import jwt
import pytest
from sqlalchemy import update

from authserver.db import transaction
from authserver.models import Client, Grant, User, now
from tests.support.db import audit_events, issued_counts, rows
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_public_client, make_user
from tests.support.oauth import (
    age_refresh_token,
    introspect,
    refresh,
    token_error,
    tokens_for,
)

NATIVE_REDIRECT = "http://127.0.0.1:5555/callback"


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp", scope="openid profile email offline_access")


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


@pytest.fixture
def signed_in(browser, alice):
    browser.login("alice", DEFAULT_PASSWORD)
    return browser


@pytest.fixture
def first(signed_in, client, rp):
    """The first token response of a grant (scope openid profile email)."""
    return tokens_for(signed_in, client, rp, scope="openid profile email")


def refreshed(client, rp, refresh_token, **extra):
    response = refresh(client, rp, refresh_token, **extra)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("kind", ["confidential", "public"])
def test_refresh_rotates_on_every_use(app, client, signed_in, kind):
    """RFC 9700 §4.14.2: a new refresh token on every use; the old one stops working."""
    if kind == "public":
        rp = make_public_client(app)
        rp = type(rp)(rp.client_id, None, NATIVE_REDIRECT)
    else:
        rp = make_client(app, "web-rp")
    body = tokens_for(signed_in, client, rp)
    second = refreshed(client, rp, body["refresh_token"])
    assert second["refresh_token"] != body["refresh_token"]
    assert second["access_token"] != body["access_token"]
    third = refreshed(client, rp, second["refresh_token"])
    assert len({body["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert second["token_type"] == "Bearer" and second["expires_in"] > 0


def test_rotated_token_is_refused(app, client, rp, first):
    """§4.14.2: a rotated refresh token is invalid_grant."""
    refreshed(client, rp, first["refresh_token"])
    token_error(refresh(client, rp, first["refresh_token"]), "invalid_grant")


def test_reuse_revokes_the_whole_family(app, client, rp, first):
    """§4.14.2: reuse of a rotated token revokes the active refresh token and the grant's tokens."""
    second = refreshed(client, rp, first["refresh_token"])
    assert introspect(client, rp, second["access_token"])["active"] is True
    token_error(refresh(client, rp, first["refresh_token"]), "invalid_grant")
    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert introspect(client, rp, token) == {"active": False}
    token_error(refresh(client, rp, second["refresh_token"]), "invalid_grant")
    (grant,) = rows(app, Grant)
    assert grant.revoked_reason == "refresh_token_reused"
    assert audit_events(app, "token.refresh_reused")


def test_reuse_does_not_touch_other_grants(app, client, signed_in, rp, first):
    """§4.14.2: only the compromised family is revoked, not the user's other grants."""
    other = tokens_for(signed_in, client, rp, scope="openid")
    refreshed(client, rp, first["refresh_token"])
    token_error(refresh(client, rp, first["refresh_token"]), "invalid_grant")
    assert introspect(client, rp, other["access_token"])["active"] is True
    refreshed(client, rp, other["refresh_token"])


def test_refresh_token_of_another_client(app, client, rp, first):
    """§6: "the refresh token was issued to the authenticated client" else invalid_grant;
    the presenting client learns nothing and the owner's family stays intact."""
    thief = make_client(app, "other-rp")
    before = issued_counts(app)
    token_error(refresh(client, thief, first["refresh_token"]), "invalid_grant")
    assert issued_counts(app) == before
    assert introspect(client, rp, first["access_token"])["active"] is True
    refreshed(client, rp, first["refresh_token"])
    (grant,) = rows(app, Grant)
    assert grant.revoked_at is None


def test_scope_may_narrow(app, client, rp, first):
    """§6: the requested scope MUST NOT include scope not originally granted; narrower is fine."""
    narrowed = refreshed(client, rp, first["refresh_token"], scope="openid profile")
    assert narrowed["scope"] == "openid profile"
    claims = jwt.decode(narrowed["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "openid profile"


def test_scope_narrowed_without_openid_gets_no_id_token(app, client, rp, first):
    """§6 with OIDC Core §12.2: a refresh asking for `profile` alone asked for no ID token;
    one asking for `openid` among its scopes, or for no narrower scope, still gets one."""
    narrowed = refreshed(client, rp, first["refresh_token"], scope="profile")
    assert narrowed["scope"] == "profile" and "id_token" not in narrowed
    with_openid = refreshed(client, rp, narrowed["refresh_token"], scope="openid email")
    assert "id_token" in with_openid
    assert "id_token" in refreshed(client, rp, with_openid["refresh_token"])


@pytest.mark.parametrize("scope", ["openid profile email offline_access", "openid phone"])
def test_scope_may_not_widen(app, client, rp, first, scope):
    """§6: scope beyond the original grant is invalid_scope, and the token is not rotated."""
    before = issued_counts(app)
    token_error(refresh(client, rp, first["refresh_token"], scope=scope), "invalid_scope")
    assert issued_counts(app) == before
    refreshed(client, rp, first["refresh_token"])


def test_new_refresh_token_keeps_the_original_scope(app, client, rp, first):
    """§6: "the refresh token ... scope MUST be identical to that of the refresh token included
    by the client in the request" even when this access token was narrowed."""
    narrowed = refreshed(client, rp, first["refresh_token"], scope="openid")
    assert introspect(client, rp, narrowed["refresh_token"])["scope"] == "openid profile email"
    again = refreshed(client, rp, narrowed["refresh_token"], scope="openid profile email")
    assert again["scope"] == "openid profile email"


def test_scope_taken_from_the_client_ends_at_its_next_refresh(app, client, rp, first):
    """A client whose registration no longer includes a scope gets no token carrying it
    at its next refresh, and the rotated refresh token no longer holds it either:
    narrowing a client does not wait for its refresh tokens to expire."""
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(
            update(Client)
            .where(Client.client_id == rp.client_id)
            .values(scope="openid profile offline_access")
        )
    narrowed = refreshed(client, rp, first["refresh_token"])
    assert narrowed["scope"] == "openid profile"
    claims = jwt.decode(narrowed["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "openid profile"
    assert introspect(client, rp, narrowed["refresh_token"])["scope"] == "openid profile"
    asked = refreshed(client, rp, narrowed["refresh_token"], scope="openid")
    assert asked["scope"] == "openid"


def test_expired_refresh_token(app, client, rp, first):
    """§5.2 invalid_grant: an expired refresh token."""
    age_refresh_token(app, first["refresh_token"], now() - 1)
    before = issued_counts(app)
    token_error(refresh(client, rp, first["refresh_token"]), "invalid_grant")
    assert issued_counts(app) == before


def test_revoked_grant(app, client, rp, first):
    """RFC 7009 §2.1: after revocation the refresh token is invalid_grant."""
    assert (
        client.post(
            "/revoke", data={"token": first["refresh_token"]}, auth=rp.basic_auth
        ).status_code
        == 200
    )
    before = issued_counts(app)
    token_error(refresh(client, rp, first["refresh_token"]), "invalid_grant")
    assert issued_counts(app) == before
    assert introspect(client, rp, first["access_token"]) == {"active": False}


def test_refresh_for_disabled_user(app, client, rp, alice, first):
    """§5.2 invalid_grant: the resource owner's authorization no longer holds."""
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(update(User).where(User.id == alice.id).values(disabled=True))
    before = issued_counts(app)
    token_error(refresh(client, rp, first["refresh_token"]), "invalid_grant")
    assert issued_counts(app) == before


def test_missing_and_unknown_refresh_token(app, client, rp, first):
    """§6 refresh_token is REQUIRED (invalid_request); an unknown one is invalid_grant."""
    before = issued_counts(app)
    body = token_error(
        client.post("/token", data={"grant_type": "refresh_token"}, auth=rp.basic_auth),
        "invalid_request",
    )
    assert body["error_description"] == "Missing 'refresh_token' in request."
    token_error(refresh(client, rp, "not-a-refresh-token"), "invalid_grant")
    token_error(refresh(client, rp, first["access_token"]), "invalid_grant")
    assert issued_counts(app) == before


def test_refreshed_id_token_follows_oidc_core_12_2(app, client, rp, alice, first):
    """OIDC Core §12.2: same iss, sub, aud; auth_time of the original sign-in; no nonce."""
    original = jwt.decode(first["id_token"], options={"verify_signature": False})
    body = refreshed(client, rp, first["refresh_token"])
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    for name in ("iss", "sub", "aud", "auth_time"):
        assert claims[name] == original[name]
    assert claims["sub"] == alice.id
    assert "nonce" not in claims
