"""Typed settings from ``AUTHSERVER_*`` environment variables.

Every setting has a development default so ``authserver demo`` runs with nothing
set. Development defaults warn when used; production mode refuses to start with
them (an http issuer outside loopback, the dev session secret, a missing key ring).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse as parse_rate
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from .mail import parse_smtp_url

log = logging.getLogger(__name__)

PREFIX = "AUTHSERVER_"
DEFAULT_INSTANCE = Path("instance")
DEFAULT_ISSUER = "http://127.0.0.1:8000"


class SettingsError(RuntimeError):
    """The configuration cannot be used (raised at startup, never at request time)."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    issuer: str = DEFAULT_ISSUER
    database_url: str = ""
    instance_path: Path = DEFAULT_INSTANCE
    secret_key: str = ""
    vault_keys: str = ""
    redis_url: str = ""
    access_token_ttl: int = 600
    delegated_token_ttl: int = 300
    id_token_ttl: int = 600
    refresh_token_ttl: int = 30 * 24 * 3600
    authorization_code_ttl: int = 60
    login_rate_limit: str = "10/5 minutes"
    registration_enabled: bool = False
    registration_rate_limit: str = "20/hour"
    # Every address together; the bound on what open registration can write in an hour.
    registration_global_rate_limit: str = "500/hour"
    # Pushed authorization requests of public clients, per address (RFC 9126 §2.3).
    par_rate_limit: str = "60/minute"
    # RFC 9126 §5: every client's authorization requests only through /par (FAPI 2.0 asks
    # this of the servers it profiles); per client it is their own registration's choice.
    require_par: bool = False
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    audit_link_interval: float = 1.0
    # Seconds a process may answer from its snapshot of a client or resource-server
    # registration (authserver/registry.py); 0 reads the database on every request.
    client_cache_ttl: float = 5.0
    # SQLite only: FULL makes every commit durable against power loss; NORMAL is faster
    # and durable against process crashes only (authserver/db.py says what is at stake).
    sqlite_synchronous: str = "FULL"
    # Reverse proxies in front that set X-Forwarded-*; 0 trusts none.
    proxy_hops: int = 0
    # CIBA: default and longest request lifetime, and the minimum polling interval.
    ciba_default_expiry: int = 300
    ciba_max_expiry: int = 600
    ciba_interval: int = 5
    # Approval notifications forwarded to chat or push services (signed with the secret).
    approval_webhook_url: str = ""
    approval_webhook_secret: str = ""
    notification_timeout: float = 5.0
    # Approval emails to the person (verified address only), through an SMTP relay.
    smtp_url: str = ""
    smtp_username: str = ""
    smtp_password: str = ""
    approval_email_from: str = ""
    # How often the outbox is checked by each process, and the approval stream by each page.
    notification_poll_interval: float = 1.0
    approval_stream_poll_interval: float = 0.1
    # Token vault: connected accounts unused this long are purged; upstream call timeout.
    vault_unused_days: int = 90
    upstream_timeout: float = 10.0
    dev_defaults_used: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def https_issuer(self) -> bool:
        return self.issuer.startswith("https://")

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        return replace(self, **dict(overrides))


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(PREFIX + name)
    return value if value not in (None, "") else None


def _read_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SettingsError(f"{PREFIX}{name}_FILE: cannot read {path} ({reason})") from None


def _secret_from(environ: Mapping[str, str], name: str, dev_file: Path) -> tuple[str, bool]:
    """A secret from NAME, NAME_FILE or the dev file; the bool says it is a dev default."""
    if value := _env(environ, name):
        return value, False
    if path := _env(environ, name + "_FILE"):
        return _read_file(name, path), False
    if dev_file.exists():
        return dev_file.read_text(encoding="utf-8").strip(), True
    return "", True


