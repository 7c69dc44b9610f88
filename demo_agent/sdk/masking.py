"""Keeping secrets out of output: masks, fingerprints and a redactor.

Tokens, codes, client secrets and `auth_req_id`s are bearer credentials (RFC 6750
§5.3, CIBA Core §7.3): they must never reach a log or a terminal. Where a reader needs
to tell two values apart, they see a short SHA-256 fingerprint instead of the value.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

# Request and response fields whose values are credentials.
SECRET_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "code",
        "code_verifier",
        "client_secret",
        "client_assertion",
        "subject_token",
        "actor_token",
        "auth_req_id",
        "client_notification_token",
        "password",
        "login_hint_token",
        "id_token_hint",
        "assertion",
        "token",
    }
)
MIN_SECRET_LENGTH = 8


def fingerprint(value: str) -> str:
    """The first 8 hex digits of SHA-256(value): enough to correlate, useless to an attacker."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


def mask(value: str | None) -> str:
    """`<redacted sha256:1a2b3c4d>` for a secret value ('' and None stay as they are)."""
    if not value:
        return "" if value is None else value
    return f"<redacted sha256:{fingerprint(value)}>"


def mask_fields(data: Any) -> Any:
    """A copy of a JSON-like value with every secret field's value masked (recursively)."""
    if isinstance(data, Mapping):
        return {
            key: mask(str(value)) if key in SECRET_FIELDS and value else mask_fields(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [mask_fields(item) for item in data]
    return data


def mask_authorization(header: str) -> str:
    """`Basic <redacted ...>` / `Bearer <redacted ...>`: the scheme stays visible."""
    scheme, _, value = header.partition(" ")
    return f"{scheme} {mask(value)}" if value else mask(header)


class Redactor:
    """Remembers every secret the SDK handled and scrubs them from any text.

    A second line of defence for programs that print tool output: whatever slipped
    into a message, a known token or secret comes out masked.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)

    def scrub(self, text: str) -> str:
        with self._lock:
            known = sorted(self._secrets, key=len, reverse=True)
        for secret in known:
            if secret in text:
                text = text.replace(secret, mask(secret))
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"
