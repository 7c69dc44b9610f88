"""RFC 9068 §4 validation of JWT access tokens for the broker (a resource server).

``TokenVerifier.verify`` performs the RFC 9068 §4 checks in order: the JWS compact form
(RFC 7515 §7.1) with canonical base64url segments and no ``crit`` extensions; ``typ``
``at+jwt`` or ``application/at+jwt`` (case-insensitive); ``alg`` from the fixed list
ES256, RS256, EdDSA and equal to the one its key implies (RFC 8725 §3.1); the signature
with a key from the issuer's JWKS (:mod:`.jwks`); only then the claims: required ones
present and typed (§2.2), ``exp``/``iat``/``nbf`` within a 30 s leeway, ``iss`` equal
to the configured issuer, ``aud`` containing the broker's resource identifier, and a
well-formed ``act`` (RFC 8693 §4.1) and ``authorization_details`` (RFC 9396 §9.1).
Every failure raises :class:`InvalidToken` (RFC 6750 §3.1).

PyJWT supplies the keys (:class:`jwt.PyJWK`) and the signature algorithms; its
``jwt.decode`` is not on the request path because PyJWT 2.15 checks base64url segments
character by character in Python, so header plus decode cost about 1.4x this module's
path (``bench/broker_verify.py``), against a budget well under 200 µs per ES256 token.
The claims are parsed only after the signature verifies. Tokens are never logged, only
their :func:`fingerprint`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from .errors import InvalidToken
from .jwks import JwksCache

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"ES256", "RS256", "EdDSA"})
ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §2.1, §4
REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope")  # §2.2
STRING_CLAIMS = ("sub", "client_id", "jti")
# A token approved through RFC 9396 authorization_details (CIBA trades) may carry no
# scope meaningful here: "scope" is then present but empty.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_ACTOR_DEPTH = 8
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def fingerprint(token: str) -> str:
    """A short SHA-256 fingerprint to correlate a token in logs without revealing it."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


def actor_chain(act: Any) -> list[str]:
    """Flatten an RFC 8693 §4.1 ``act`` claim into actor subjects, current actor first.

    Raises :class:`InvalidToken` when a level is not an object with a string ``sub``.
    """
    chain: list[str] = []
    while act is not None:
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str):
            raise InvalidToken("act claim is malformed")
        if len(chain) == MAX_ACTOR_DEPTH:
            raise InvalidToken("act claim is nested too deeply")
        chain.append(act["sub"])
        act = act.get("act")
    return chain


class TokenVerifier:
    """Verify RFC 9068 access tokens from one issuer for one audience.

    ``verify(token)`` returns the claims or raises :class:`InvalidToken`; it raises
    :class:`KeysUnavailable` when the issuer's keys could never be fetched.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        session: requests.Session | None = None,
        refetch_interval: float = 60.0,
        *,
        timeout: float = 5.0,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self._own_session = session is None
        self.session = session or requests.Session()
        self.keys = JwksCache(issuer, self.session, refetch_interval, timeout, clock)

    def verify(self, token: str) -> dict[str, Any]:
        """Return the verified claims of ``token`` (RFC 9068 §4), or raise."""
        try:
            return self._verify(token)
        except InvalidToken as exc:
            log.info("rejected access token fp=%s: %s", fingerprint(token), exc.description)
            raise

    def close(self) -> None:
        """Close the HTTP session if this verifier created it."""
        if self._own_session:
            self.session.close()

    def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("token is not a well-formed JWT")
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = _json_object(_b64decode(header_b64))
        _check_header(header)
        key = self.keys.key(header["kid"])
        if header["alg"] != key.algorithm_name:
            raise InvalidToken("token alg does not match its signing key")
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        if not key.Algorithm.verify(signing_input, key.key, _b64decode(signature_b64)):
            raise InvalidToken("token signature is invalid")
        claims = _json_object(_b64decode(payload_b64))
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        _check_claim_types(claims)
        now = time.time()
        if claims["exp"] <= now - self.leeway:
            raise InvalidToken("token expired")
        if claims["iat"] > now + self.leeway:
            raise InvalidToken("token issued in the future")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > now + self.leeway):
            raise InvalidToken("token is not yet valid")
        if claims["iss"] != self.issuer:
            raise InvalidToken("token issuer is not trusted")
        audiences = [claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"]
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise InvalidToken("token audience does not include this resource")


def _b64decode(segment: str) -> bytes:
    """Strict, canonical unpadded base64url (RFC 7515 §2)."""
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise InvalidToken("token is not a well-formed JWT")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:
        raise InvalidToken("token is not a well-formed JWT") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode("ascii"):
        raise InvalidToken("token is not a well-formed JWT")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)  # NaN, Infinity: RFC 8259 §6


def _json_object(data: bytes) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes (RFC 7519 §7.2 steps 3-4 and 8-10)."""
    try:
        value = _JSON.decode(data.decode("utf-8"))
    except (ValueError, RecursionError):
        raise InvalidToken("token is not a well-formed JWT") from None
    if not isinstance(value, dict):
        raise InvalidToken("token is not a well-formed JWT")
    return value


def _check_header(header: dict[str, Any]) -> None:
    """RFC 9068 §4 steps on the JOSE header: alg allow-list, typ, kid; no crit."""
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise InvalidToken("token alg is not accepted")
    if str(header.get("typ", "")).lower() not in ACCEPTED_TYP:
        raise InvalidToken("token typ is not at+jwt")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise InvalidToken("token header has no kid")
    if "crit" in header:  # RFC 7515 §4.1.11: we understand no extensions
        raise InvalidToken("token uses unsupported critical header parameters")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_claim_types(claims: dict[str, Any]) -> None:
    """RFC 9068 §2.2 required claims with their JSON types."""
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise InvalidToken(f"token lacks the {name} claim")
    for name in STRING_CLAIMS:
        if not isinstance(claims[name], str) or not claims[name]:
            raise InvalidToken(f"token {name} claim must be a non-empty string")
    if not isinstance(claims["scope"], str):
        raise InvalidToken("token scope claim must be a string")
    for name in ("exp", "iat"):
        if not _is_number(claims[name]):
            raise InvalidToken(f"token {name} claim must be a number")
    details = claims.get("authorization_details")
    if details is not None and not isinstance(details, list):
        raise InvalidToken("authorization_details claim must be an array")  # RFC 9396 §9.1
    actor_chain(claims.get("act"))
