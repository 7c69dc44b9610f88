"""Finding a presented token: one of our JWT access tokens, or a refresh token by digest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from ...credentials import digest
from ...models import AccessTokenRecord, Grant, RefreshToken, ResourceServer, User, now
from ...tokens import ACCESS_TOKEN_TYP, InvalidOwnToken, TokenMinter

MAX_TOKEN_LENGTH = 8192


@dataclass
class FoundToken:
    kind: str  # "access_token" or "refresh_token"
    client_id: str
    active: bool
    claims: dict[str, Any]
    grant_id: str | None = None  # None: a client's own token (client credentials)
    access_jti: str | None = None  # access tokens: the record's key, for revocation
    refresh_row: RefreshToken | None = None
    grant: Grant | None = None  # refresh tokens: the grant, loaded


def _grant_live(session: Session, grant: Grant | None) -> bool:
    """No grant (a client's own token), or an unrevoked, unexpired grant of an active user:
    a user disabled since signing in ends every token of theirs, as at the refresh grant."""
    if grant is None:
        return True
    if grant.revoked_at is not None or grant.expires_at <= now():
        return False
    user = session.get(User, grant.user_id)
    return user is not None and user.is_active


@lru_cache(maxsize=8)
def _access_records_and_grants(count: int) -> Select[Any]:
    """Records and their grants' state in one statement, without loading ORM objects: a token
    exchange reads two access tokens (subject and actor) and fetches both rows at once. One
    bound parameter per token rather than an expanding IN, which SQLAlchemy re-renders on
    every execution: there is one statement per count, and a request presents one or two.
    The grant's user comes along: a disabled user's tokens are not active."""
    return (
        select(
            AccessTokenRecord.jti,
            AccessTokenRecord.client_id,
            AccessTokenRecord.grant_id,
            AccessTokenRecord.revoked_at,
            AccessTokenRecord.expires_at,
            Grant.revoked_at.label("grant_revoked_at"),
            Grant.expires_at.label("grant_expires_at"),
            User.disabled.label("user_disabled"),
        )
        .outerjoin(Grant, Grant.id == AccessTokenRecord.grant_id)
        .outerjoin(User, User.id == Grant.user_id)
        .where(AccessTokenRecord.jti.in_([bindparam(f"jti_{n}") for n in range(count)]))
    )


def _our_access_token_claims(minter: TokenMinter, value: str) -> dict[str, Any] | None:
    if not value or len(value) > MAX_TOKEN_LENGTH:
        return None
    try:
        # Expiry is the record's (below), which revocation and introspection also read.
        return minter.verify(value, typ=ACCESS_TOKEN_TYP, verify_exp=False)
    except InvalidOwnToken:
        return None


def _found_access_token(claims: dict[str, Any], row: Any, moment: int) -> FoundToken:
    # grant_id is a cascading foreign key: a record never outlives its grant.
    # A grant whose user row is missing counts as disabled: fail closed.
    grant_live = row.grant_id is None or (
        row.grant_revoked_at is None
        and (row.grant_expires_at or 0) > moment
        and row.user_disabled is not None
        and not row.user_disabled
    )
    active = row.revoked_at is None and row.expires_at > moment and grant_live
    return FoundToken(
        "access_token", row.client_id, active, claims, grant_id=row.grant_id, access_jti=row.jti
    )


def find_access_tokens(
    session: Session, minter: TokenMinter, values: Sequence[str]
) -> list[FoundToken | None]:
    """Each of `values` that is one of our access tokens with a record, in order; one SELECT."""
    verified = [_our_access_token_claims(minter, value) for value in values]
    jtis = {str(claims.get("jti", "")) for claims in verified if claims is not None}
    rows = {}
    if jtis:
        statement = _access_records_and_grants(len(jtis))
        bound = {f"jti_{n}": jti for n, jti in enumerate(sorted(jtis))}
        result = session.connection().execute(statement, bound)
        rows = {row.jti: row for row in result}
    moment = now()
    found: list[FoundToken | None] = []
    for claims in verified:
        row = rows.get(str(claims.get("jti", ""))) if claims is not None else None
        found.append(
            None if claims is None or row is None else _found_access_token(claims, row, moment)
        )
    return found


def find_access_token(session: Session, minter: TokenMinter, value: str) -> FoundToken | None:
    return find_access_tokens(session, minter, [value])[0]


def find_refresh_token(session: Session, value: str) -> FoundToken | None:
    row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(value)))
    if row is None:
        return None
    grant = session.get(Grant, row.grant_id)
    active = row.used_at is None and row.expires_at > now() and _grant_live(session, grant)
    claims = {
        "scope": row.scope,
        "sub": grant.user_id if grant else None,
        "iat": row.issued_at,
        "exp": row.expires_at,
    }
    return FoundToken(
        "refresh_token",
        row.client_id,
        active,
        claims,
        grant_id=row.grant_id,
        refresh_row=row,
        grant=grant,
    )


def find_token(
    session: Session, minter: TokenMinter, value: str, hint: str | None
) -> FoundToken | None:
    """RFC 7009 §2.1 / RFC 7662 §2.1: the hint orders the search, it never limits it."""
    if not value or len(value) > MAX_TOKEN_LENGTH:
        return None
    finders = [
        lambda: find_access_token(session, minter, value),
        lambda: find_refresh_token(session, value),
    ]
    if hint == "refresh_token":
        finders.reverse()
    for finder in finders:
        found = finder()
        if found is not None:
            return found
    return None


def audience_clients(session: Session, audience: Any) -> set[str]:
    """Clients of the resource servers a token is addressed to."""
    identifiers = [audience] if isinstance(audience, str) else list(audience or [])
    rows = session.scalars(
        select(ResourceServer.client_id).where(ResourceServer.identifier.in_(identifiers))
    )
    return {client_id for client_id in rows if client_id}
