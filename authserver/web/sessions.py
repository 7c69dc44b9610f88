"""Flask's signed-cookie sessions, without building a signer for requests that have no cookie.

Flask makes an itsdangerous serializer for every request before it looks for the
cookie. API clients (the token endpoint's callers) never send one, and building
the serializer was a measurable part of a token request. Without a cookie Flask
returns an empty session anyway; this returns the same empty session first. With
a cookie, or without a secret key (Flask's null session), Flask's code runs as is.
Saving a session (signing the cookie) is unchanged.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class LazySignerSessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = LazySignerSessionInterface()
