"""Identifying the user from exactly one hint (CIBA Core §7.1).

- `login_hint`: a username or email address.
- `id_token_hint`: an ID token this server issued to the requesting client
  (expired ones are accepted, as hints).
- `login_hint_token`: an access token this server issued whose subject is the user.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ...models import User
from ...tokens import ACCESS_TOKEN_TYP, InvalidOwnToken, TokenMinter
from ..endpoints.lookup import find_access_token
from ..errors import ExpiredLoginHintTokenError, UnknownUserIdError

HINTS = ("login_hint", "id_token_hint", "login_hint_token")
MAX_HINT_LENGTH = 8192


def _active_user(session: Session, user: User | None) -> User:
    if user is None or not user.is_active:
        raise UnknownUserIdError("The hint does not identify a known user.")
    return user


def _by_login_hint(session: Session, value: str) -> User:
    name = value.strip().lower()
    user = session.scalar(
        select(User).where(or_(func.lower(User.username) == name, func.lower(User.email) == name))
    )
    return _active_user(session, user)


def _by_id_token(session: Session, minter: TokenMinter, value: str, client_id: str) -> User:
    try:
        claims = minter.verify(value, typ="jwt", verify_exp=False)
    except InvalidOwnToken:
        raise InvalidRequestError(
            "The id_token_hint is not an ID token from this server."
        ) from None
    if claims.get("aud") != client_id:
        raise InvalidRequestError("The id_token_hint was not issued to this client.")
    return _active_user(session, session.get(User, str(claims["sub"])))


def _by_login_hint_token(session: Session, minter: TokenMinter, value: str) -> User:
    try:
        minter.verify(value, typ=ACCESS_TOKEN_TYP)
    except InvalidOwnToken:
        found = find_access_token(session, minter, value)
        if found is not None:
            raise ExpiredLoginHintTokenError("The login_hint_token has expired.") from None
        raise InvalidRequestError("The login_hint_token is not a token from this server.") from None
    found = find_access_token(session, minter, value)
    if found is None or not found.active:
        raise ExpiredLoginHintTokenError("The login_hint_token is no longer active.")
    return _active_user(session, session.get(User, str(found.claims["sub"])))


def resolve_user(session: Session, minter: TokenMinter, form: Any, client_id: str) -> User:
    present = [name for name in HINTS if form.get(name)]
    if len(present) != 1:
        raise InvalidRequestError(
            "Send exactly one of login_hint, id_token_hint, login_hint_token."
        )
    name = present[0]
    value = form.get(name)
    if len(value) > MAX_HINT_LENGTH:
        raise InvalidRequestError(f"'{name}' is too long.")
    if name == "login_hint":
        return _by_login_hint(session, value)
    if name == "id_token_hint":
        return _by_id_token(session, minter, value, client_id)
    return _by_login_hint_token(session, minter, value)
