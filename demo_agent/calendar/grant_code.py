"""Authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5-§4.6).

The code is single-use, lives 60 seconds, and is bound to the client, the
redirect URI and the PKCE challenge. A code presented again after it was
redeemed revokes every token issued from it (§4.1.2, §10.5).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from . import pkce
from .config import Client
from .db import transaction
from .errors import InvalidGrant, InvalidRequest
from .models import AuthorizationCode
from .state import state
from .tokens import Issued, count, digest, issue, new_family, revoke_family

GRANT_TYPE = "authorization_code"


def _required(form: MultiDict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequest(f"{name} is required")
    return value


def _check_binding(row: AuthorizationCode, client: Client, form: MultiDict[str, str]) -> None:
    """§4.1.3: same client, unexpired, identical redirect_uri; RFC 7636 §4.6: verifier."""
    if row.client_id != client.client_id:
        raise InvalidGrant("the authorization code was issued to another client")
    if row.expires_at <= state().now():
        raise InvalidGrant("the authorization code has expired")
    if row.redirect_uri != _required(form, "redirect_uri"):
        raise InvalidGrant("redirect_uri does not match the authorization request")
    if not pkce.verify(_required(form, "code_verifier"), row.code_challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")


def _consume(db: Session, row: AuthorizationCode, now: float) -> bool:
    result = db.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.code_hash == row.code_hash, AuthorizationCode.consumed_at.is_(None)
        )
        .values(consumed_at=now)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def _reject_reuse(db: Session, row: AuthorizationCode, now: float) -> InvalidGrant:
    """§4.1.2: revoke what the code issued, commit that, and report invalid_grant."""
    db.refresh(row)
    if row.family_id is not None:
        revoke_family(db, row.family_id, now)
    db.commit()
    return InvalidGrant("the authorization code was already used; its tokens are revoked")


def handle(client: Client, form: MultiDict[str, str]) -> Issued:
    """Exchange a code for an access token and a refresh token."""
    code = _required(form, "code")
    settings, now = state().settings, state().now()
    with transaction() as db:
        row = db.get(AuthorizationCode, digest(code))
        if row is None:
            raise InvalidGrant("the authorization code is invalid")
        if row.consumed_at is not None:
            raise _reject_reuse(db, row, now)
        _check_binding(row, client, form)
        if not _consume(db, row, now):
            raise _reject_reuse(db, row, now)
        family = new_family(db, client.client_id, row.user_id, row.scope, now)
        row.family_id = family.id
        issued = issue(db, family, row.scope, now, settings.access_token_ttl, refresh=True)
        count(db, "code_grants")
    return issued
