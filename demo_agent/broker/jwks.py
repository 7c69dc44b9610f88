"""The issuer's signing keys, found through discovery and cached (RFC 9068 §4, RFC 8414 §3).

The broker finds the JWKS only through ``{issuer}/.well-known/openid-configuration``
(OIDC Discovery §4), whose ``issuer`` must equal the configured issuer (RFC 8414 §3.3).
Each usable key is parsed once into a :class:`jwt.PyJWK` bound to the single algorithm
its key type implies (RFC 8725 §3.1): P-256 EC keys verify ES256, RSA keys RS256,
Ed25519 keys EdDSA; anything else (``oct`` keys, other curves, a declared ``alg`` that
disagrees, ``use`` other than ``sig``, RSA under 2048 bits) is ignored. An unknown
``kid`` refetches the JWKS at most once per ``refetch_interval`` seconds, so tokens with
random kids cannot make the broker hammer the issuer. Known keys are re-read once they
are ``max_age`` seconds old (default 5 minutes), so a key the issuer withdraws (a
compromised key removed in an emergency) stops verifying here within that bound
instead of at the broker's next restart; if the issuer cannot be reached then, the
keys already loaded stay in use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import jwt
import requests

from .errors import InvalidToken, KeysUnavailable

log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"


def key_algorithm(jwk: dict[str, Any]) -> str | None:
    """The one algorithm a published JWK may verify (RFC 7518 §6, RFC 8037 §2), or None."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    implied = {"EC": "ES256" if crv == "P-256" else None, "RSA": "RS256"}.get(str(kty))
    if kty == "OKP" and crv == "Ed25519":
        implied = "EdDSA"
    if implied is None or jwk.get("alg", implied) != implied or jwk.get("use", "sig") != "sig":
        return None
    return implied


def parse_jwk(jwk: Any) -> tuple[str, jwt.PyJWK] | None:
    """A ``(kid, key)`` pair, or None for a key the broker must not or cannot use."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        return None
    algorithm = key_algorithm(jwk)
    if algorithm is None:
        return None
    try:
        key = jwt.PyJWK(jwk, algorithm=algorithm)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        log.warning("ignoring unparseable JWK kid=%s: %s", jwk["kid"], exc)
        return None
    weak = key.Algorithm.check_key_length(key.key)
    if weak:
        log.warning("ignoring JWK kid=%s: %s", jwk["kid"], weak)
        return None
    return jwk["kid"], key


class JwksCache:
    """Keys by ``kid``; thread-safe, refetched (rate-limited) when a kid is unknown."""

    def __init__(
        self,
        issuer: str,
        session: requests.Session,
        refetch_interval: float,
        timeout: float,
        clock: Callable[[], float],
        max_age: float = 300.0,
    ) -> None:
        self.issuer, self.session, self.timeout = issuer, session, timeout
        self.refetch_interval, self.clock, self.max_age = refetch_interval, clock, max_age
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._loaded_at: float | None = None
        self._jwks_uri: str | None = None
        self._last_attempt: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK:
        """The key for ``kid``. Raises InvalidToken if unknown, KeysUnavailable if never loaded."""
        keys = self._keys
        if keys is not None and kid in keys and not self._stale():
            return keys[kid]
        with self._lock:
            if self._keys is None or kid not in self._keys or self._stale():
                self._refresh_if_allowed()
            if self._keys is None:
                raise KeysUnavailable("the issuer's signing keys are unavailable")
            if kid not in self._keys:
                raise InvalidToken("token signed by an unknown key")
            return self._keys[kid]

    def _stale(self) -> bool:
        return self._loaded_at is not None and self.clock() - self._loaded_at > self.max_age

    def _refresh_if_allowed(self) -> None:
        now = self.clock()
        if self._last_attempt is not None and now - self._last_attempt < self.refetch_interval:
            return
        self._last_attempt = now  # failed attempts count too: no retry storm
        try:
            self._keys = self._fetch_keys()
            self._loaded_at = now
        except (requests.RequestException, ValueError) as exc:
            self._jwks_uri = None
            log.warning("fetching the issuer's JWKS failed: %s", exc)

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        if self._jwks_uri is None:
            meta = self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH)
            if meta.get("issuer") != self.issuer:
                raise ValueError("discovery issuer does not match the configured issuer")
            if not isinstance(meta.get("jwks_uri"), str):
                raise ValueError("discovery document has no jwks_uri")
            self._jwks_uri = meta["jwks_uri"]
        jwks = self._get_json(self._jwks_uri)
        if not isinstance(jwks.get("keys"), list):
            raise ValueError("JWKS has no keys array")
        keys = dict(pair for jwk in jwks["keys"] if (pair := parse_jwk(jwk)) is not None)
        log.info("loaded %d signing keys from %s: %s", len(keys), self._jwks_uri, sorted(keys))
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        response = self.session.get(url, timeout=self.timeout)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return document
