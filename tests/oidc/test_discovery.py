"""Server metadata and keys: OIDC Discovery 1.0 §3-§4, RFC 8414 §2-§3, RFC 7517, RFC 9207.

Both well-known documents describe the same server; every URL they list answers;
the JWKS publishes public signing keys only.
"""

from __future__ import annotations

import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

from tests.support.apps import build_test_app
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_resource, make_user
from tests.support.oauth import tokens_for

OIDC = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


@pytest.fixture
def metadata(client):
    response = client.get(OIDC)
    assert response.status_code == 200
    return response.get_json()


def test_both_documents_are_identical(client):
    """RFC 8414 §3 / OIDC Discovery §4: the same server described at both locations."""
    oidc, oauth = client.get(OIDC), client.get(RFC8414)
    assert oidc.status_code == oauth.status_code == 200
    assert oidc.mimetype == oauth.mimetype == "application/json"
    assert oidc.get_json() == oauth.get_json()


def test_issuer_is_the_configured_one_without_trailing_slash(metadata, runtime):
    """OIDC Discovery §4.3 / RFC 8414 §3.3: `issuer` is identical to the issuer the tokens
    carry; DESIGN: no trailing slash, so `iss` comparisons never differ by a slash."""
    issuer = metadata["issuer"]
    assert issuer == runtime.settings.issuer
    assert not issuer.endswith("/")
    for name, value in metadata.items():
        if name.endswith(("_endpoint", "_uri")):
            assert value.startswith(issuer + "/"), (name, value)


def test_metadata_matches_issued_tokens(app, client, browser, metadata):
    """OIDC Core §3.1.3.7: the ID token's `iss` equals the discovered issuer and its `kid`
    is in the discovered JWKS, so a relying party can validate it from discovery alone."""
    make_user(app, "alice")
    rp = make_client(app, "web-rp")
    browser.login("alice", DEFAULT_PASSWORD)
    tokens = tokens_for(browser, client, rp)
    keys = {key["kid"]: key for key in client.get("/jwks.json").get_json()["keys"]}
    for token in (tokens["id_token"], tokens["access_token"]):
        header = jwt.get_unverified_header(token)
        assert header["kid"] in keys and keys[header["kid"]]["alg"] == header["alg"]
        key = jwt.PyJWK(keys[header["kid"]])
        claims = jwt.decode(token, key, algorithms=[header["alg"]], options={"verify_aud": False})
        assert claims["iss"] == metadata["issuer"]


def _listed_paths(metadata: dict) -> dict[str, str]:
    issuer = metadata["issuer"]
    return {
        name: value[len(issuer) :]
        for name, value in metadata.items()
        if name.endswith("_endpoint") or name == "jwks_uri"
    }


def test_every_listed_endpoint_exists(client, metadata):
    """RFC 8414 §2: clients find everything from the metadata, so each URL it lists must be
    served: no 404 on GET or POST, no 5xx, and at least one of the two methods allowed."""
    paths = _listed_paths(metadata)
    assert {
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
    } <= set(paths)
    for name, path in paths.items():
        answers = [client.get(path).status_code, client.post(path).status_code]
        assert 404 not in answers, (name, path, answers)
        assert all(status < 500 for status in answers), (name, path, answers)
        assert any(status != 405 for status in answers), (name, path, answers)


def test_registration_endpoint_listed_only_when_served(migrated_database, metadata):
    """RFC 8414 §2: `registration_endpoint` appears only when dynamic registration is on,
    and then only if it is served like every other listed URL."""
    assert "registration_endpoint" not in metadata
    enabled = build_test_app(migrated_database, registration_enabled=True)
    try:
        client = enabled.test_client()
        document = client.get(OIDC).get_json()
        if "registration_endpoint" in document:
            path = _listed_paths(document)["registration_endpoint"]
            assert client.post(path, json={}).status_code not in (404, 405)
    finally:
        enabled.extensions["authserver"].engine.dispose()


def test_pkce_and_iss_parameter(metadata):
    """RFC 8414 §2 / RFC 7636 §4.2: only S256 is advertised (plain is refused); RFC 9207 §3:
    authorization responses carry `iss` and the metadata says so."""
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_advertises_only_what_is_supported(app, client):
    """OIDC Discovery §3: the values describe this server exactly: the code flow only,
    query responses only, no request objects; registered resources' scopes are listed
    (built from configuration, so it never drifts)."""
    make_resource(app, "https://api.example.com", ("orders:read",))
    metadata = client.get(OIDC).get_json()
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["response_modes_supported"] == ["query"]
    assert metadata["request_parameter_supported"] is False
    assert metadata["request_uri_parameter_supported"] is False
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        metadata["grant_types_supported"]
    )
    assert "password" not in metadata["grant_types_supported"]
    assert "implicit" not in metadata["grant_types_supported"]
    assert {"openid", "orders:read"} <= set(metadata["scopes_supported"])
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert "none" not in metadata["id_token_signing_alg_values_supported"]


def test_jwks_publishes_public_signing_keys_only(client, metadata):
    """RFC 7517 §4-§6 / OIDC Discovery §3 jwks_uri: every key has `kid`, `alg` and
    use=sig, `kid`s are unique, and no private member (d, p, q, dp, dq, qi, or a symmetric k)
    is ever published."""
    response = client.get("/jwks.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    keys = response.get_json()["keys"]
    assert keys
    assert len({key["kid"] for key in keys}) == len(keys)
    signing_algs = set(metadata["id_token_signing_alg_values_supported"]) | {"ES256"}
    for key in keys:
        assert key["kid"] and key["alg"] in signing_algs, key
        assert key["use"] == "sig", key
        assert key["kty"] in ("RSA", "EC", "OKP"), key
        assert not PRIVATE_MEMBERS & set(key), key
        # RFC 7517 §4.3: `use` and `key_ops` SHOULD NOT be used together.
        assert "key_ops" not in key, key


def test_documents_are_public_and_cacheable(client):
    """Discovery documents and keys are public: readable cross-origin (browser-based RPs)
    and cacheable for a short time."""
    for path in (OIDC, RFC8414, "/jwks.json"):
        response = client.get(path)
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "public" in response.headers["Cache-Control"]
        assert "max-age=" in response.headers["Cache-Control"]


def test_new_keys_sign_only_once_every_cached_jwks_without_them_expired(client):
    """A rotation's keys are published at once and sign after one key reload (every
    worker publishes them) plus the JWKS's max-age (every copy cached before has expired):
    a relying party that does not refetch on an unknown kid never meets one."""
    from authserver import keys

    cached = int(client.get("/jwks.json").headers["Cache-Control"].split("max-age=")[1])
    assert keys.PUBLISH_BEFORE_SIGNING_SECONDS >= keys.RELOAD_INTERVAL_SECONDS + cached


@pytest.mark.parametrize("path", [OIDC, RFC8414])
def test_validates_with_authlib_metadata_classes(migrated_database, path):
    """Authlib's validators for OIDC Discovery §3 and RFC 8414 §2 accept the documents (on an
    https issuer: both specs require https, so the loopback dev issuer cannot pass)."""
    secure = build_test_app(migrated_database, issuer="https://auth.example.com")
    try:
        document = secure.test_client().get(path).get_json()
        assert document["issuer"] == "https://auth.example.com"
        OpenIDProviderMetadata(document).validate()
        AuthorizationServerMetadata(document).validate()
    finally:
        secure.extensions["authserver"].engine.dispose()
