"""Verifying a `subject_token` or `actor_token` this server issued (RFC 8693 §2.1).

Every failure is the same `UnusableToken`; the grant turns it into `invalid_request`
as RFC 8693 §2.2.2 requires ("if either the subject_token or actor_token are
invalid for any reason").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...models import Grant, User, now
from ...tokens import InvalidOwnToken, TokenMinter
from ..endpoints.lookup import FoundToken, find_access_tokens, find_refresh_token
from ..scopes import scope_list

ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a token-type URN)
REFRESH_TOKEN = "urn:ietf:params:oauth:token-type:refresh_token"  # noqa: S105 (a token-type URN)
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 (a token-type URN)
SUBJECT_TOKEN_TYPES = (ACCESS_TOKEN, REFRESH_TOKEN, ID_TOKEN)
MAX_TOKEN_LENGTH = 8192


class UnusableToken(Exception):
    """The presented token is unknown, expired, revoked, foreign or of the wrong type."""

    position = 0  # which of the tokens read together (`read_presented_tokens`)


class ReusedRefreshToken(UnusableToken):
    """A rotated-out refresh token presented again by its client (RFC 9700 §4.14.2)."""

    def __init__(self, grant: Grant) -> None:
        super().__init__("refresh token already used")
        self.grant = grant


@dataclass
class PresentedToken:
    subject: str
    client_id: str
    scopes: list[str]
    grant_id: str | None = None
    act: dict[str, Any] | None = None
    may_act: dict[str, Any] | None = None
    auth_time: int | None = None
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def expires_at(self) -> int | None:
        """The token's `exp` (access, refresh and ID tokens read here all have one)."""
        expires = self.claims.get("exp")
        return expires if isinstance(expires, int) else None


def _from_access_token(found: FoundToken | None) -> PresentedToken:
    if found is None or not found.active:
        raise UnusableToken("access token is not active")
    claims = found.claims
    return PresentedToken(
        subject=str(claims["sub"]),
        client_id=found.client_id,
        scopes=scope_list(claims.get("scope")),
        grant_id=found.grant_id,
        act=claims.get("act"),
        may_act=claims.get("may_act"),
        auth_time=claims.get("auth_time"),
        claims=claims,
    )


def _from_refresh_token(session: Session, value: str, requester: str) -> PresentedToken:
    found = find_refresh_token(session, value)
    # A retired token is evidence of theft wherever it shows up, not only at the refresh
    # grant: the caller revokes the family. As there, only when its own client presents it.
    if found is not None and found.client_id == requester and found.grant is not None:
        if found.refresh_row is not None and found.refresh_row.used_at is not None:
            raise ReusedRefreshToken(found.grant)
    # A refresh token is a credential of the client it was issued to (RFC 9700 §4.14.2).
    if found is None or not found.active or found.client_id != requester or found.grant is None:
        raise UnusableToken("refresh token is not active for this client")
    grant: Grant = found.grant
    return PresentedToken(
        subject=str(grant.user_id),
        client_id=found.client_id,
        scopes=scope_list(found.claims.get("scope")),
        grant_id=grant.id,
        auth_time=grant.auth_time,
        claims=found.claims,
    )


def _live_grant_of(session: Session, claims: dict[str, Any], client_id: str) -> Grant | None:
    """The unrevoked grant the ID token was issued from: same user, client and sign-in.

    An ID token has no record of its own; its `auth_time` names the sign-in, and every
    grant remembers its sign-in's `auth_time`. Tying the exchange to that grant means
    revoking it (RFC 7009, refresh reuse, a replayed code) also ends the ID token as a
    subject, and ends the tokens exchanged from it.
    """
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int):
        return None
    return session.scalar(
        select(Grant)
        .where(
            Grant.user_id == str(claims["sub"]),
            Grant.client_id == client_id,
            Grant.auth_time == auth_time,
            Grant.revoked_at.is_(None),
            Grant.expires_at > now(),
        )
        .order_by(Grant.created_at.desc())
        .limit(1)
    )


def _from_id_token(
    session: Session, minter: TokenMinter, value: str, requester: str
) -> PresentedToken:
    """An ID token proves who the user is; its scopes are those of the grant it came from.

    Only its audience may present it (OIDC Core §2: `aud` is the client it is for). ID
    tokens travel through front ends and logs far more than access tokens do; accepting
    another client's as a delegation credential would make every such copy one.
    """
    try:
        claims = minter.verify(value, typ="jwt")
    except InvalidOwnToken:
        raise UnusableToken("not a valid ID token from this server") from None
    audience = claims.get("aud")
    client_id = audience if isinstance(audience, str) else None
    if client_id is None or claims.get("exp", 0) <= now():
        raise UnusableToken("ID token without a single audience, or expired")
    if client_id != requester:
        raise UnusableToken("ID token issued to another client")
    grant = _live_grant_of(session, claims, client_id)
    if grant is None:
        raise UnusableToken("the ID token's grant is revoked or expired")
    user = session.get(User, grant.user_id)
    if user is None or not user.is_active:
        raise UnusableToken("the ID token's user is disabled")
    return PresentedToken(
        subject=str(claims["sub"]),
        client_id=client_id,
        scopes=scope_list(grant.scope),
        grant_id=grant.id,
        auth_time=claims.get("auth_time"),
        claims=claims,
    )


def _read_one(
    session: Session,
    minter: TokenMinter,
    value: str,
    token_type: str,
    requester: str,
    access_token: FoundToken | None,
) -> PresentedToken:
    if not value or len(value) > MAX_TOKEN_LENGTH:
        raise UnusableToken("missing or oversized token")
    if token_type == ACCESS_TOKEN:
        return _from_access_token(access_token)
    if token_type == REFRESH_TOKEN:
        return _from_refresh_token(session, value, requester)
    if token_type == ID_TOKEN:
        return _from_id_token(session, minter, value, requester)
    raise UnusableToken("unsupported token type")


def read_presented_tokens(
    session: Session, minter: TokenMinter, presented: Sequence[tuple[str, str]], requester: str
) -> list[PresentedToken]:
    """Each (value, token type), read in order; the access tokens' records with one SELECT.

    The first that cannot be used raises, with its index as `position`, so the caller can
    name the parameter; those after it are not judged (a reused refresh token among them
    would otherwise revoke its family for a request already refused).
    """
    access_values = [value if kind == ACCESS_TOKEN else "" for value, kind in presented]
    records = find_access_tokens(session, minter, access_values)
    tokens = []
    for position, ((value, kind), record) in enumerate(zip(presented, records, strict=True)):
        try:
            tokens.append(_read_one(session, minter, value, kind, requester, record))
        except UnusableToken as unusable:
            unusable.position = position
            raise
    return tokens
