"""RFC 6750 bearer-token errors on the broker's HTTP surface (and no stack traces)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from demo_agent.broker.models import Read
from tests.demo import broker_fixtures as fixtures
from tests.demo.broker_fixtures import StubIssuer, bearer, forge, make_broker, rows

stub_issuer = fixtures.stub_issuer
broker_app = fixtures.broker_app
broker_client = fixtures.broker_client


def assert_invalid_token(response: TestResponse, description: str) -> None:
    """401 invalid_token with the same description in the challenge and the body."""
    assert response.status_code == 401
    assert response.json == {"error": "invalid_token", "error_description": description}
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="broker", error="invalid_token"')
    assert f'error_description="{description}"' in challenge


def test_missing_token(broker_client: FlaskClient) -> None:
    """RFC 6750 §3.1: no authentication information → 401 and a challenge with no error code."""
    for headers in ({}, {"Authorization": "Basic YWxpY2U6cHc="}):
        response = broker_client.get("/portfolio", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="broker"'
        assert response.json["error"] == "unauthorized"
        assert response.json["error_description"]


def test_malformed_authorization_header(broker_client: FlaskClient) -> None:
    """RFC 6750 §2.1, §3.1: a Bearer header without one b64token is invalid_request (400)."""
    for value in ("Bearer", "Bearer ", "Bearer a b"):
        response = broker_client.get("/portfolio", headers={"Authorization": value})
        assert response.status_code == 400
        assert response.json["error"] == "invalid_request"
        assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


def test_token_in_query_refused(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 6750 §2.3, §5.3: access tokens in page URLs are refused."""
    response = broker_client.get(f"/portfolio?access_token={stub_issuer.mint()}")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_expired_token(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 6750 §3.1: an expired token → 401 invalid_token with error_description."""
    now = int(time.time())
    token = stub_issuer.mint(iat=now - 900, exp=now - 300)
    assert_invalid_token(broker_client.get("/portfolio", headers=bearer(token)), "token expired")


def test_wrong_issuer(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4: a token from another issuer (even signed by a known key) → 401."""
    token = stub_issuer.mint(iss="http://127.0.0.1:9999")
    response = broker_client.get("/portfolio", headers=bearer(token))
    assert_invalid_token(response, "token issuer is not trusted")


def test_wrong_audience(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4, RFC 8707: a token minted for another resource is refused here."""
    token = stub_issuer.mint(aud="http://127.0.0.1:8002")
    response = broker_client.get("/portfolio", headers=bearer(token))
    assert_invalid_token(response, "token audience does not include this resource")


def test_insufficient_scope(broker_app: Flask, stub_issuer: StubIssuer) -> None:
    """RFC 6750 §3.1: a valid token without portfolio:read → 403 insufficient_scope, scope named."""
    client = broker_app.test_client()
    for path in ("/portfolio", "/orders"):
        response = client.get(path, headers=bearer(stub_issuer.mint(scope="openid trade")))
        assert response.status_code == 403
        assert response.json["error"] == "insufficient_scope"
        assert "portfolio:read" in response.json["error_description"]
        challenge = response.headers["WWW-Authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert challenge.endswith('scope="portfolio:read"')
    assert rows(broker_app, Read) == []


def test_scope_is_a_space_separated_list(
    broker_client: FlaskClient, stub_issuer: StubIssuer
) -> None:
    """RFC 6749 §3.3: scope tokens are whole words; a prefix does not match."""
    token = stub_issuer.mint(scope="portfolio:readonly portfolio")
    assert broker_client.get("/portfolio", headers=bearer(token)).status_code == 403


def test_typ_not_at_jwt(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 9068 §4: an ID token or other JWT (typ JWT) is not an access token."""
    token = stub_issuer.mint(headers={"typ": "JWT"})
    response = broker_client.get("/portfolio", headers=bearer(token))
    assert_invalid_token(response, "token typ is not at+jwt")


def test_alg_none_and_hs256_forgeries(broker_client: FlaskClient, stub_issuer: StubIssuer) -> None:
    """RFC 8725 §2.1, §3.1: unsigned and HMAC-with-public-key forgeries → 401."""
    claims = stub_issuer.claims()
    none = forge({"alg": "none", "typ": "at+jwt", "kid": "es-1"}, claims, None)
    pem = stub_issuer.keys["rs-1"].public_pem()
    hs256 = forge({"alg": "HS256", "typ": "at+jwt", "kid": "rs-1"}, claims, pem)
    for token in (none, hs256):
        response = broker_client.get("/portfolio", headers=bearer(token))
        assert_invalid_token(response, "token alg is not accepted")


def test_issuer_keys_unavailable(tmp_path: Path) -> None:
    """STYLE "Errors": when the JWKS cannot be fetched, clients see a generic server_error."""
    with StubIssuer() as issuer:
        pass  # started and stopped: nothing listens on its port any more
    app = make_broker(issuer, f"sqlite:///{tmp_path}/b.db", BROKER_HTTP_TIMEOUT=0.5)
    try:
        response = app.test_client().get("/portfolio", headers=bearer(issuer.mint()))
    finally:
        app.extensions["broker"].close()
    assert response.status_code == 503
    assert response.json["error"] == "server_error"


def test_unexpected_error_is_generic(
    broker_app: Flask,
    stub_issuer: StubIssuer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STYLE "Errors": a 5xx says server_error; the detail goes only to the log."""

    def explode(_claims: object) -> None:
        raise RuntimeError("database exploded: secret detail")

    monkeypatch.setattr(broker_app.extensions["broker"].ledger, "portfolio", explode)
    token = stub_issuer.mint()
    with caplog.at_level(logging.ERROR):
        response = broker_app.test_client().get("/portfolio", headers=bearer(token))
    assert response.status_code == 500
    assert response.json == {"error": "server_error", "error_description": "internal error"}
    assert "secret detail" not in response.get_data(as_text=True)
    assert "secret detail" in caplog.text
    assert token not in caplog.text


def test_unknown_route_and_method(broker_client: FlaskClient) -> None:
    """Errors are JSON everywhere, including routing errors; a 405 says which methods the
    resource allows (RFC 9110 §15.5.6: the server MUST send `Allow`)."""
    response = broker_client.get("/nope")
    assert response.status_code == 404 and response.json["error"] == "not_found"
    response = broker_client.delete("/portfolio")
    assert response.status_code == 405 and response.json["error"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def test_authenticated_responses_not_cached(
    broker_client: FlaskClient, stub_issuer: StubIssuer
) -> None:
    """RFC 6750 §5.3 / RFC 9111: responses to bearer requests carry Cache-Control: no-store."""
    response = broker_client.get("/portfolio", headers=bearer(stub_issuer.mint()))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
