"""Browser-facing hardening and error rendering.

Every response gets ``X-Frame-Options: DENY`` and a CSP of ``default-src 'self'``
(the pages carry no script at all). Errors are readable pages for people and
RFC-shaped JSON for the APIs; a 5xx never shows details, which go to the log.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError

from .errors import OAuthError, PageError, ServerError

log = logging.getLogger(__name__)

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
JSON_BLUEPRINTS = {"token", "revocation", "api", "controls", "metadata"}


def security_headers(response: Response) -> Response:
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def page(title: str, message: str, status: int) -> ResponseReturnValue:
    return render_template("error.html", title=title, message=message), status


def page_error(exc: PageError) -> ResponseReturnValue:
    return page(exc.title, exc.message, exc.status_code)


def csrf_error(exc: CSRFError) -> ResponseReturnValue:
    message = "The form was missing its security token or it expired. Go back and try again."
    return page("Form expired", message, 400)


def oauth_error(exc: OAuthError) -> ResponseReturnValue:
    if exc.status_code >= 500:
        log.warning("%s %s answered %s: %s", request.method, request.path, exc.error, exc)
    return exc.response()


def server_error(exc: Exception) -> ResponseReturnValue:
    """Anything unexpected: log it, answer generically (JSON or a page)."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    if request.blueprint in JSON_BLUEPRINTS:
        return ServerError("internal error").response()
    return page("Something went wrong", "The calendar could not handle this request.", 500)


def install(app: Flask) -> None:
    app.after_request(security_headers)
    app.register_error_handler(PageError, page_error)
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(OAuthError, oauth_error)
    app.register_error_handler(500, server_error)
