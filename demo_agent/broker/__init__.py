"""A mock brokerage API: an OAuth 2.0 resource server of the authorization server.

It trusts one issuer, finds its keys through discovery, and accepts RFC 9068 JWT access
tokens whose ``aud`` names this broker (default ``http://127.0.0.1:8001``).
``GET /quotes/<symbol>`` is public; ``GET /portfolio`` and ``GET /orders`` need
``portfolio:read``; ``POST /orders`` needs an RFC 9396 ``trade`` entry covering the
order, and each token places at most one order. See DESIGN.md, "The demo".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.orm import sessionmaker

from . import api
from .ledger import Ledger
from .models import Base, make_engine
from .settings import BrokerSettings
from .tokens import TokenVerifier

__all__ = ["create_app"]

MAX_BODY_BYTES = 16 * 1024


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the broker app; ``config`` keys are the ``BROKER_*`` env var names."""
    settings = BrokerSettings.load(config)
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config.update(config or {})
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    verifier = TokenVerifier(
        settings.issuer,
        settings.audience,
        refetch_interval=settings.jwks_refetch_interval,
        timeout=settings.http_timeout,
    )
    ledger = Ledger(sessionmaker(engine, expire_on_commit=False))
    app.extensions["broker"] = api.Broker(settings, verifier, ledger, engine)
    api.init_app(app)
    return app
