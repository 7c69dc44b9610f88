"""Issuing, rotating and revoking opaque tokens (RFC 6749 §1.4, §1.5, §5.1, §10.4).

Values are ``secrets.token_urlsafe(32)`` (256 bits) and reach the client once;
the database keeps only their SHA-256 digest. Refresh tokens rotate on every use
and are consumed by a conditional UPDATE, so of two concurrent uses exactly one
wins; presenting a consumed one revokes the whole family (OAuth 2.0 Security BCP,
RFC 9700 §4.14.2).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, cast

from flask import Response
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from .models import AccessToken, Counter, RefreshToken, TokenFamily


def digest(value: str) -> str:
    """Hex SHA-256 of a token, code or secret: the only form that is stored or logged."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_value() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None
    expires_in_as_text: bool = False  # a test fault: some providers send "3600"

    def response(self) -> Response:
        """RFC 6749 §5.1 successful response, never cached."""
        body = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": str(self.expires_in) if self.expires_in_as_text else self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        response = Response(json.dumps(body), 200, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response


def new_family(
    session: Session, client_id: str, user_id: int, scope: str, now: float
) -> TokenFamily:
    family = TokenFamily(client_id=client_id, user_id=user_id, scope=scope, created_at=now)
    session.add(family)
    session.flush()
    return family


def issue(
    session: Session, family: TokenFamily, scope: str, now: float, ttl: int, refresh: bool
) -> Issued:
    """A new access token for ``scope`` and, when ``refresh``, a new refresh token."""
    access = new_value()
    session.add(
        AccessToken(
            token_hash=digest(access),
            family_id=family.id,
            client_id=family.client_id,
            user_id=family.user_id,
            scope=scope,
            expires_at=now + ttl,
        )
    )
    refresh_value = new_value() if refresh else None
    if refresh_value is not None:
        session.add(
            RefreshToken(token_hash=digest(refresh_value), family_id=family.id, created_at=now)
        )
    return Issued(access, ttl, scope, refresh_value)


def consume_refresh_token(session: Session, token_hash: str, now: float) -> bool:
    """Mark the token used; True only for the single caller that changed it."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def revoke_family(session: Session, family_id: int, now: float) -> None:
    """Revoke a grant and every token issued under it (RFC 7009 §2.1, RFC 6749 §4.1.2)."""
    session.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.execute(
        update(AccessToken)
        .where(AccessToken.family_id == family_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def active_access_token(session: Session, value: str, now: float) -> AccessToken | None:
    """The stored access token if it exists, has not expired and was not revoked."""
    token = session.get(AccessToken, digest(value))
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        return None
    return token


def count(session: Session, name: str) -> None:
    """Add one to a persistent counter inside the caller's transaction."""
    session.execute(update(Counter).where(Counter.name == name).values(value=Counter.value + 1))


def counters(session: Session) -> dict[str, int]:
    return {row.name: row.value for row in session.scalars(select(Counter))}
