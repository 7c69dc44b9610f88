"""Token, introspection and revocation endpoints (RFC 6749 §3.2, RFC 7662, RFC 7009).

Before a grant runs: form-encoded body only (RFC 6749 §3.2), no repeated
parameters (§3.2: "MUST NOT be included more than once"), a `grant_type` present,
and HTTP Basic client credentials that are well formed (§2.3.1). Authlib still
authenticates the client. A response other than 200 is audited as a refusal and
leaves nothing behind.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from flask import Blueprint, Response, request

from . import approvals, context
from .extensions import server

bp = Blueprint("token", __name__)

FORM_TYPE = "application/x-www-form-urlencoded"
# RFC 8693 §2.1 and RFC 8707 allow these to repeat.
REPEATABLE = {"resource", "audience"}
# RFC 7617 §2: "The user-id and password MUST NOT contain any control characters."
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def precheck() -> OAuth2Error | None:
    """What every POST from a client gets before its flow runs (/token, /introspect, /revoke,
    /bc-authorize, /par): a form body, nothing in the URL, no repeats, well-formed Basic."""
    if request.mimetype != FORM_TYPE:
        return InvalidRequestError(f"The request body must be {FORM_TYPE}.")
    if request.args:
        return InvalidRequestError("Parameters belong in the request body, not the URL.")
    repeated = [k for k in request.form if k not in REPEATABLE and len(request.form.getlist(k)) > 1]
    if repeated:
        return InvalidRequestError(f"Parameter '{_printable(sorted(repeated)[0])}' is repeated.")
    try:
        _basic_credentials()
    except ValueError:
        # §5.2: credentials sent in the Authorization header are refused with 401 and a
        # Basic challenge, as a wrong secret is (Authlib's InvalidClientError adds it).
        return InvalidClientError(
            description="The client credentials in the Authorization header are malformed.",
            status_code=401,
        )
    return None


def _basic_credentials() -> tuple[str, str] | None:
    """The client id and secret of a Basic Authorization header, None without one.

    RFC 6749 §2.3.1: base64 (RFC 7617 §2) of `id:secret`, each form-encoded UTF-8.
    Anything else raises ValueError: Authlib decodes the header unguarded, and bytes
    that are not UTF-8 (or a NUL, on PostgreSQL) became a 500.
    """
    parts = request.headers.get("Authorization", "").split(None, 1)  # as Authlib splits it
    if not parts or parts[0].lower() != "basic":
        return None
    # binascii.Error and UnicodeDecodeError are ValueErrors, as is a non-ASCII header.
    decoded = base64.b64decode(parts[-1] if len(parts) == 2 else "", validate=True).decode()
    if ":" not in decoded:
        raise ValueError("Basic credentials without a colon")
    client_id, secret = (unquote(part, errors="strict") for part in decoded.split(":", 1))
    if CONTROL.search(client_id + secret):
        raise ValueError("control character in Basic credentials")
    return client_id, secret


def _printable(name: str) -> str:
    """A parameter name fit for error_description (RFC 6749 §5.2 characters), else a stand-in."""
    allowed = all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in name)
    return name if allowed and len(name) <= 64 else "(unprintable name)"


# Protocol states rather than refusals: a CIBA client polling is not a security event.
UNAUDITED_ERRORS = {"authorization_pending"}


def audit_refusal(response: Response, event: str) -> Response:
    body: dict[str, Any] = response.get_json(silent=True) or {}
    if body.get("error") in UNAUDITED_ERRORS or context.refusal_recorded():
        return response  # a flow that audited its own refusal, with its details, says it once
    details = {"error": body.get("error")}
    grant_type = _grant_type()
    if grant_type is not None:  # /token only: the other endpoints have no grant type
        details["grant_type"] = grant_type
    context.record(event, "refused", client_id=_client_hint(), details=details)
    return response


def _client_hint() -> str | None:
    value = request.form.get("client_id")
    if not value:
        try:
            credentials = _basic_credentials()
        except ValueError:  # malformed: it names no client
            credentials = None
        value = credentials[0] if credentials else None
    return value[:64] if value else None


def _grant_type() -> str | None:
    value = request.form.get("grant_type")
    return value[:100] if value else None


def _run(handler: Any, event: str) -> Response:
    return _answer(handler, event, precheck())


def _answer(handler: Any, event: str, error: OAuth2Error | None) -> Response:
    if error is not None:
        return audit_refusal(server().handle_error_response(None, error), event)
    response: Response = handler()
    if response.status_code != 200:
        return audit_refusal(response, event)
    context.commit()
    return response


@bp.post("/token")
def token() -> Response:
    error = precheck()
    # After the prechecks, so a grant_type sent in the URL is reported as such.
    if error is None and not request.form.get("grant_type"):
        error = InvalidRequestError("Missing 'grant_type'.")
    return _answer(server().create_token_response, "token", error)


@bp.post("/introspect")
def introspect() -> Response:
    return _run(lambda: server().create_endpoint_response("introspection"), "token.introspected")


@bp.post("/revoke")
def revoke() -> Response:
    return _run(lambda: server().create_endpoint_response("revocation"), "token.revoked")


@bp.post("/bc-authorize")
def backchannel_authorize() -> Response:
    """CIBA Core §7: the agent asks; the user is told on the approval page (and webhook)."""
    response = _run(
        lambda: server().create_endpoint_response("backchannel_authentication"), "ciba.requested"
    )
    if response.status_code == 200:
        context.runtime().dispatcher.wake()
        approvals.announce_change()  # open approval pages in this process show it at once
    return response
