"""Typed settings for the mock calendar provider from ``CALENDAR_*`` environment variables.

Every setting has a development default so ``python -m demo_agent.calendar`` runs
with nothing set; defaults that would be unsafe outside a demo (the generated
session key, the dev client secret) log a warning when used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "CALENDAR_"
DEFAULT_ISSUER = "http://127.0.0.1:8002"
DEFAULT_DATABASE_URL = "sqlite:///instance/calendar.db"
DEV_CLIENT_SECRET = "calendar-dev-secret-change-me"  # noqa: S105 - documented dev default
DEV_CLIENTS: list[dict[str, Any]] = [
    {
        "client_id": "authserver-vault",
        "client_secret": DEV_CLIENT_SECRET,
        "redirect_uris": ["http://127.0.0.1:8000/connections/calendar/callback"],
    }
]
SETTING_NAMES = frozenset(
    {
        "ISSUER",
        "DATABASE_URL",
        "SECRET_KEY",
        "ACCESS_TOKEN_TTL",
        "CLIENTS",
        "CLIENTS_FILE",
        "TIMEZONE",
        "TEST_CONTROLS",
    }
)


class ConfigError(ValueError):
    """The configuration cannot be used (raised at startup, never at request time)."""


@dataclass(frozen=True)
class Client:
    """A registered OAuth client (RFC 6749 §2); only the secret's SHA-256 digest is kept."""

    client_id: str
    secret_sha256: bytes
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    issuer: str = DEFAULT_ISSUER
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str = ""
    access_token_ttl: int = 3600
    code_ttl: int = 60
    timezone: str = ""
    test_controls: bool = False
    clients: dict[str, Client] = field(default_factory=dict)


def parse_clients(raw: str | list[dict[str, Any]]) -> dict[str, Client]:
    """Parse the CALENDAR_CLIENTS JSON list into clients keyed by ``client_id``."""
    entries = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(entries, list):
        raise ConfigError("CALENDAR_CLIENTS must be a JSON list")
    clients: dict[str, Client] = {}
    for entry in entries:
        try:
            client = Client(
                client_id=str(entry["client_id"]),
                secret_sha256=hashlib.sha256(str(entry["client_secret"]).encode()).digest(),
                redirect_uris=tuple(str(uri) for uri in entry["redirect_uris"]),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"CALENDAR_CLIENTS entry is missing a field: {exc}") from exc
        clients[client.client_id] = client
    return clients


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _raw_values(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Environment values under their short names, then explicit overrides on top."""
    values = {k[len(PREFIX) :]: v for k, v in environ.items() if k.startswith(PREFIX) and v}
    values.update({k.removeprefix(PREFIX): v for k, v in overrides.items()})
    return values


def _clients_file(path: Any) -> str | None:
    """CALENDAR_CLIENTS_FILE: the same JSON, from a file (a container secret)."""
    if not path:
        return None
    try:
        return Path(str(path)).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"CALENDAR_CLIENTS_FILE cannot be read: {exc.strerror}") from None


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``CALENDAR_*`` variables; ``overrides`` (for tests) win over the env."""
    values = _raw_values(os.environ if environ is None else environ, overrides or {})
    secret_key = str(values.get("SECRET_KEY") or "")
    if not secret_key:
        log.warning("CALENDAR_SECRET_KEY is not set; using a key generated for this process")
        secret_key = secrets.token_urlsafe(32)
    raw_clients = values.get("CLIENTS") or _clients_file(values.get("CLIENTS_FILE")) or DEV_CLIENTS
    if raw_clients is DEV_CLIENTS:
        log.warning("CALENDAR_CLIENTS is not set; using the dev client 'authserver-vault'")
    try:
        ttl = int(values.get("ACCESS_TOKEN_TTL", 3600))
    except ValueError as exc:
        raise ConfigError("CALENDAR_ACCESS_TOKEN_TTL must be an integer") from exc
    if ttl <= 0:
        raise ConfigError("CALENDAR_ACCESS_TOKEN_TTL must be positive")
    return Settings(
        issuer=str(values.get("ISSUER") or DEFAULT_ISSUER).rstrip("/"),
        database_url=str(values.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
        secret_key=secret_key,
        access_token_ttl=ttl,
        timezone=str(values.get("TIMEZONE") or ""),
        test_controls=_flag(values.get("TEST_CONTROLS", "")),
        clients=parse_clients(raw_clients),
    )
