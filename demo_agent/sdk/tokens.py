"""Token responses held in memory, and ID token validation.

`TokenSet` is one token response (RFC 6749 §5.1, RFC 8693 §2.2.1, CIBA Core §10.1.1)
with an absolute expiry; its repr masks every credential. `verify_id_token` applies
OIDC Core §3.1.3.7: signature with a key from the issuer's JWKS and a fixed list of
algorithms, `iss`, `aud` (and `azp` with several audiences), `exp`, `iat`, `nonce`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import jwt

from .discovery import Discovery
from .errors import SignInError
from .masking import mask

ID_TOKEN_ALGORITHMS = ("RS256", "ES256", "EdDSA")
LEEWAY_SECONDS = 30
EXPIRY_SKEW_SECONDS = 30


@dataclass(repr=False)
class TokenSet:
    """One token response; `expires_at` is epoch seconds (None: the server did not say)."""

    access_token: str
    token_type: str = "Bearer"
    expires_at: float | None = None
    scope: str = ""
    refresh_token: str | None = None
    id_token: str | None = None
    issued_token_type: str | None = None
    authorization_details: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_response(cls, body: dict[str, Any], now: float) -> TokenSet:
        """Build from a token endpoint answer received at `now`."""
        expires_in = body.get("expires_in")
        known = {
            "access_token",
            "token_type",
            "expires_in",
            "scope",
            "refresh_token",
            "id_token",
            "issued_token_type",
            "authorization_details",
        }
        return cls(
            access_token=str(body["access_token"]),
            token_type=str(body.get("token_type", "Bearer")),
            expires_at=now + float(expires_in) if isinstance(expires_in, int | float) else None,
            scope=str(body.get("scope", "")),
            refresh_token=body.get("refresh_token"),
            id_token=body.get("id_token"),
            issued_token_type=body.get("issued_token_type"),
            authorization_details=body.get("authorization_details"),
            extra={k: v for k, v in body.items() if k not in known},
        )

    def expired(self, now: float, skew: float = EXPIRY_SKEW_SECONDS) -> bool:
        """True when the access token expires within `skew` seconds."""
        return self.expires_at is not None and now >= self.expires_at - skew

    def secrets(self) -> tuple[str | None, ...]:
        return (self.access_token, self.refresh_token, self.id_token)

    def __repr__(self) -> str:
        parts = [f"access_token={mask(self.access_token)}", f"scope={self.scope!r}"]
        if self.refresh_token:
            parts.append(f"refresh_token={mask(self.refresh_token)}")
        if self.id_token:
            parts.append(f"id_token={mask(self.id_token)}")
        if self.issued_token_type:
            parts.append(f"issued_token_type={self.issued_token_type!r}")
        parts.append(f"expires_at={self.expires_at!r}")
        return f"TokenSet({', '.join(parts)})"


def peek_claims(token: str) -> dict[str, Any]:
    """A JWT's payload WITHOUT verification: for display only, never for decisions."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def verify_id_token(
    token: str, discovery: Discovery, client_id: str, nonce: str | None, now: float
) -> dict[str, Any]:
    """OIDC Core §3.1.3.7 checks; raise `SignInError` on any failure."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SignInError("the ID token is not a JWT") from None
    alg = header.get("alg")
    if alg not in ID_TOKEN_ALGORITHMS or not isinstance(header.get("kid"), str):
        raise SignInError("the ID token uses an unexpected algorithm or names no key")
    key = discovery.key(header["kid"])
    if key.algorithm_name != alg:
        raise SignInError("the ID token's algorithm does not match its key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=client_id,
            issuer=discovery.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.PyJWTError as error:
        raise SignInError(f"the ID token is invalid: {type(error).__name__}") from None
    _check_claims(claims, client_id, nonce, now)
    return claims


def _check_claims(claims: dict[str, Any], client_id: str, nonce: str | None, now: float) -> None:
    """§3.1.3.7 items 4-5 (azp), 9 (exp against our clock), 11 (nonce)."""
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SignInError("the ID token has several audiences but azp is not this client")
    if float(claims["exp"]) + LEEWAY_SECONDS < now:
        raise SignInError("the ID token has expired")
    if nonce is not None and claims.get("nonce") != nonce:
        raise SignInError("the ID token's nonce does not match the authorization request")
