"""Minting and checking this server's tokens.

Access tokens are JWTs per RFC 9068 (`typ: at+jwt`, ES256) with a server-side
record keyed by `jti`, so revocation and introspection work. ID tokens follow
OIDC Core §2 and are signed with the client's `id_token_signed_response_alg`.
Refresh tokens are opaque 256-bit values stored as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt
from authlib.oidc.core.grants.util import create_half_hash
from sqlalchemy import insert
from sqlalchemy.orm import Session

from .credentials import digest, new_secret_value
from .keys import ACCESS_TOKEN_ALG, SigningKeys
from .models import AccessTokenRecord, Grant, RefreshToken, now
from .settings import Settings

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 (a media type, RFC 9068 §2.1)
CLOCK_SKEW_SECONDS = 30
# Tokens whose signature check a process remembers (`VerifiedTokens`), and the longest
# remembered (longer ones, rare, are checked every time). An entry is the token's SHA-256
# and its claims as JSON: measured, about 0.6 KB for a delegated access token and at
# most about 2 KB at this length, so at most about 8 MB per process.
VERIFIED_TOKENS_KEPT = 4096
VERIFIED_TOKEN_MAX_LENGTH = 2048
# Built once: SQLAlchemy memoises a statement's cache key, so reuse skips recomputing it.
INSERT_ACCESS_TOKEN = insert(AccessTokenRecord.__table__)


@dataclass
class AccessTokenSpec:
    """Everything an access token says; `grant_id` ties it to revocation."""

    client_id: str
    subject: str
    audience: str | list[str]
    scope: str
    ttl: int
    grant_id: str | None = None
    auth_time: int | None = None
    act: dict[str, Any] | None = None
    authorization_details: list[dict[str, Any]] | None = None
    extra_claims: dict[str, Any] = field(default_factory=dict)
    not_after: int | None = None  # an `exp` the token may not pass, whatever `ttl` says


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    claims: dict[str, Any]
    expires_in: int


class InvalidOwnToken(Exception):
    """A token that this server did not issue, or that is malformed or expired."""


@dataclass(frozen=True)
class VerifiedToken:
    kid: str
    public_key: Any  # the key object the signature was checked with
    typ: str  # the header's `typ`, lower-cased
    expires: Any  # the `exp` claim
    # The claims as compact JSON: each use decodes a copy of its own, and an entry costs
    # about its size in bytes, whatever the claims' shape.
    payload: str

    @classmethod
    def of(cls, kid: str, public_key: Any, typ: str, claims: dict[str, Any]) -> VerifiedToken:
        payload = json.dumps(claims, separators=(",", ":"))
        return cls(kid, public_key, typ, claims.get("exp"), payload)

    def claims(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.payload)
        return decoded


def _memo_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _expired(expires: Any) -> bool:
    """PyJWT's rule: expired once `exp` is at or before now minus the leeway. Only
    ever applied to claims PyJWT has verified, whose `exp` this server wrote (an int)."""
    return not (isinstance(expires, int) and expires > now() - CLOCK_SKEW_SECONDS)


class VerifiedTokens:
    """The tokens this process has verified, so one presented again skips the signature.

    Why: an agent presents the same tokens exchange after exchange (its own as
    `actor_token`, the user's as `subject_token`), and an ES256 check plus PyJWT's
    parsing is most of what reading one costs. A hit skips only what cannot change for
    the same bytes under the same key: signature, algorithm, issuer, required claims.
    Whether that key is still published, the `typ` and the expiry are checked at every
    use (`TokenMinter.verify`), and revocation stays the callers' database read. The
    same design as a JWT cache in an API gateway (Envoy's `jwt_cache_config`).

    Keyed by the token's SHA-256, so the process keeps no bearer token beyond its
    request. Only tokens signed by this server's published keys and not yet expired
    enter, and the least recently used leaves when it is full: junk never enters, and
    evicting others takes many genuine tokens (a few encodings of one token verify
    alike and count apart), which only costs the signature checks saved.
    """

    def __init__(self, size: int = VERIFIED_TOKENS_KEPT) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, VerifiedToken] = OrderedDict()

    def get(self, token: str) -> VerifiedToken | None:
        if len(token) > VERIFIED_TOKEN_MAX_LENGTH:
            return None
        key = _memo_key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, token: str, entry: VerifiedToken) -> None:
        if len(token) > VERIFIED_TOKEN_MAX_LENGTH or _expired(entry.expires):
            return
        key = _memo_key(token)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TokenMinter:
    def __init__(self, settings: Settings, signing_keys: SigningKeys) -> None:
        self.settings = settings
        self.signing_keys = signing_keys
        self.verified = VerifiedTokens()

    def access_token(self, session: Session, spec: AccessTokenSpec) -> IssuedAccessToken:
        """A signed access token, its record inserted in `session`'s transaction."""
        issued, record = self.mint(spec)
        # A Core INSERT rather than `session.add`: the unit of work cost more than the rest
        # of a grant's database work. `flush` first (a no-op when nothing is pending) so a
        # new Grant this token points at is written before it; no code reads the record
        # back as an object from the session it was minted in (lookups query the table).
        session.flush()
        session.connection().execute(INSERT_ACCESS_TOKEN, record)
        return issued

    def mint(self, spec: AccessTokenSpec) -> tuple[IssuedAccessToken, dict[str, Any]]:
        """A signed access token and the values of its record, which the caller must insert
        (`INSERT_ACCESS_TOKEN`) and commit before handing the token out."""
        issued_at = now()
        expires = issued_at + spec.ttl
        if spec.not_after is not None:
            expires = min(expires, spec.not_after)
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": spec.subject,
            "aud": spec.audience,
            "client_id": spec.client_id,
            "scope": spec.scope,
            "iat": issued_at,
            "exp": expires,
            "jti": secrets.token_urlsafe(18),
        }
        if spec.auth_time is not None:
            claims["auth_time"] = spec.auth_time
        if spec.act:
            claims["act"] = spec.act
        if spec.authorization_details:
            claims["authorization_details"] = spec.authorization_details
        claims.update(spec.extra_claims)
        token = self._sign(claims, ACCESS_TOKEN_ALG, ACCESS_TOKEN_TYP)
        record = {
            "jti": claims["jti"],
            "grant_id": spec.grant_id,
            "client_id": spec.client_id,
            "expires_at": claims["exp"],
        }
        return IssuedAccessToken(token, claims, expires - issued_at), record

    def id_token(
        self,
        *,
        client_id: str,
        alg: str,
        subject: str,
        auth_time: int | None,
        nonce: str | None,
        access_token: str | None,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        issued_at = now()
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": subject,
            "aud": client_id,
            "iat": issued_at,
            "exp": issued_at + self.settings.id_token_ttl,
        }
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            claims["at_hash"] = create_half_hash(access_token, alg).decode("ascii")
        claims.update(extra_claims or {})
        return self._sign(claims, alg, "JWT")

    def _sign(self, claims: dict[str, Any], alg: str, typ: str) -> str:
        key = self.signing_keys.signing_key(alg)
        headers = {"kid": key.kid, "typ": typ}
        return jwt.encode(claims, key.private_key, algorithm=alg, headers=headers)

    def verify(
        self, token: str, *, typ: str | None = None, verify_exp: bool = True
    ) -> dict[str, Any]:
        """Verify a JWT this server issued: known `kid`, its fixed alg, issuer, expiry."""
        known = self.verified.get(token)
        if known is None or not self._still_published(known):
            known = self._check_signature(token, verify_exp)
            self.verified.put(token, known)
        if typ is not None and known.typ != typ:
            raise InvalidOwnToken("wrong token type")
        if verify_exp and _expired(known.expires):
            raise InvalidOwnToken("invalid or expired token")
        return known.claims()

    def _still_published(self, known: VerifiedToken) -> bool:
        key = self.signing_keys.verification_key(known.kid)
        return key is not None and key.public_key is known.public_key

    def _check_signature(self, token: str, verify_exp: bool) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidOwnToken("malformed token") from None
        kid = header.get("kid")
        key = self.signing_keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidOwnToken("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.alg],
                issuer=self.settings.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={
                    "verify_aud": False,
                    "verify_exp": verify_exp,
                    "require": ["iss", "sub", "iat", "exp"],
                },
            )
        except jwt.PyJWTError:
            raise InvalidOwnToken("invalid or expired token") from None
        typ = str(header.get("typ", "")).lower()
        return VerifiedToken.of(kid, key.public_key, typ, claims)


def issue_refresh_token(
    session: Session, grant: Grant, client_id: str, scope: str, ttl: int
) -> str:
    """A new member of the grant's refresh-token family; returns the plaintext once."""
    value = new_secret_value()
    expires_at = min(now() + ttl, grant.expires_at)
    session.add(
        RefreshToken(
            token_hash=digest(value),
            grant_id=grant.id,
            client_id=client_id,
            scope=scope,
            expires_at=expires_at,
        )
    )
    return value
