"""Signing keys and server-held secrets, private parts sealed by the vault's key ring."""

from __future__ import annotations

from typing import Any

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JsonValue, now


class SigningKey(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JsonValue)
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(default=now)
    # After `retired_at` the key no longer signs; after `expires_at` it leaves the JWKS.
    retired_at: Mapped[int | None] = mapped_column()
    expires_at: Mapped[int | None] = mapped_column()


class ServerSecret(Base):
    """A named secret the server generated for itself (e.g. the audit MAC key)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(default=now)
