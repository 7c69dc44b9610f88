"""Random credentials and how they are stored.

Codes, refresh tokens, CIBA request ids and client secrets are 256-bit random
values from `secrets`. Only their SHA-256 digest is stored: the values have full
entropy, so a fast hash is enough and keeps the token endpoint fast (a
memory-hard hash would cap it at tens of requests per second for no gain).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32  # 256 bits


def new_secret_value() -> str:
    """A fresh 256-bit random value, URL-safe base64 without padding."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(value: str) -> str:
    """The hex SHA-256 of a credential: what the database stores and looks up by."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def matches_digest(value: str, stored_digest: str | None) -> bool:
    """Constant-time comparison of a presented credential with a stored digest."""
    if not stored_digest:
        return False
    return hmac.compare_digest(digest(value), stored_digest)


def fingerprint(value: str) -> str:
    """A short, non-reversible tag for correlating a credential in logs."""
    return "sha256:" + digest(value)[:12]
