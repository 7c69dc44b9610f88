"""Flask adapters: one blueprint per protocol surface, wired up in `register`."""

from __future__ import annotations

from flask import Flask

from . import context, inputs, pages, security, sessions
from .extensions import csrf, login_manager, oauth_server


def register(app: Flask) -> None:
    from .account import bp as account_bp
    from .approvals import bp as approvals_bp
    from .authorize import bp as authorize_bp
    from .connections import bp as connections_bp
    from .discovery import bp as discovery_bp
    from .par import bp as par_bp
    from .token import bp as token_bp
    from .userinfo import bp as userinfo_bp

    sessions.init_app(app)
    context.init_app(app)
    inputs.init_app(app)
    login_manager.init_app(app)
    csrf.init_app(app)
    oauth_server.init_app(app)
    blueprints = (
        account_bp,
        approvals_bp,
        authorize_bp,
        connections_bp,
        discovery_bp,
        par_bp,
        token_bp,
        userinfo_bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    if app.extensions["authserver"].settings.registration_enabled:
        from .registration import bp as registration_bp

        app.register_blueprint(registration_bp)
        csrf.exempt(registration_bp)  # an API for clients, authenticated by nothing (RFC 7591)
    app.config["NAV_LINKS"] = [
        ("approvals.approvals", "Approvals"),
        ("connections.accounts", "Connected accounts"),
    ]
    for blueprint in (discovery_bp, par_bp, token_bp, userinfo_bp):
        csrf.exempt(blueprint)
    # Protocol endpoints that relying parties POST to directly; the pages they lead to
    # post their own forms with CSRF tokens.
    csrf.exempt("authserver.web.account.logout")
    csrf.exempt("authserver.web.authorize.authorize")
    security.init_app(app)
    pages.init_app(app)
