"""RFC 9068 §4 access-token validation by the broker's TokenVerifier, against a stub issuer."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from demo_agent.broker.errors import InvalidToken, KeysUnavailable
from demo_agent.broker.tokens import TokenVerifier, fingerprint
from tests.demo import broker_fixtures as fixtures
from tests.demo.broker_fixtures import BROKER_AUDIENCE, DROP, StubIssuer, forge, signing_key

stub_issuer = fixtures.stub_issuer


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(stub_issuer: StubIssuer, clock: Clock) -> Iterator[TokenVerifier]:
    verifier = TokenVerifier(stub_issuer.url, BROKER_AUDIENCE, refetch_interval=60, clock=clock)
    yield verifier
    verifier.close()


def rejected(verifier: TokenVerifier, token: str) -> str:
    """Assert the token is refused with invalid_token; return the description."""
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.error == "invalid_token" and caught.value.status == 401
    return caught.value.description


def test_valid_es256_token(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4: a token from the issuer, for our audience, signed ES256, is accepted."""
    claims = verifier.verify(stub_issuer.mint(sub="bob"))
    assert claims["sub"] == "bob" and claims["client_id"] == "demo-agent"


def test_valid_rs256_and_eddsa_tokens(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4 / RFC 8037: RS256 and EdDSA keys from the JWKS verify their tokens."""
    ed_key = signing_key("ed-1", "EdDSA")
    stub_issuer.publish(ed_key)
    assert verifier.verify(stub_issuer.mint(stub_issuer.keys["rs-1"]))["sub"] == "alice"
    assert verifier.verify(stub_issuer.mint(ed_key))["sub"] == "alice"


def test_expired_token(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4: the current time must be before exp (30 s leeway)."""
    now = int(time.time())
    assert rejected(verifier, stub_issuer.mint(iat=now - 600, exp=now - 60)) == "token expired"
    assert verifier.verify(stub_issuer.mint(iat=now - 600, exp=now - 10))


def test_token_issued_in_the_future(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4 / RFC 7519 §4.1.6: an iat beyond the leeway is refused."""
    now = int(time.time())
    token = stub_issuer.mint(iat=now + 120, exp=now + 600)
    assert rejected(verifier, token) == "token issued in the future"


def test_wrong_issuer(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4: iss must exactly match the configured issuer."""
    for iss in ("https://evil.example", stub_issuer.url + "/"):
        assert rejected(verifier, stub_issuer.mint(iss=iss)) == "token issuer is not trusted"


def test_wrong_audience(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4: aud must contain the broker's resource identifier; a list may."""
    other = "http://127.0.0.1:8002"
    reason = rejected(verifier, stub_issuer.mint(aud=other))
    assert reason == "token audience does not include this resource"
    assert verifier.verify(stub_issuer.mint(aud=[other, BROKER_AUDIENCE]))


@pytest.mark.parametrize("typ", [DROP, "JWT", "jwt", "at+jwt2", "application/jwt"])
def test_typ_must_be_at_jwt(verifier: TokenVerifier, stub_issuer: StubIssuer, typ: Any) -> None:
    """RFC 9068 §4: resource servers MUST verify that typ is at+jwt or application/at+jwt."""
    headers = {"typ": None} if typ is DROP else {"typ": typ}
    assert rejected(verifier, stub_issuer.mint(headers=headers)) == "token typ is not at+jwt"


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_typ_accepted_forms(verifier: TokenVerifier, stub_issuer: StubIssuer, typ: str) -> None:
    """RFC 9068 §2.1 / RFC 7515 §4.1.9: typ compares case-insensitively, with media type."""
    assert verifier.verify(stub_issuer.mint(headers={"typ": typ}))


def test_alg_none_forgery(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 8725 §3.1: an unsigned token (alg none) is never accepted."""
    token = forge({"alg": "none", "typ": "at+jwt", "kid": "es-1"}, stub_issuer.claims(), None)
    assert rejected(verifier, token) == "token alg is not accepted"


@pytest.mark.parametrize("kid", ["es-1", "rs-1"])
def test_hs256_key_confusion(verifier: TokenVerifier, stub_issuer: StubIssuer, kid: str) -> None:
    """RFC 8725 §2.1: HS256 keyed with the issuer's public key PEM is refused."""
    secret = stub_issuer.keys[kid].public_pem()
    token = forge({"alg": "HS256", "typ": "at+jwt", "kid": kid}, stub_issuer.claims(), secret)
    assert rejected(verifier, token) == "token alg is not accepted"


def test_published_hmac_key_is_ignored(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 8725 §3.1: symmetric and mislabeled keys in the JWKS are never used."""
    stub_issuer.extra_jwks.append({"kty": "oct", "k": "c2VjcmV0", "kid": "sym", "alg": "HS256"})
    impostor = signing_key("es-mislabeled")
    stub_issuer.extra_jwks.append({**impostor.jwk, "alg": "RS256"})
    hs = forge({"alg": "HS256", "typ": "at+jwt", "kid": "sym"}, stub_issuer.claims(), b"secret")
    assert rejected(verifier, hs) == "token alg is not accepted"
    assert rejected(verifier, stub_issuer.mint(impostor)) == "token signed by an unknown key"


def test_alg_must_match_the_key(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 8725 §3.1: the key decides the algorithm, not the token header."""
    token = stub_issuer.mint(stub_issuer.keys["rs-1"], headers={"kid": "es-1"})
    assert rejected(verifier, token) == "token alg does not match its signing key"


def test_key_never_published(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4: the signature must verify with a key the issuer published."""
    impostor = signing_key("es-impostor")
    same_kid = type(impostor)("es-1", "ES256", impostor.private, impostor.jwk)
    assert rejected(verifier, stub_issuer.mint(same_kid)) == "token signature is invalid"
    assert rejected(verifier, stub_issuer.mint(impostor)) == "token signed by an unknown key"


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "client_id", "scope", "iat", "exp", "jti"])
def test_required_claims(verifier: TokenVerifier, stub_issuer: StubIssuer, claim: str) -> None:
    """RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti (and scope here) are required."""
    assert rejected(verifier, stub_issuer.mint(**{claim: DROP})) == f"token lacks the {claim} claim"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": str(int(time.time()) + 300)},
        {"iat": True},
        {"sub": 42},
        {"scope": ["portfolio:read"]},
        {"act": {"client": "x"}},
        {"act": {"sub": "a", "act": "b"}},
        {"authorization_details": {"type": "trade"}},
    ],
)
def test_claim_types(verifier: TokenVerifier, stub_issuer: StubIssuer, claims: dict) -> None:
    """RFC 9068 §2.2, RFC 8693 §4.1, RFC 9396 §9.1: claims of the wrong type are refused."""
    rejected(verifier, stub_issuer.mint(**claims))


def test_malformed_tokens(verifier: TokenVerifier) -> None:
    """RFC 6750 §3.1: a malformed token is invalid_token."""
    for token in ("abc", "a.b.c", "....", "eyJ0eXAiOiJhdCtqd3QifQ.e30.x"):
        rejected(verifier, token)


def test_keys_cached(verifier: TokenVerifier, stub_issuer: StubIssuer) -> None:
    """Keys are fetched once through discovery and reused for every verification."""
    for _ in range(20):
        verifier.verify(stub_issuer.mint())
    assert stub_issuer.hits["/.well-known/openid-configuration"] == 1
    assert stub_issuer.jwks_fetches == 1


def test_rotated_key_refetched_once(
    verifier: TokenVerifier,
    stub_issuer: StubIssuer,
    clock: Clock,
) -> None:
    """An unknown kid triggers exactly one JWKS refetch; the newly published key is accepted."""
    verifier.verify(stub_issuer.mint())
    rotated = signing_key("es-2")
    stub_issuer.publish(rotated)
    clock.now += 61
    for _ in range(5):
        assert verifier.verify(stub_issuer.mint(rotated))["sub"] == "alice"
    assert stub_issuer.jwks_fetches == 2
    assert stub_issuer.hits["/.well-known/openid-configuration"] == 1


def test_refetch_rate_limited(
    verifier: TokenVerifier,
    stub_issuer: StubIssuer,
    clock: Clock,
) -> None:
    """Random kids cannot hammer the issuer: at most one refetch per interval."""
    verifier.verify(stub_issuer.mint())
    stranger = signing_key("es-stranger")
    for _ in range(25):
        headers = {"kid": uuid.uuid4().hex}
        assert rejected(verifier, stub_issuer.mint(stranger, headers=headers))
    assert stub_issuer.jwks_fetches == 1
    clock.now += 59
    rejected(verifier, stub_issuer.mint(stranger, headers={"kid": "late"}))
    assert stub_issuer.jwks_fetches == 1
    clock.now += 1
    for _ in range(5):
        rejected(verifier, stub_issuer.mint(stranger, headers={"kid": uuid.uuid4().hex}))
    assert stub_issuer.jwks_fetches == 2


def test_issuer_unreachable() -> None:
    """Unfetchable keys are a server-side failure (503 server_error), not a bad token."""
    verifier = TokenVerifier("http://127.0.0.1:9", BROKER_AUDIENCE, timeout=0.5)
    token = forge({"alg": "ES256", "typ": "at+jwt", "kid": "k"}, {}, b"x")
    try:
        with pytest.raises(KeysUnavailable):
            verifier.verify(token)
    finally:
        verifier.close()


def test_token_never_logged(
    verifier: TokenVerifier,
    stub_issuer: StubIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """STYLE "Errors": never log a token; a short SHA-256 fingerprint correlates it."""
    caplog.set_level(logging.DEBUG)
    token = stub_issuer.mint(aud="http://elsewhere")
    rejected(verifier, token)
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text
    assert fingerprint(token) in caplog.text


def test_withdrawn_key_stops_verifying_within_max_age(
    verifier: TokenVerifier,
    stub_issuer: StubIssuer,
    clock: Clock,
) -> None:
    """A key the issuer removes from its JWKS (say, compromised) is not trusted until the
    broker restarts: known keys are re-read once 5 minutes old, and a token signed by the
    withdrawn key is then rejected while the remaining key still verifies."""
    withdrawn = stub_issuer.keys["es-1"]
    token = stub_issuer.mint(withdrawn)
    assert verifier.verify(token)["sub"] == "alice"
    stub_issuer.published.remove("es-1")
    clock.now += 299
    assert verifier.verify(token)["sub"] == "alice"  # within the bound: still cached
    assert stub_issuer.jwks_fetches == 1
    clock.now += 2
    assert rejected(verifier, token)
    assert stub_issuer.jwks_fetches == 2
    assert verifier.verify(stub_issuer.mint(stub_issuer.keys["rs-1"]))["sub"] == "alice"
