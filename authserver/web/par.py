"""The pushed authorization request endpoint, POST /par (RFC 9126 §2).

An API for clients, answered in JSON like the token endpoint (§2.3): the client
authenticates as it does at /token (a public client names itself with `client_id`),
the request is checked as /authorize checks it, and nothing is redirected: an error
goes back to the client that pushed, never to a redirect URI. A good request is kept
and answered with 201, its `request_uri` and `expires_in` (§2.2).
"""

from __future__ import annotations

import json

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from ..oauth import par
from ..oauth.errors import PushTooLargeError, TooManyPushedRequestsError
from ..oauth.requests import StrictOAuth2Request
from . import context
from .extensions import push_throttle, server
from .token import audit_refusal, precheck

bp = Blueprint("par", __name__)

EVENT = "par.pushed"
ENDPOINT = "pushed_authorization"  # the name OAuthClient.check_endpoint_auth_method is asked
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# Parameter names and values together, in UTF-8 bytes (a character count would let four
# times as much through in emoji). The largest request /authorize accepts (16 KB of
# authorization_details, a 2,000-character state, ...) fits well within it.
MAX_PUSH_BYTES = 32 * 1024


class _AddressThrottled(TooManyPushedRequestsError):
    """Audited once per address and window when counted, not again for every push."""


def _push() -> Response:
    pairs = request.form.items(multi=True)
    if sum(len(name.encode()) + len(value.encode()) for name, value in pairs) > MAX_PUSH_BYTES:
        raise PushTooLargeError("The pushed request is too large.")
    if "request_uri" in request.form:
        # §2.1: "The request_uri authorization request parameter is one exception, and it
        # MUST NOT be provided."
        raise InvalidRequestError("A pushed request must not contain 'request_uri'.")
    oauth_request = server().create_oauth2_request(None)
    client = server().authenticate_client(oauth_request, CLIENT_AUTH_METHODS, ENDPOINT)
    named = request.form.get("client_id")
    if named is not None and named != client.client_id:
        # §2.1: the authorization request's client_id is the authenticated client.
        raise InvalidRequestError("'client_id' is not the authenticated client.")
    # A public client's push proves nothing about who sent it, and a client anyone could
    # register (RFC 7591) answers for nobody: both are counted per address, under the
    # smaller cap of open requests.
    unaccountable = client.model.is_public or client.model.self_registered
    if unaccountable:
        _count_unaccountable_push()
    parameters = par.authorization_parameters(request.form.items(multi=True))
    if named is None:
        parameters.append(("client_id", client.client_id))
    _check_as_authorize_would(parameters)
    request_uri, lifetime = par.push(context.db(), client.client_id, parameters, unaccountable)
    context.record(EVENT, client_id=client.client_id)
    context.commit()
    body = {"request_uri": request_uri, "expires_in": lifetime}
    return Response(json.dumps(body), status=201, headers=server().JSON_HEADERS)


def _count_unaccountable_push() -> None:
    """Count a push of a public or self-registered client per address."""
    throttled = push_throttle().reserve(context.client_address())
    if throttled is not None and throttled.first:
        context.record(EVENT, "throttled")  # one row per address and window, not per push
    context.commit()  # the attempt stays counted whatever happens next
    if throttled is not None:
        raise _AddressThrottled(
            throttled.retry_after, "Too many pushed requests from this address; try again later."
        )


def _check_as_authorize_would(parameters: list[tuple[str, str]]) -> None:
    """§2.1: "The AS MUST validate the request the same way as at the authorization
    endpoint." The same grant and checks; an error here is answered, not redirected."""
    pushed = StrictOAuth2Request(request, MultiDict(parameters))
    grant = server().get_authorization_grant(pushed)
    grant.validate_authorization_request()


@bp.post("/par")
def pushed_authorization_request() -> Response:
    error = precheck()
    if error is None:
        try:
            return _push()
        except OAuth2Error as raised:
            error = raised
    error.redirect_uri = None  # §2.3: always the JSON answer to the client, never a redirect
    response = server().handle_error_response(None, error)
    if isinstance(error, _AddressThrottled):
        return response  # a flood is the one "throttled" row, not a row per push
    return audit_refusal(response, EVENT)
