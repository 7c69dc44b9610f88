"""Tables of the mock calendar provider (SQLAlchemy 2 typed models).

Authorization codes, refresh tokens and access tokens are stored only as the
hex SHA-256 digest of their value (the values are 256-bit random strings, so a
plain digest is enough; compare django-oauth-toolkit's hashed token lookup).
Every token belongs to a *family*: the grant made by one authorization code and
all the refresh tokens rotated from it, so reuse detection can revoke it whole.
Times are POSIX seconds (floats), which keeps SQLite and PostgreSQL comparisons alike.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "calendar_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))


class Event(Base):
    """A seeded event, anchored to a day relative to the current local date."""

    __tablename__ = "calendar_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("calendar_users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    day_offset: Mapped[int]
    start_minute: Mapped[int]
    end_minute: Mapped[int]


class AuthorizationCode(Base):
    """RFC 6749 §4.1.2 code, bound to client, redirect URI and PKCE challenge (RFC 7636)."""

    __tablename__ = "calendar_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("calendar_users.id"))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(500))
    code_challenge: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float]
    consumed_at: Mapped[float | None]
    family_id: Mapped[int | None] = mapped_column(ForeignKey("calendar_token_families.id"))


class TokenFamily(Base):
    """One grant: everything issued from one code, revoked together."""

    __tablename__ = "calendar_token_families"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("calendar_users.id"))
    scope: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[float]
    revoked_at: Mapped[float | None]


class RefreshToken(Base):
    """A refresh token; ``used_at`` is set by the one rotation allowed to consume it."""

    __tablename__ = "calendar_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("calendar_token_families.id"), index=True)
    created_at: Mapped[float]
    used_at: Mapped[float | None]


class AccessToken(Base):
    """An opaque bearer access token (RFC 6750) with its own, possibly narrower, scope."""

    __tablename__ = "calendar_access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("calendar_token_families.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("calendar_users.id"))
    scope: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[float]
    revoked_at: Mapped[float | None]


class Counter(Base):
    """Persistent counters behind ``GET /_test/stats``."""

    __tablename__ = "calendar_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)
