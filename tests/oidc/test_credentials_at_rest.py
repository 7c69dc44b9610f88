"""Client secrets, codes and refresh tokens: 256-bit random values stored only as SHA-256
digests, compared in constant time (DESIGN "Tokens"; django-oauth-toolkit's habit).

RFC 6749 §10.3/§10.4 (tokens and codes kept confidential), RFC 9700 §4.14 (refresh tokens
at rest), RFC 6819 §5.1.4.1.3 (store hashes of secrets, not the secrets).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from authserver import credentials
from authserver.models import AuthorizationCode, Client, RefreshToken
from tests.support.db import rows
from tests.support.factories import make_client, make_user
from tests.support.flows import Pkce, code_params
from tests.support.oauth import redeem


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def bits(value: str) -> int:
    return 8 * len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def test_client_secret_is_256_bits_stored_as_its_digest(app):
    rp = make_client(app, "at-rest-rp")
    [row] = rows(app, Client, Client.client_id == "at-rest-rp")
    assert rp.client_secret and bits(rp.client_secret) >= 256
    assert row.secret_hash == sha256(rp.client_secret)
    assert rp.client_secret not in repr(vars(row))


def test_client_secret_compared_in_constant_time(app, client, monkeypatch):
    """A timing side channel on the comparison would leak the digest byte by byte."""
    rp = make_client(
        app, "at-rest-rp", grant_types=["client_credentials"], scope="", redirect_uris=[]
    )
    compared = []
    original = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(credentials.hmac, "compare_digest", spy)
    response = client.post("/token", data={"grant_type": "client_credentials"}, auth=rp.basic_auth)
    assert response.status_code == 200, response.json
    assert (sha256(rp.client_secret), sha256(rp.client_secret)) in compared


def test_code_and_refresh_token_stored_as_digests(app, client, browser):
    make_user(app, "alice")
    rp = make_client(app, "at-rest-rp")
    browser.login("alice", "correct horse battery staple")
    pkce = Pkce.new()
    code = browser.code_for(
        code_params(rp.client_id, rp.redirect_uri, pkce, scope="openid offline_access")
    )
    [stored_code] = rows(app, AuthorizationCode)
    assert bits(code) >= 256 and stored_code.code_hash == sha256(code)
    assert code not in repr(vars(stored_code))
    tokens = redeem(client, rp, code, code_verifier=pkce.verifier).json
    [stored] = rows(app, RefreshToken)
    assert bits(tokens["refresh_token"]) >= 256
    assert stored.token_hash == sha256(tokens["refresh_token"])
    assert tokens["refresh_token"] not in repr(vars(stored))
