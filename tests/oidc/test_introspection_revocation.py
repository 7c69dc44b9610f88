"""Token introspection (RFC 7662) and revocation (RFC 7009) over HTTP on a live server.

Introspection answers the client the token was issued to and the client registered
for the token's audience (DESIGN.md); everyone else learns only `active: false`
(RFC 7662 §2.2, §4). Revocation of a refresh token ends the grant (RFC 7009 §2.1);
a token that is unknown or another client's gets 200 and changes nothing (§2.2).
"""

from __future__ import annotations

from urllib.parse import urlencode

import jwt
import pytest
import requests
from sqlalchemy import select

from authserver.models import AccessTokenRecord, Grant, RefreshToken
from authserver.models import now as real_now
from authserver.oauth.endpoints import lookup
from tests.support.apps import reset_database
from tests.support.db import issued_counts, rows
from tests.support.factories import (
    DEFAULT_PASSWORD,
    make_client,
    make_public_client,
    make_resource,
    make_user,
)
from tests.support.flows import Pkce, code_params, query_of
from tests.support.live import LiveBrowser, live_server

API = "https://api.example.com"
OTHER_API = "https://other-api.example.com"
SCOPE = "openid profile read offline_access"


@pytest.fixture(scope="module")
def server(migrated_database):
    with live_server(migrated_database) as running:
        yield running


@pytest.fixture
def live(server):
    reset_database(server.app)
    make_user(server.app, "alice")
    return server


@pytest.fixture
def rp(live, api):
    return make_client(live.app, "web-rp", scope=SCOPE)


@pytest.fixture
def other(live, api):
    return make_client(live.app, "other-rp", scope=SCOPE)


@pytest.fixture
def api(live):
    """The API's own client, registered as the resource server's introspecting client."""
    client = make_client(
        live.app, "api-client", grant_types=["client_credentials"], redirect_uris=[], scope=""
    )
    make_resource(live.app, API, scopes=("read", "write"), client_id=client.client_id)
    return client


@pytest.fixture
def other_api(live):
    client = make_client(
        live.app, "other-api-client", grant_types=["client_credentials"], redirect_uris=[], scope=""
    )
    make_resource(live.app, OTHER_API, scopes=("read",), client_id=client.client_id)
    return client


