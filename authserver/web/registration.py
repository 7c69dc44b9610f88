"""`POST /register`: RFC 7591 dynamic client registration (authserver/oauth/registration.py).

Registered only when AUTHSERVER_REGISTRATION_ENABLED is set; discovery lists it then.
The body is one JSON object (§3.1) of at most MAX_BODY bytes, with no key twice (which
value a parser keeps differs between parsers); attempts are counted per address.
Every answer is `no-store` (the 201 carries the client secret, §3.2.1) and every
attempt, registered or refused, is an audit row.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from ..oauth.registration import RegistrationError, register
from . import context
from .extensions import registration_throttle

bp = Blueprint("registration", __name__)

MAX_BODY = 16 * 1024
HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key is repeated")
    return dict(pairs)


def _document() -> Any:
    if request.args:
        raise RegistrationError("invalid_request", "Parameters belong in the JSON body.")
    if request.mimetype != "application/json":
        raise RegistrationError("invalid_request", "The request body must be application/json.")
    if (request.content_length or 0) > MAX_BODY:
        raise RegistrationError("invalid_request", "The client metadata is too large.")
    body = request.get_data(cache=False)[: MAX_BODY + 1]
    if len(body) > MAX_BODY:  # a chunked body says no length up front
        raise RegistrationError("invalid_request", "The client metadata is too large.")
    try:
        return json.loads(body, object_pairs_hook=_no_repeats)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON, a repeated key, too deep
        raise RegistrationError("invalid_client_metadata", "Send one JSON object.") from None


def _json(status: int, body: dict[str, Any], **headers: str) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        mimetype="application/json",
        headers={**HEADERS, **headers},
    )


@bp.post("/register")
def register_client() -> Response:
    throttled = registration_throttle().reserve(context.client_address())
    if throttled is not None and throttled.first:
        # One audit row per address and window: a flood of refused attempts is one event.
        context.record("client.registered", "throttled")
    context.commit()  # the attempt stays counted whatever happens next
    if throttled is not None:
        described = "Too many registrations from this address; try again later."
        return _json(
            429,
            {"error": "invalid_request", "error_description": described},
            **{"Retry-After": str(throttled.retry_after)},
        )
    try:
        registered = register(context.db(), _document())
    except RegistrationError as refused:
        context.db().rollback()
        context.record("client.registered", "refused", details={"error": refused.error})
        context.commit()  # the audit row, nothing else
        return _json(400, {"error": refused.error, "error_description": refused.description})
    body = registered.body
    context.record(
        "client.registered",
        client_id=registered.client_id,
        details={
            "token_endpoint_auth_method": body["token_endpoint_auth_method"],
            "grant_types": body["grant_types"],
            "redirect_uris": body["redirect_uris"],
            "scope": body["scope"],
        },
    )
    context.commit()
    return _json(201, body)
