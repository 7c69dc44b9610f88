"""Benchmark: broker access-token verification (ES256, RFC 9068) with cached keys.

Run from the repository root: ``.venv/bin/python -m bench.broker_verify``. It builds an
in-process issuer (discovery and JWKS served by a stand-in HTTP session, no sockets),
warms the key cache once, then times ``TokenVerifier.verify`` over several rounds and
prints JSON. ``pyjwt_decode_us_per_verification`` times the plain PyJWT path
(``get_unverified_header`` + ``jwt.decode`` with the same cached key) for comparison.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from demo_agent.broker.tokens import TokenVerifier

ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "http://127.0.0.1:8001"
ROUNDS = 5
ITERATIONS = 2000


class _Response:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def raise_for_status(self) -> None:
        return None

    def json(self) -> dict[str, Any]:
        return self.document


class InProcessIssuer:
    """Answers the verifier's discovery and JWKS requests from memory; counts them."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**public, "kid": "bench-1", "alg": "ES256", "use": "sig"}
        self.requests = 0

    def get(self, url: str, timeout: float) -> _Response:
        self.requests += 1
        if url.endswith("/.well-known/openid-configuration"):
            return _Response({"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks.json"})
        return _Response({"keys": [self.jwk]})

    def close(self) -> None:
        return None

    def mint(self) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": AUDIENCE,
            "client_id": "demo-agent",
            "scope": "openid portfolio:read",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "act": {"sub": "trading-agent"},
        }
        headers = {"typ": "at+jwt", "kid": "bench-1"}
        return jwt.encode(claims, self.private, algorithm="ES256", headers=headers)


def time_per_call(function: Any, iterations: int) -> list[float]:
    """Seconds per call for each of ROUNDS rounds."""
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(iterations):
            function()
        rounds.append((time.perf_counter() - start) / iterations)
    return rounds


def main() -> None:
    issuer = InProcessIssuer()
    verifier = TokenVerifier(ISSUER, AUDIENCE, session=issuer)  # type: ignore[arg-type]
    token = issuer.mint()
    verifier.verify(token)
    rounds = time_per_call(lambda: verifier.verify(token), ITERATIONS)
    key = verifier.keys.key("bench-1")

    def pyjwt_path() -> None:
        jwt.get_unverified_header(token)
        jwt.decode(token, key, ["ES256"], audience=AUDIENCE, issuer=ISSUER, leeway=30)

    reference = time_per_call(pyjwt_path, ITERATIONS // 2)
    median = statistics.median(rounds)
    result = {
        "algorithm": "ES256",
        "verifications_per_second": round(1 / median),
        "us_per_verification": round(median * 1e6, 1),
        "best_round_us_per_verification": round(min(rounds) * 1e6, 1),
        "pyjwt_decode_us_per_verification": round(statistics.median(reference) * 1e6, 1),
        "rounds": ROUNDS,
        "iterations_per_round": ITERATIONS,
        "issuer_requests": issuer.requests,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
