"""Fixtures for the broker tests: a stub issuer on loopback and a broker app bound to it.

The stub issuer is a tiny WSGI app served by ``werkzeug.serving.make_server`` in a
thread. It publishes discovery and a JWKS (an ES256 and an RS256 key by default),
counts the requests it answers, and mints RFC 9068 access tokens with any claims or
headers, including ones signed by keys it never published. Test modules import what
they use from here explicitly (no ``pytest_plugins``). Set ``BROKER_TEST_DATABASE_URL``
(e.g. ``postgresql+psycopg://...``) to run the broker suites against another database.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from demo_agent.broker import create_app
from demo_agent.broker.models import Base, Position, make_engine

BROKER_AUDIENCE = "http://127.0.0.1:8001"
DROP = object()  # a claim override that removes the claim
BUY_NET = {"side": "buy", "symbol": "NET", "quantity": 10, "limit_price": 120.0}


@dataclass(frozen=True)
class SigningKey:
    """A private key, its algorithm, and its public JWK (with ``kid``)."""

    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    def public_pem(self) -> bytes:
        """The public key as PEM, the classic HS256 key-confusion secret."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


_GENERATORS: dict[str, tuple[Callable[[], Any], type[jwt.algorithms.Algorithm]]] = {
    "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), jwt.algorithms.ECAlgorithm),
    "RS256": (
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        jwt.algorithms.RSAAlgorithm,
    ),
    "EdDSA": (ed25519.Ed25519PrivateKey.generate, jwt.algorithms.OKPAlgorithm),
}


@functools.cache
def signing_key(kid: str, alg: str = "ES256") -> SigningKey:
    """A key per ``(kid, alg)``, generated once per test session."""
    generate, algorithm = _GENERATORS[alg]
    private = generate()
    public_jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, alg, private, {**public_jwk, "kid": kid, "alg": alg, "use": "sig"})


class StubIssuer:
    """An authorization server stand-in: discovery, JWKS and a token mint."""

    def __init__(self) -> None:
        self.keys = {k.kid: k for k in (signing_key("es-1"), signing_key("rs-1", "RS256"))}
        self.published = list(self.keys)
        self.extra_jwks: list[dict[str, Any]] = []  # raw JWKs published as they are
        self.hits: Counter[str] = Counter()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> StubIssuer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ["PATH_INFO"]
        self.hits[path] += 1
        if path == "/.well-known/openid-configuration":
            document: Any = {"issuer": self.url, "jwks_uri": self.url + "/jwks.json"}
        elif path == "/jwks.json":
            keys = [self.keys[kid].jwk for kid in self.published] + self.extra_jwks
            document = {"keys": keys}
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "not_found"}']
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(document).encode()]

    @property
    def jwks_fetches(self) -> int:
        """How many times the JWKS was fetched."""
        return self.hits["/jwks.json"]

    def publish(self, key: SigningKey) -> None:
        """Add ``key`` to the JWKS (key rotation)."""
        self.keys[key.kid] = key
        self.published.append(key.kid)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid RFC 9068 claims for the broker; ``DROP`` removes a claim."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": "alice",
            "aud": BROKER_AUDIENCE,
            "client_id": "demo-agent",
            "scope": "openid portfolio:read",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not DROP}

    def mint(
        self, key: SigningKey | None = None, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """An access token signed by ``key`` (default ES256 ``es-1``, published or not)."""
        key = key or self.keys["es-1"]
        header = {"typ": "at+jwt", "kid": key.kid, **(headers or {})}
        return jwt.encode(self.claims(**claims), key.private, algorithm=key.alg, headers=header)

    @staticmethod
    def decode(token: str) -> dict[str, Any]:
        """The claims of a token this stub minted (no verification: test bookkeeping)."""
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return claims


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A hand-made JWS: HMAC-SHA256 with ``secret``, or an empty signature when None."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def bearer(token: str) -> dict[str, str]:
    """An ``Authorization: Bearer`` header."""
    return {"Authorization": f"Bearer {token}"}


def trade(**fields: Any) -> dict[str, Any]:
    """An RFC 9396 ``trade`` entry; defaults: buy 10 NET at most 120.00 USD."""
    entry = {"type": "trade", "side": "buy", "symbol": "NET", "quantity": 10, "limit_price": 120.0}
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not DROP}


def order_token(issuer: StubIssuer, *entries: dict[str, Any], **claims: Any) -> str:
    """A CIBA-style token carrying exactly ``entries`` as authorization_details."""
    return issuer.mint(authorization_details=list(entries), scope="openid", **claims)


def post_order(client: FlaskClient, token: str, body: Any) -> TestResponse:
    """POST /orders with a JSON body and a bearer token."""
    return client.post("/orders", json=body, headers=bearer(token))


def rows(app: Flask, model: type[Base]) -> list[Any]:
    """All rows of ``model`` in the broker's database."""
    with app.extensions["broker"].ledger.transaction() as session:
        return list(session.scalars(select(model)).all())


def holdings(app: Flask) -> dict[str, int]:
    """Non-zero positions by symbol."""
    return {p.symbol: p.quantity for p in rows(app, Position) if p.quantity}


@pytest.fixture
def stub_issuer() -> Iterator[StubIssuer]:
    """A running stub issuer on a free loopback port."""
    with StubIssuer() as issuer:
        yield issuer


def make_broker(issuer: StubIssuer, database_url: str, **config: Any) -> Flask:
    """A broker app trusting ``issuer``; JWKS refetch unthrottled unless configured."""
    settings = {
        "BROKER_ISSUER": issuer.url,
        "BROKER_AUDIENCE": BROKER_AUDIENCE,
        "BROKER_DATABASE_URL": database_url,
        "BROKER_JWKS_REFETCH_INTERVAL": 0,
        "TESTING": True,
    }
    return create_app({**settings, **config})


def fresh_database(tmp_path: Path) -> str:
    """A fresh SQLite file, or ``BROKER_TEST_DATABASE_URL`` (e.g. PostgreSQL) emptied."""
    url = os.environ.get("BROKER_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path}/broker.db"
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def broker_app(stub_issuer: StubIssuer, tmp_path: Path) -> Iterator[Flask]:
    """The broker on a fresh database, trusting the stub issuer."""
    app = make_broker(stub_issuer, fresh_database(tmp_path))
    yield app
    app.extensions["broker"].close()


@pytest.fixture
def broker_client(broker_app: Flask) -> FlaskClient:
    """A Flask test client for the broker."""
    return broker_app.test_client()
