"""The whole protocol surface over real HTTP on loopback, driven by Authlib's own client.

Everything the client needs comes from discovery (OIDC Discovery 1.0 §3, RFC 8414 §2);
tokens are checked with PyJWT against the published JWKS with fixed algorithms,
issuer and audience (RFC 9068 §4, OIDC Core §3.1.3.7).
"""

from __future__ import annotations

import base64
import hashlib

import jwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from tests.support.apps import reset_database
from tests.support.factories import (
    DEFAULT_PASSWORD,
    make_client,
    make_public_client,
    make_user,
)
from tests.support.flows import query_of
from tests.support.live import LiveBrowser, free_port, live_server

SCOPE = "openid profile email offline_access"


@pytest.fixture(scope="module")
def server(migrated_database):
    with live_server(migrated_database) as running:
        yield running


@pytest.fixture
def live(server):
    reset_database(server.app)
    return server


@pytest.fixture
def alice(live):
    return make_user(live.app, "alice")


@pytest.fixture
def rp(live):
    return make_client(live.app, "live-rp", scope=SCOPE)


def at_hash(access_token: str, alg: str = "RS256") -> str:
    """OIDC Core §3.1.3.6: left half of the alg's hash (SHA-512 for Ed25519)."""
    hasher = hashlib.sha512 if alg == "EdDSA" else hashlib.sha256
    digest = hasher(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def verify_access_token(live, token: str, audience: str) -> dict:
    """RFC 9068 §4: typ at+jwt, a JWKS key by kid, ES256 only, issuer and audience."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    key = jwt.PyJWKClient(live.endpoint("jwks_uri")).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=live.url,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]},
    )
    assert claims["exp"] - claims["iat"] == live.runtime.settings.access_token_ttl
    return claims


def authlib_client(rp) -> OAuth2Session:
    """Authlib's own client for `rp`: Basic authentication, PKCE S256."""
    return OAuth2Session(
        rp.client_id,
        rp.client_secret,
        scope=SCOPE,
        redirect_uri=rp.redirect_uri,
        code_challenge_method="S256",
    )


def sign_in_and_consent(live, oauth: OAuth2Session, **params) -> tuple[str, str]:
    """Authorization request built by Authlib; the person signs in and approves."""
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(
        live.endpoint("authorization_endpoint"), code_verifier=verifier, **params
    )
    callback = LiveBrowser(live.url, "alice", DEFAULT_PASSWORD).authorize(url)
    query = query_of(callback)
    assert query["state"] == state
    assert query["iss"] == live.url  # RFC 9207 §2
    return callback, verifier


def test_discovery_names_endpoints_on_the_issuer(live):
    """OIDC Discovery §3 / RFC 8414 §2: issuer equals the URL the document is served from."""
    metadata = live.metadata()
    assert metadata["issuer"] == live.url
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert metadata[name].startswith(live.url + "/")
    for name in ("introspection_endpoint", "revocation_endpoint"):
        assert metadata[name].startswith(live.url + "/")
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    jwks = requests.get(metadata["jwks_uri"], timeout=10).json()
    assert {key["alg"] for key in jwks["keys"]} >= {"RS256", "ES256", "EdDSA"}
    assert all("d" not in key and "p" not in key for key in jwks["keys"])


def test_code_flow_pkce_refresh_with_authlib_client(live, rp, alice):
    """RFC 6749 §4.1 + RFC 7636 S256 + OIDC Core §3.1.3.7 ID token + RFC 6749 §6 refresh."""
    oauth = authlib_client(rp)
    nonce = generate_token(16)
    callback, verifier = sign_in_and_consent(live, oauth, nonce=nonce)
    token = oauth.fetch_token(
        live.endpoint("token_endpoint"), authorization_response=callback, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer" and token["refresh_token"]
    assert set(token["scope"].split()) == set(SCOPE.split())

    jwks = jwt.PyJWKClient(live.endpoint("jwks_uri"))
    id_key = jwks.get_signing_key_from_jwt(token["id_token"])
    assert jwt.get_unverified_header(token["id_token"])["alg"] == "RS256"
    id_claims = jwt.decode(
        token["id_token"],
        id_key.key,
        algorithms=["RS256"],
        audience=rp.client_id,
        issuer=live.url,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    assert id_claims["sub"] == alice.id and id_claims["nonce"] == nonce
    assert id_claims["at_hash"] == at_hash(token["access_token"])
    assert "auth_time" in id_claims

    claims = verify_access_token(live, token["access_token"], audience=live.url)
    assert claims["sub"] == alice.id and claims["client_id"] == rp.client_id
    assert set(claims["scope"].split()) == set(SCOPE.split())

    refreshed = oauth.refresh_token(
        live.endpoint("token_endpoint"), refresh_token=token["refresh_token"]
    )
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert refreshed["access_token"] != token["access_token"]
    new_claims = verify_access_token(live, refreshed["access_token"], audience=live.url)
    assert new_claims["sub"] == alice.id and new_claims["jti"] != claims["jti"]
    # OIDC Core §12.2: a refreshed ID token keeps sub and aud.
    refreshed_id = jwt.decode(
        refreshed["id_token"],
        jwks.get_signing_key_from_jwt(refreshed["id_token"]).key,
        algorithms=["RS256"],
        audience=rp.client_id,
        issuer=live.url,
    )
    assert refreshed_id["sub"] == alice.id
    assert refreshed_id["at_hash"] == at_hash(refreshed["access_token"])

    userinfo = oauth.get(live.endpoint("userinfo_endpoint"), timeout=10)
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == alice.id


def test_client_credentials_introspection_and_revocation(live, rp, alice):
    """RFC 6749 §4.4 token; RFC 7662 active answer; RFC 7009 revocation seen by introspection."""
    service = make_client(
        live.app, "live-service", grant_types=["client_credentials"], redirect_uris=[], scope="jobs"
    )
    machine = OAuth2Session(service.client_id, service.client_secret, scope="jobs")
    token = machine.fetch_token(live.endpoint("token_endpoint"), grant_type="client_credentials")
    assert "refresh_token" not in token and "id_token" not in token
    claims = verify_access_token(live, token["access_token"], audience=live.url)
    assert claims["sub"] == service.client_id and claims["scope"] == "jobs"

    introspected = machine.introspect_token(
        live.endpoint("introspection_endpoint"), token=token["access_token"]
    )
    assert introspected.status_code == 200
    body = introspected.json()
    assert body["active"] is True and body["client_id"] == service.client_id
    assert body["jti"] == claims["jti"] and body["scope"] == "jobs"

    revoked = machine.revoke_token(
        live.endpoint("revocation_endpoint"), token=token["access_token"]
    )
    assert revoked.status_code == 200
    after = machine.introspect_token(
        live.endpoint("introspection_endpoint"), token=token["access_token"]
    )
    assert after.json() == {"active": False}


def test_revoking_refresh_token_ends_the_grant_over_http(live, rp, alice):
    """RFC 7009 §2.1: revoking the refresh token also invalidates its access tokens."""
    oauth = authlib_client(rp)
    callback, verifier = sign_in_and_consent(live, oauth)
    token = oauth.fetch_token(
        live.endpoint("token_endpoint"), authorization_response=callback, code_verifier=verifier
    )
    introspect = live.endpoint("introspection_endpoint")
    assert oauth.introspect_token(introspect, token=token["access_token"]).json()["active"]
    response = oauth.revoke_token(
        live.endpoint("revocation_endpoint"),
        token=token["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert response.status_code == 200
    for value in (token["access_token"], token["refresh_token"]):
        assert oauth.introspect_token(introspect, token=value).json() == {"active": False}
    refused = requests.post(
        live.endpoint("token_endpoint"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=rp.basic_auth,
        timeout=10,
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_public_client_on_any_loopback_port(live, alice):
    """RFC 8252 §7.3 loopback redirect on any port; RFC 7636 S256; public client revokes."""
    native = make_public_client(live.app, "live-native", scope=SCOPE)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    oauth = OAuth2Session(
        native.client_id,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
        revocation_endpoint_auth_method="none",
    )
    callback, verifier = sign_in_and_consent(live, oauth)
    assert callback.startswith(redirect_uri + "?")
    token = oauth.fetch_token(
        live.endpoint("token_endpoint"), authorization_response=callback, code_verifier=verifier
    )
    claims = verify_access_token(live, token["access_token"], audience=live.url)
    assert claims["client_id"] == native.client_id
    revoked = oauth.revoke_token(
        live.endpoint("revocation_endpoint"),
        token=token["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert revoked.status_code == 200
    refused = requests.post(
        live.endpoint("token_endpoint"),
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": native.client_id,
        },
        timeout=10,
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_id_token_uses_the_clients_registered_alg(live, alice, alg):
    """OIDC Registration §2 id_token_signed_response_alg; verified against the JWKS."""
    rp = make_client(live.app, f"live-{alg.lower()}", scope=SCOPE, id_token_alg=alg)
    oauth = authlib_client(rp)
    callback, verifier = sign_in_and_consent(live, oauth)
    token = oauth.fetch_token(
        live.endpoint("token_endpoint"), authorization_response=callback, code_verifier=verifier
    )
    assert jwt.get_unverified_header(token["id_token"])["alg"] == alg
    key = jwt.PyJWKClient(live.endpoint("jwks_uri")).get_signing_key_from_jwt(token["id_token"])
    claims = jwt.decode(
        token["id_token"], key.key, algorithms=[alg], audience=rp.client_id, issuer=live.url
    )
    assert claims["sub"] == alice.id
    assert claims["at_hash"] == at_hash(token["access_token"], alg)
    assert alg in live.metadata()["id_token_signing_alg_values_supported"]


def test_pushed_authorization_request_over_http(live, rp, alice):
    """RFC 9126 over loopback: the request Authlib builds is pushed to the endpoint named in
    discovery; the browser carries only the reference through sign-in and consent; the code
    is redeemed with the pushed challenge's verifier."""
    oauth = authlib_client(rp)
    verifier = generate_token(48)
    long_state = generate_token(1500)  # too long to survive as a URL through the sign-in page
    url, _ = oauth.create_authorization_url(
        live.endpoint("authorization_endpoint"), code_verifier=verifier, state=long_state
    )
    pushed = requests.post(
        live.endpoint("pushed_authorization_request_endpoint"),
        data=query_of(url),
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert pushed.status_code == 201, pushed.text
    reference = pushed.json()["request_uri"]
    short = (
        requests.Request(
            "GET",
            live.endpoint("authorization_endpoint"),
            params={"client_id": rp.client_id, "request_uri": reference},
        )
        .prepare()
        .url
    )
    callback = LiveBrowser(live.url, "alice", DEFAULT_PASSWORD).authorize(short)
    assert query_of(callback)["state"] == long_state
    token = oauth.fetch_token(
        live.endpoint("token_endpoint"), authorization_response=callback, code_verifier=verifier
    )
    claims = verify_access_token(live, token["access_token"], audience=live.url)
    assert claims["sub"] == alice.id
