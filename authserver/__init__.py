"""A self-hosted OpenID Connect provider and token vault for AI agents.

`create_app()` is the WSGI entry point: `gunicorn 'authserver:create_app()'`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .runtime import build_runtime
from .settings import check_settings, load_settings

MAX_REQUEST_BYTES = 256 * 1024


def _quiet_token_logging() -> None:
    # Authlib logs issued token values at DEBUG ("Issue token %r"); never let them through.
    logging.getLogger("authlib").setLevel(logging.INFO)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application; `test_config` overrides settings fields by name."""
    _quiet_token_logging()
    settings = load_settings()
    if test_config:
        settings = settings.with_overrides(test_config)
    settings = check_settings(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_NAME="authserver_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.https_issuer,
        WTF_CSRF_TIME_LIMIT=None,
        JSON_SORT_KEYS=False,
    )
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.proxy_hops,
            x_proto=settings.proxy_hops,
            x_host=settings.proxy_hops,
        )
    app.extensions["authserver"] = build_runtime(settings)
    from .web import register

    register(app)
    return app
