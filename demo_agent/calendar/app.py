"""Application factory: every blueprint, grant and hook is registered in ``create_app``."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from . import api, authorize, controls, login, metadata, pages, revocation, token_endpoint
from .config import SETTING_NAMES, load_settings
from .db import make_engine, make_session_factory
from .demo_data import seed
from .models import Base
from .schedule import zone
from .state import CalendarState

csrf = CSRFProtect()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The mock calendar provider; ``config`` overrides ``CALENDAR_*`` settings for tests.

    Keys naming a setting (``ISSUER`` or ``CALENDAR_ISSUER``) configure the provider;
    any other key (``TESTING``) goes to Flask's own config.
    """
    overrides = dict(config or {})
    settings = load_settings(overrides)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="calendar_session",  # cookies ignore ports: not the authserver's
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.issuer.startswith("https://"),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.config.update(
        {k: v for k, v in overrides.items() if k.removeprefix("CALENDAR_") not in SETTING_NAMES}
    )
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        seed(session)
    app.extensions["calendar"] = CalendarState(settings, engine, sessions, zone(settings.timezone))
    _register(app, settings.test_controls)
    return app


def _register(app: Flask, test_controls: bool) -> None:
    """The whole protocol surface, in one place."""
    csrf.init_app(app)
    pages.install(app)
    for blueprint in (metadata.bp, token_endpoint.bp, revocation.bp, api.bp):
        csrf.exempt(blueprint)  # client-authenticated or bearer APIs, no browser session
        app.register_blueprint(blueprint)
    app.register_blueprint(login.bp)
    app.register_blueprint(authorize.bp)
    if test_controls:
        csrf.exempt(controls.bp)
        app.register_blueprint(controls.bp)