def user_tokens(live, client, **extra) -> dict:
    """Authorization code + PKCE through the browser, then the token endpoint."""
    pkce = Pkce.new()
    params = code_params(client.client_id, client.redirect_uri, pkce, scope=SCOPE, **extra)
    url = f"{live.endpoint('authorization_endpoint')}?{urlencode(params, doseq=True)}"
    code = query_of(LiveBrowser(live.url, "alice", DEFAULT_PASSWORD).authorize(url))["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": pkce.verifier,
    }
    if client.client_secret is None:
        data["client_id"] = client.client_id
    response = requests.post(
        live.endpoint("token_endpoint"),
        data=data,
        auth=client.basic_auth if client.client_secret else None,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def introspect(live, token: str, auth=None, **extra) -> requests.Response:
    return requests.post(
        live.endpoint("introspection_endpoint"),
        data={"token": token, **extra},
        auth=auth,
        timeout=10,
    )


def is_active(live, client, token: str) -> bool:
    response = introspect(live, token, auth=client.basic_auth)
    assert response.status_code == 200
    return bool(response.json()["active"])


def revoke(live, token: str, client, **extra) -> requests.Response:
    data = {"token": token, **extra}
    auth = client.basic_auth if client.client_secret else None
    if client.client_secret is None:
        data["client_id"] = client.client_id
    return requests.post(live.endpoint("revocation_endpoint"), data=data, auth=auth, timeout=10)


def refresh(live, client, refresh_token: str) -> requests.Response:
    return requests.post(
        live.endpoint("token_endpoint"),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=client.basic_auth,
        timeout=10,
    )


def revocation_state(live) -> dict:
    """Everything revocation could change: grants, access token records, refresh tokens."""
    return {
        "grants": [(g.id, g.revoked_at) for g in rows(live.app, Grant)],
        "access": [(a.jti, a.revoked_at) for a in rows(live.app, AccessTokenRecord)],
        "refresh": [(r.token_hash, r.used_at) for r in rows(live.app, RefreshToken)],
    }


# --- RFC 7662 ---------------------------------------------------------------------------


def test_active_access_token_lists_its_claims(live, rp, api):
    """RFC 7662 §2.2: active, scope, client_id, sub, aud, iss, exp, iat, jti, token_type."""
    tokens = user_tokens(live, rp, resource=API)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    response = introspect(live, tokens["access_token"], auth=rp.basic_auth)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["active"] is True and body["token_type"] == "Bearer"
    for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti"):
        assert body[name] == claims[name], name
    assert body["aud"] == API and body["iss"] == live.url and body["client_id"] == rp.client_id
    assert body["scope"] == "read"


def test_only_issuing_client_and_audience_resource_server_see_the_token(
    live, rp, other, api, other_api
):
    """RFC 7662 §4: a client that is neither the token's client nor its audience's
    resource server learns nothing beyond `active: false`."""
    tokens = user_tokens(live, rp, resource=API)
    assert introspect(live, tokens["access_token"], auth=api.basic_auth).json()["active"] is True
    for stranger in (other, other_api):
        response = introspect(live, tokens["access_token"], auth=stranger.basic_auth)
        assert response.status_code == 200 and response.json() == {"active": False}


def test_unauthenticated_introspection_is_refused(live, rp, api):
    """RFC 7662 §2.1: the caller must authenticate; RFC 6749 §5.2 invalid_client, 401."""
    tokens = user_tokens(live, rp, resource=API)
    before = issued_counts(live.app)
    attempts = [
        introspect(live, tokens["access_token"]),
        introspect(live, tokens["access_token"], auth=(rp.client_id, "wrong-secret")),
        introspect(live, tokens["access_token"], client_id=rp.client_id),
    ]
    for response in attempts:
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
        assert "active" not in response.json()
    assert "WWW-Authenticate" in attempts[1].headers
    assert issued_counts(live.app) == before


def test_public_client_cannot_introspect(live, rp):
    """Introspection is for confidential clients (discovery lists only secret methods)."""
    native = make_public_client(live.app, "native", scope=SCOPE)
    tokens = user_tokens(live, native)
    response = introspect(live, tokens["access_token"], client_id=native.client_id)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_expired_tokens_are_inactive(live, rp, api, monkeypatch):
    """RFC 7662 §2.2: an expired token is not active (access and refresh alike)."""
    tokens = user_tokens(live, rp, resource=API)
    assert is_active(live, rp, tokens["access_token"])
    monkeypatch.setattr(lookup, "now", lambda: real_now() + 3600)
    assert introspect(live, tokens["access_token"], auth=rp.basic_auth).json() == {"active": False}
    monkeypatch.setattr(lookup, "now", lambda: real_now() + 31 * 24 * 3600)
    assert introspect(live, tokens["refresh_token"], auth=rp.basic_auth).json() == {"active": False}


def test_refresh_token_is_introspectable_by_its_client_only(live, rp, other, api):
    """RFC 7662 §2.2 for refresh tokens: the issuing client sees it, the API does not."""
    tokens = user_tokens(live, rp, resource=API)
    body = introspect(live, tokens["refresh_token"], auth=rp.basic_auth).json()
    assert body["active"] is True and body["client_id"] == rp.client_id
    assert body["token_type"] == "refresh_token"
    assert {"scope", "sub", "exp", "iat"} <= set(body)
    for stranger in (api, other):
        assert introspect(live, tokens["refresh_token"], auth=stranger.basic_auth).json() == {
            "active": False
        }


def test_introspection_hint_does_not_limit_the_search(live, rp):
    """RFC 7662 §2.1: a wrong token_type_hint still finds the token."""
    tokens = user_tokens(live, rp)
    wrong_hints = [
        (tokens["access_token"], "refresh_token"),
        (tokens["refresh_token"], "access_token"),
    ]
    for token, hint in wrong_hints:
        response = introspect(live, token, auth=rp.basic_auth, token_type_hint=hint)
        assert response.json()["active"] is True


def test_unknown_and_malformed_tokens_are_inactive(live, rp):
    """RFC 7662 §2.2: anything not a live token of ours is `active: false`."""
    for token in ("unknown", "a.b.c", "x" * 9000):
        response = introspect(live, token, auth=rp.basic_auth)
        assert response.status_code == 200 and response.json() == {"active": False}


# --- RFC 7009 ---------------------------------------------------------------------------


def test_revoking_refresh_token_revokes_the_grant(live, rp):
    """RFC 7009 §2.1: revoking a refresh token invalidates its access tokens too."""
    first = user_tokens(live, rp)
    second = refresh(live, rp, first["refresh_token"]).json()
    response = revoke(live, second["refresh_token"], rp, token_type_hint="refresh_token")
    assert response.status_code == 200
    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert not is_active(live, rp, token)
    refused = refresh(live, rp, second["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    (grant,) = rows(live.app, Grant)
    assert grant.revoked_reason == "revoked_by_client"


def test_revoking_access_token_revokes_only_it(live, rp):
    """RFC 7009 §2.1: an access token can be revoked alone; the grant lives on."""
    tokens = user_tokens(live, rp)
    sibling = refresh(live, rp, tokens["refresh_token"]).json()
    assert revoke(live, tokens["access_token"], rp).status_code == 200
    assert not is_active(live, rp, tokens["access_token"])
    assert is_active(live, rp, sibling["access_token"])
    assert is_active(live, rp, sibling["refresh_token"])
    assert refresh(live, rp, sibling["refresh_token"]).status_code == 200
    (grant,) = rows(live.app, Grant)
    assert grant.revoked_at is None


def test_revoking_another_clients_token_changes_nothing(live, rp, other):
    """RFC 7009 §2.1: the server verifies the token was issued to the requesting client;
    §2.2: the answer is 200 either way."""
    tokens = user_tokens(live, rp)
    before = revocation_state(live)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert revoke(live, token, other).status_code == 200
    assert revocation_state(live) == before
    assert is_active(live, rp, tokens["access_token"])
    assert is_active(live, rp, tokens["refresh_token"])


def test_revoking_unknown_token_is_200_and_changes_nothing(live, rp):
    """RFC 7009 §2.2: invalid tokens do not cause an error response."""
    user_tokens(live, rp)
    before = revocation_state(live)
    for token in ("unknown-token", "a.b.c"):
        response = revoke(live, token, rp)
        assert response.status_code == 200
    assert revocation_state(live) == before


def test_revocation_hint_is_honoured_but_not_limiting(live, rp):
    """RFC 7009 §2.1: a wrong or unknown token_type_hint still revokes the token."""
    access_with_wrong_hint = user_tokens(live, rp)
    assert (
        revoke(
            live, access_with_wrong_hint["access_token"], rp, token_type_hint="refresh_token"
        ).status_code
        == 200
    )
    assert not is_active(live, rp, access_with_wrong_hint["access_token"])
    assert is_active(live, rp, access_with_wrong_hint["refresh_token"])

    refresh_with_wrong_hint = user_tokens(live, rp)
    assert (
        revoke(
            live, refresh_with_wrong_hint["refresh_token"], rp, token_type_hint="access_token"
        ).status_code
        == 200
    )
    assert not is_active(live, rp, refresh_with_wrong_hint["refresh_token"])

    odd_hint = user_tokens(live, rp)
    assert revoke(live, odd_hint["access_token"], rp, token_type_hint="id_token").status_code in (
        200,
    )
    assert not is_active(live, rp, odd_hint["access_token"])


def test_revocation_requires_client_authentication(live, rp):
    """RFC 7009 §2.1: a confidential client authenticates; else 401 invalid_client."""
    tokens = user_tokens(live, rp)
    before = revocation_state(live)
    attempts = [
        requests.post(
            live.endpoint("revocation_endpoint"),
            data={"token": tokens["refresh_token"]},
            timeout=10,
        ),
        requests.post(
            live.endpoint("revocation_endpoint"),
            data={"token": tokens["refresh_token"]},
            auth=(rp.client_id, "wrong-secret"),
            timeout=10,
        ),
        requests.post(
            live.endpoint("revocation_endpoint"),
            data={"token": tokens["refresh_token"], "client_id": rp.client_id},
            timeout=10,
        ),
    ]
    for response in attempts:
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
    assert revocation_state(live) == before


def test_public_client_revokes_its_own_token_with_client_id(live, rp):
    """RFC 7009 §2.1 / RFC 8252 §8.5: a public client identifies itself by client_id."""
    native = make_public_client(live.app, "native", scope=SCOPE)
    tokens = user_tokens(live, native)
    rp_tokens = user_tokens(live, rp)
    before = revocation_state(live)
    assert revoke(live, rp_tokens["refresh_token"], native).status_code == 200
    assert revocation_state(live) == before
    assert revoke(live, tokens["refresh_token"], native).status_code == 200
    with live.runtime.session_factory() as session:
        grant = session.scalar(select(Grant).where(Grant.client_id == native.client_id))
        assert grant.revoked_at is not None
    assert is_active(live, rp, rp_tokens["refresh_token"])
