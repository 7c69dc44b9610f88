"""HTTP surface of the broker: one blueprint, bearer-token checks and JSON errors.

Bearer tokens travel only in the ``Authorization`` header (RFC 6750 §2.1); a token in
the URI is refused (§2.3, §5.3). Errors follow RFC 6750 §3: 401 with a bare
``Bearer realm="broker"`` challenge when no token was sent, 401 ``invalid_token``,
403 ``insufficient_scope`` naming the scope, each with a JSON body carrying ``error``
and ``error_description``. Any unexpected failure is a generic 500 ``server_error``;
the detail goes only to the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import Engine
from werkzeug.exceptions import HTTPException

from . import market
from .errors import (
    BrokerError,
    InsufficientScope,
    InvalidBearerRequest,
    InvalidRequest,
    MissingToken,
)
from .ledger import Ledger
from .settings import BrokerSettings
from .tokens import TokenVerifier
from .trading import covering_entry, parse_order

log = logging.getLogger(__name__)

PORTFOLIO_READ = "portfolio:read"

bp = Blueprint("broker", __name__)


@dataclass
class Broker:
    """Everything a request needs, stored in ``app.extensions["broker"]``."""

    settings: BrokerSettings
    verifier: TokenVerifier
    ledger: Ledger
    engine: Engine

    def close(self) -> None:
        """Release the HTTP session and database connections."""
        self.verifier.close()
        self.engine.dispose()


def broker() -> Broker:
    """The broker of the current app."""
    state: Broker = current_app.extensions["broker"]
    return state


def bearer_token() -> str:
    """The access token from ``Authorization: Bearer`` (RFC 6750 §2.1), or raise."""
    if "access_token" in request.args:
        raise InvalidBearerRequest("access tokens are not accepted in the URI")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken()
    token = token.strip()
    if not token or " " in token:
        raise InvalidBearerRequest("Authorization header is not Bearer <token>")
    return token


def authenticate(scope: str | None = None) -> dict[str, Any]:
    """Verify the request's token (RFC 9068 §4) and, if given, require ``scope``."""
    claims = broker().verifier.verify(bearer_token())
    if scope is not None and scope not in claims["scope"].split():
        raise InsufficientScope(f"this endpoint needs the {scope} scope", scope=scope)
    return claims


@bp.get("/quotes/<symbol>")
def get_quote(symbol: str) -> Response:
    """Public mock quote."""
    return jsonify(market.quote(market.check_symbol(symbol)))


@bp.get("/portfolio")
def get_portfolio() -> Response:
    """The token subject's cash and positions; needs ``portfolio:read``."""
    claims = authenticate(PORTFOLIO_READ)
    return jsonify(broker().ledger.portfolio(claims))


@bp.get("/orders")
def list_orders() -> Response:
    """The token subject's orders; needs ``portfolio:read``."""
    claims = authenticate(PORTFOLIO_READ)
    return jsonify(broker().ledger.orders(claims))


@bp.post("/orders")
def place_order() -> tuple[Response, int]:
    """Place one order covered by the token's RFC 9396 ``trade`` entry."""
    claims = authenticate()
    if request.mimetype != "application/json":
        raise InvalidRequest("Content-Type must be application/json")
    order = parse_order(request.get_data(cache=False))
    audience = broker().settings.audience
    approval = covering_entry(claims.get("authorization_details"), order, audience)
    return jsonify(broker().ledger.place_order(claims, order, approval)), 201


def broker_error(error: BrokerError) -> tuple[Response, int, dict[str, str]]:
    """Render a client-visible error as JSON plus its ``WWW-Authenticate`` challenge."""
    if error.status >= 500:
        log.error("%s: %s", type(error).__name__, error.description)
    challenge = error.www_authenticate()
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    return jsonify(error.body()), error.status, headers


def http_error(error: HTTPException) -> tuple[Response, int]:
    """Routing and protocol errors (404, 405, 413, ...) as JSON."""
    status = error.code or 500
    if status >= 500:
        return server_error(error)
    code = (error.name or "error").lower().replace(" ", "_")
    response = jsonify({"error": code, "error_description": error.description})
    # RFC 9110 §15.5.6: a 405 MUST say what is allowed (Werkzeug's error carries `Allow`).
    if allowed := dict(error.get_headers()).get("Allow"):
        response.headers["Allow"] = allowed
    return response, status


def server_error(error: Exception) -> tuple[Response, int]:
    """Never a stack trace: a generic ``server_error``; the detail goes to the log."""
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    body = {"error": "server_error", "error_description": "internal error"}
    return jsonify(body), 500


def no_store(response: Response) -> Response:
    """Responses to authenticated requests must not be cached (RFC 6750 §5.3)."""
    if "Authorization" in request.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Register the whole HTTP surface: routes, error handlers, response hooks."""
    app.register_blueprint(bp)
    app.register_error_handler(BrokerError, broker_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, server_error)
    app.after_request(no_store)