def _optional_secret(environ: Mapping[str, str], name: str) -> str:
    """A secret from NAME or NAME_FILE, or empty (no development default)."""
    if value := _env(environ, name):
        return value
    if path := _env(environ, name + "_FILE"):
        return _read_file(name, path)
    return ""


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be an integer") from None
    if value < 0:
        raise SettingsError(f"{PREFIX}{name} must not be negative")
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be a number") from None
    # nan and inf would pass every later comparison in surprising ways (a timeout that never ends).
    if not math.isfinite(value) or value < 0:
        raise SettingsError(f"{PREFIX}{name} must be a finite number, not negative")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A duration that must be above zero (a zero timeout or poll interval cannot work)."""
    value = _float(environ, name, default)
    if value == 0:
        raise SettingsError(f"{PREFIX}{name} must be above 0")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment (``os.environ`` by default)."""
    environ = os.environ if environ is None else environ
    instance = Path(_env(environ, "INSTANCE_PATH") or DEFAULT_INSTANCE)
    dev_defaults: list[str] = []
    secret_key, dev_secret = _secret_from(environ, "SECRET_KEY", instance / "secret_key")
    vault_keys, dev_vault = _secret_from(environ, "VAULT_KEYS", instance / "vault_keys")
    if dev_secret:
        dev_defaults.append("SECRET_KEY")
    if dev_vault:
        dev_defaults.append("VAULT_KEYS")
    issuer = (_env(environ, "ISSUER") or DEFAULT_ISSUER).rstrip("/")
    if _env(environ, "ISSUER") is None:
        dev_defaults.append("ISSUER")
    database_url = _env(environ, "DATABASE_URL") or f"sqlite:///{instance / 'authserver.db'}"
    settings = Settings(
        env=_env(environ, "ENV") or "development",
        issuer=issuer,
        database_url=database_url,
        instance_path=instance,
        secret_key=secret_key,
        vault_keys=vault_keys,
        redis_url=_env(environ, "REDIS_URL") or "",
        access_token_ttl=_int(environ, "ACCESS_TOKEN_TTL", 600),
        delegated_token_ttl=_int(environ, "DELEGATED_TOKEN_TTL", 300),
        id_token_ttl=_int(environ, "ID_TOKEN_TTL", 600),
        refresh_token_ttl=_int(environ, "REFRESH_TOKEN_TTL", 30 * 24 * 3600),
        authorization_code_ttl=_int(environ, "AUTHORIZATION_CODE_TTL", 60),
        login_rate_limit=_env(environ, "LOGIN_RATE_LIMIT") or "10/5 minutes",
        registration_enabled=(_env(environ, "REGISTRATION_ENABLED") or "").lower()
        in ("1", "true", "yes"),
        registration_rate_limit=_env(environ, "REGISTRATION_RATE_LIMIT") or "20/hour",
        registration_global_rate_limit=(
            _env(environ, "REGISTRATION_GLOBAL_RATE_LIMIT") or "500/hour"
        ),
        par_rate_limit=_env(environ, "PAR_RATE_LIMIT") or "60/minute",
        require_par=(_env(environ, "REQUIRE_PAR") or "").lower() in ("1", "true", "yes"),
        argon2_time_cost=_int(environ, "ARGON2_TIME_COST", 3),
        argon2_memory_kib=_int(environ, "ARGON2_MEMORY_KIB", 65536),
        argon2_parallelism=_int(environ, "ARGON2_PARALLELISM", 4),
        proxy_hops=_int(environ, "PROXY_HOPS", 0),
        vault_unused_days=_int(environ, "VAULT_UNUSED_DAYS", 90),
        ciba_default_expiry=_int(environ, "CIBA_DEFAULT_EXPIRY", 300),
        ciba_max_expiry=_int(environ, "CIBA_MAX_EXPIRY", 600),
        ciba_interval=_int(environ, "CIBA_INTERVAL", 5),
        approval_webhook_url=_env(environ, "APPROVAL_WEBHOOK_URL") or "",
        approval_webhook_secret=_secret_from(
            environ, "APPROVAL_WEBHOOK_SECRET", instance / "approval_webhook_secret"
        )[0],
        audit_link_interval=_float(environ, "AUDIT_LINK_INTERVAL", 1.0),
        client_cache_ttl=_float(environ, "CLIENT_CACHE_TTL", 5.0),
        sqlite_synchronous=(_env(environ, "SQLITE_SYNCHRONOUS") or "FULL").upper(),
        notification_timeout=_seconds(environ, "NOTIFICATION_TIMEOUT", 5.0),
        smtp_url=_env(environ, "SMTP_URL") or "",
        smtp_username=_env(environ, "SMTP_USERNAME") or "",
        smtp_password=_optional_secret(environ, "SMTP_PASSWORD"),
        approval_email_from=_env(environ, "APPROVAL_EMAIL_FROM") or "",
        notification_poll_interval=_seconds(environ, "NOTIFICATION_POLL_INTERVAL", 1.0),
        approval_stream_poll_interval=_seconds(environ, "APPROVAL_STREAM_POLL_INTERVAL", 0.1),
        upstream_timeout=_seconds(environ, "UPSTREAM_TIMEOUT", 10.0),
        dev_defaults_used=tuple(dev_defaults),
    )
    return settings


