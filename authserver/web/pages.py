"""Error responses: RFC-shaped JSON for APIs, a readable page for people, never a trace.

Anything that becomes a 5xx is logged with its detail and answered with a generic
`server_error`; the request's session is rolled back at teardown.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

API_BLUEPRINTS = {"token", "userinfo", "discovery", "par"}
API_PATHS = (
    "/token",
    "/introspect",
    "/revoke",
    "/par",
    "/userinfo",
    "/register",
    "/bc-authorize",
    "/jwks.json",
    "/.well-known/",
)


def wants_json() -> bool:
    if request.blueprint in API_BLUEPRINTS:
        return True
    return request.path.startswith(API_PATHS)


def error_page(title: str, description: str, status: int) -> tuple[str, int]:
    return render_template("error.html", title=title, description=description), status


def _json_error(error: str, description: str, status: int) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(exc: HTTPException) -> Response | tuple[str, int, dict[str, str]]:
    status = exc.code or 500
    code = "invalid_request" if status < 500 else "server_error"
    description = exc.description if status < 500 else "The server could not handle the request."
    # RFC 9110 §15.5.6: a 405 MUST list the allowed methods, page or JSON alike.
    headers = {k: v for k, v in exc.get_headers() if k in ("Allow", "Retry-After") and v}
    if wants_json():
        response = _json_error(code, _plain(description or exc.name), status)
        response.headers.update(headers)
        return response
    page, status = error_page(exc.name, description or "", status)
    return page, status, headers


def _plain(text: str) -> str:
    # RFC 6749 §5.2 limits error_description to printable ASCII without quote or backslash.
    return "".join(c for c in str(text) if 0x20 <= ord(c) <= 0x7E and c not in '"\\')


def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return error_page("The form expired", "Please go back, reload the page and try again.", 400)


def _unexpected(exc: Exception) -> Response | tuple[str, int]:
    log.exception("unhandled error on %s %s", request.method, request.path)
    # The request's transaction may be the failure (a rejected INSERT): the error page reads
    # the signed-in user through it, which a session awaiting rollback refuses.
    session = g.get("db_session")
    if session is not None:
        session.rollback()
    if wants_json():
        return _json_error("server_error", "The server could not handle the request.", 500)
    return error_page("Something went wrong", "The server could not handle the request.", 500)


def _timestamp(value: int | None) -> str:
    if not value:
        return "never"
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def init_app(app: Flask) -> None:
    app.add_template_filter(_timestamp, "timestamp")
    app.context_processor(lambda: {"nav_links": app.config.get("NAV_LINKS", [])})
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
