"""Flask extensions, created unbound and bound in `register` (the Flask tutorial's pattern)."""

from __future__ import annotations

from flask import Flask, current_app
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from ..models import User
from ..oauth import build_authorization_server
from ..oauth.server import AuthorizationServer
from ..ratelimit import LoginThrottle, PushThrottle, RegistrationThrottle, make_storage
from . import browser_sessions, context

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "account.login"
login_manager.login_message = ""
login_manager.session_protection = "basic"


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    if not browser_sessions.is_live(user_id):  # signed out, expired, or from before sessions
        return None
    user = context.db().get(User, user_id)
    return user if user is not None and user.is_active else None


class _OAuthServerHolder:
    """Binds the Authlib server to the app at `init_app` time."""

    def init_app(self, app: Flask) -> None:
        app.extensions["oauth_server"] = build_authorization_server(
            context.runtime,
            context.db,
            context.record,
            context.commit,
            reading=context.reading,
            insert=context.insert,
        )
        settings = app.extensions["authserver"].settings
        storage = make_storage(settings.redis_url, context.db)
        app.extensions["login_throttle"] = LoginThrottle(storage, settings.login_rate_limit)
        app.extensions["registration_throttle"] = RegistrationThrottle(
            storage, settings.registration_rate_limit, settings.registration_global_rate_limit
        )
        app.extensions["push_throttle"] = PushThrottle(storage, settings.par_rate_limit)


oauth_server = _OAuthServerHolder()


def server() -> AuthorizationServer:
    value: AuthorizationServer = current_app.extensions["oauth_server"]
    return value


def login_throttle() -> LoginThrottle:
    value: LoginThrottle = current_app.extensions["login_throttle"]
    return value


def push_throttle() -> PushThrottle:
    value: PushThrottle = current_app.extensions["push_throttle"]
    return value


def registration_throttle() -> RegistrationThrottle:
    value: RegistrationThrottle = current_app.extensions["registration_throttle"]
    return value