def _is_loopback_http(issuer: str) -> bool:
    parts = urlsplit(issuer)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def check_settings(settings: Settings) -> Settings:
    """Refuse unusable settings; in development, fill gaps with ephemeral values and warn."""
    # No trailing slash, however the issuer was given (env or overrides): `iss` must match.
    settings = replace(settings, issuer=settings.issuer.rstrip("/"))
    if settings.env not in ("development", "production"):
        raise SettingsError(f"{PREFIX}ENV must be 'development' or 'production'")
    if settings.sqlite_synchronous not in ("FULL", "NORMAL"):
        raise SettingsError(f"{PREFIX}SQLITE_SYNCHRONOUS must be FULL or NORMAL")
    for name, rate in (
        ("LOGIN_RATE_LIMIT", settings.login_rate_limit),
        ("REGISTRATION_RATE_LIMIT", settings.registration_rate_limit),
        ("REGISTRATION_GLOBAL_RATE_LIMIT", settings.registration_global_rate_limit),
        ("PAR_RATE_LIMIT", settings.par_rate_limit),
    ):
        try:
            parse_rate(rate)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be a rate such as '10/5 minutes'") from None
    parts = urlsplit(settings.issuer)
    # OIDC Discovery §3 / RFC 8414 §2: no query or fragment component, not even an empty one.
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "?" in settings.issuer
        or "#" in settings.issuer
    ):
        raise SettingsError(
            f"{PREFIX}ISSUER must be an absolute http(s) URL without query or fragment"
        )
    if not settings.https_issuer and not _is_loopback_http(settings.issuer):
        raise SettingsError(f"{PREFIX}ISSUER must use https outside loopback")
    _check_database_url(settings.database_url)
    _check_mail(settings)
    if settings.is_production:
        return _check_production(settings)
    return _fill_development_gaps(settings)


SUPPORTED_DATABASES = ("sqlite", "postgresql")


def _check_database_url(database_url: str) -> None:
    """A URL SQLAlchemy can use, for a database we support, with its driver installed.
    Messages never repeat the URL: it may hold a password."""
    example = "sqlite:///path/to/authserver.db or postgresql+psycopg://user@host/dbname"
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise SettingsError(f"{PREFIX}DATABASE_URL is not a database URL ({example})") from None
    if url.get_backend_name() not in SUPPORTED_DATABASES:
        raise SettingsError(f"{PREFIX}DATABASE_URL: only SQLite and PostgreSQL ({example})")
    try:
        url.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError):
        raise SettingsError(
            f"{PREFIX}DATABASE_URL: driver {url.drivername!r} is not installed ({example})"
        ) from None


def _check_mail(settings: Settings) -> None:
    if not settings.smtp_url:
        return
    try:
        parse_smtp_url(settings.smtp_url)
    except ValueError as error:
        raise SettingsError(f"{PREFIX}SMTP_URL {error}") from None
    sender = settings.approval_email_from
    if "@" not in sender or any(char in sender for char in "\r\n"):
        raise SettingsError(f"{PREFIX}APPROVAL_EMAIL_FROM must be an email address")
    if settings.smtp_username and not settings.smtp_password:
        raise SettingsError(f"{PREFIX}SMTP_USERNAME needs {PREFIX}SMTP_PASSWORD(_FILE)")


MAX_PRODUCTION_AUDIT_LINK_INTERVAL = 60.0


def _check_production(settings: Settings) -> Settings:
    if not settings.https_issuer:
        raise SettingsError("production requires an https issuer")
    missing = [name for name in ("SECRET_KEY", "VAULT_KEYS") if name in settings.dev_defaults_used]
    if missing:
        names = ", ".join(PREFIX + name for name in missing)
        raise SettingsError(f"production refuses development defaults; set {names}")
    if len(settings.secret_key) < 32:
        raise SettingsError(f"{PREFIX}SECRET_KEY must be at least 32 characters")
    # Rows are protected by the hash chain only once linked: 0 turns the linker off (for
    # tests and one-shot commands), and a long interval leaves rows unlinked that long.
    if not 0 < settings.audit_link_interval <= MAX_PRODUCTION_AUDIT_LINK_INTERVAL:
        raise SettingsError(
            f"{PREFIX}AUDIT_LINK_INTERVAL must be above 0 and at most "
            f"{MAX_PRODUCTION_AUDIT_LINK_INTERVAL:g} seconds in production"
        )
    _check_production_webhook(settings)
    return settings


def _check_production_webhook(settings: Settings) -> None:
    """The webhook names a person, an agent and the action awaiting approval: in production
    it goes over TLS, signed, so the receiver can tell it from a forgery."""
    if not settings.approval_webhook_url:
        return
    if urlsplit(settings.approval_webhook_url).scheme != "https":
        raise SettingsError(f"{PREFIX}APPROVAL_WEBHOOK_URL must use https in production")
    if len(settings.approval_webhook_secret) < 32:
        raise SettingsError(
            f"{PREFIX}APPROVAL_WEBHOOK_SECRET(_FILE) of at least 32 characters is required "
            "with an approval webhook in production"
        )


def _fill_development_gaps(settings: Settings) -> Settings:
    if not settings.vault_keys:
        raise SettingsError(f"no vault key ring: run `authserver init` or set {PREFIX}VAULT_KEYS")
    updates: dict[str, Any] = {}
    if not settings.secret_key:
        log.warning("no session secret configured; using an ephemeral one (run `authserver init`)")
        updates["secret_key"] = secrets.token_urlsafe(32)
    for name in settings.dev_defaults_used:
        log.warning("development default in use for %s%s", PREFIX, name)
    return replace(settings, **updates) if updates else settings
