"""Broker settings from ``BROKER_*`` environment variables, with dev defaults.

Precedence: an explicit ``config`` mapping (``create_app(config)``, the CLI) over the
environment over the defaults. Every setting has a dev default so
``python -m demo_agent.broker`` runs with nothing set; a default in use is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEV_ISSUER = "http://127.0.0.1:8000"
DEV_AUDIENCE = "http://127.0.0.1:8001"
DEV_DATABASE_URL = "sqlite:///instance/broker.db"


@dataclass(frozen=True)
class BrokerSettings:
    """Typed broker configuration; the env var of field ``x`` is ``BROKER_X``."""

    issuer: str = DEV_ISSUER
    audience: str = DEV_AUDIENCE
    database_url: str = DEV_DATABASE_URL
    jwks_refetch_interval: float = 60.0
    http_timeout: float = 5.0

    @classmethod
    def load(
        cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> BrokerSettings:
        """Build settings from ``config`` keys ``BROKER_X``, then ``environ``, then defaults."""
        config = config or {}
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = "BROKER_" + field.name.upper()
            raw = config.get(key, environ.get(key))
            if raw is None:
                log.info("broker setting %s not set, using dev default %r", key, field.default)
                continue
            values[field.name] = _number(key, raw) if field.type == "float" else str(raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that cannot work: non-URL issuer/audience, negative intervals."""
        for name in ("issuer", "audience"):
            parts = urlsplit(getattr(self, name))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"BROKER_{name.upper()} must be an http(s) URL")
        if self.jwks_refetch_interval < 0 or self.http_timeout <= 0:
            raise ValueError("BROKER_JWKS_REFETCH_INTERVAL and BROKER_HTTP_TIMEOUT must be >= 0")
        host = urlsplit(self.issuer).hostname or ""
        if urlsplit(self.issuer).scheme == "http" and host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("issuer %s uses plain http outside loopback", self.issuer)


def _number(key: str, raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {raw!r}") from None
