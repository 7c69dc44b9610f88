"""Backchannel authentication endpoint, POST /bc-authorize (CIBA Core §7).

An ordered list of checks, then a pending request row. The response carries the
`auth_req_id` (256-bit, stored as a digest), `expires_in` and `interval` (§7.3).
Signed request objects and user codes are not supported and say so.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from authlib.oauth2.rfc6749.errors import (
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.token_endpoint import TokenEndpoint

from ... import rar
from ...credentials import digest, new_secret_value
from ...models import BackchannelRequest, User, new_id, now
from ..errors import (
    InvalidAuthorizationDetailsError,
    InvalidBindingMessageError,
    InvalidTargetError,
)
from ..scopes import known_scopes, resolve_resources, scope_list
from . import GRANT_TYPE
from .announce import announce
from .hints import resolve_user
from .sealing import seal_callback

MAX_BINDING_MESSAGE = 128
MAX_NOTIFICATION_TOKEN = 1024
EXPIRY = re.compile(r"[0-9]{1,9}")
HIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}
# RFC 6750 §2.1 b64token: what may follow "Bearer " in the callback's Authorization header.
# Matched with fullmatch: "$" alone also matches before a trailing newline.
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _check_unsupported(form: Any) -> None:
    for name in ("request", "request_uri"):
        if name in form:
            raise InvalidRequestError("Signed authentication requests are not supported.")
    if "user_code" in form:
        raise InvalidRequestError("user_code is not supported (see discovery).")


def _check_scope(session: Any, client: Any, scope: str | None) -> list[str]:
    scopes = scope_list(scope)
    if "openid" not in scopes:
        raise InvalidScopeError("CIBA requests must include the openid scope.")
    if not set(scopes) <= known_scopes(session) or not set(scopes) <= client.allowed_scopes:
        raise InvalidScopeError("The request asks for a scope the client may not have.")
    return scopes


def _check_binding_message(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip() or len(value) > MAX_BINDING_MESSAGE:
        raise InvalidBindingMessageError(
            f"binding_message must be 1 to {MAX_BINDING_MESSAGE} characters."
        )
    # Control, format (bidi overrides, zero-width), private-use and unassigned characters
    # and line separators could make the code the user compares read as another one.
    if any(unicodedata.category(char) in HIDDEN_CATEGORIES for char in value):
        raise InvalidBindingMessageError("binding_message may not contain control characters.")
    return value


def _check_expiry(value: str | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    # ASCII digits only: str.isdigit() also accepts '²' (int() then fails: a 500) and
    # other scripts' digits, and int() refuses very long strings.
    if not EXPIRY.fullmatch(value) or not 1 <= int(value) <= maximum:
        raise InvalidRequestError(f"requested_expiry must be an integer from 1 to {maximum}.")
    return int(value)


def _check_notification_token(mode: str, value: str | None) -> str | None:
    if mode == "poll":
        return None
    if not value:
        raise InvalidRequestError("client_notification_token is required for ping and push.")
    if len(value) > MAX_NOTIFICATION_TOKEN or not B64TOKEN.fullmatch(value):
        raise InvalidRequestError("client_notification_token is not a valid bearer token.")
    return value


def _targets(
    server: Any, session: Any, form: Any, details: list[dict[str, Any]] | None
) -> tuple[list, Any]:
    """The resource (RFC 8707) or, when absent, the one that registered the detail types."""
    resources = resolve_resources(server.resource, form.getlist("resource"))
    try:
        validated = rar.validate(session, details) if details else None
    except rar.InvalidDetails as error:
        raise InvalidAuthorizationDetailsError(str(error)) from None
    if validated is not None:
        owners = {server.id for server in validated.resources}
        if not resources:
            resources = validated.resources
        elif owners != {server.id for server in resources}:
            # A token approving an action goes only to the API that performs it: any other
            # audience could replay it there (RFC 9700 §2.3, audience restriction).
            raise InvalidTargetError(
                "The authorization_details must name exactly the resources they belong to."
            )
    return resources, details


class BackchannelAuthenticationEndpoint(TokenEndpoint):
    ENDPOINT_NAME = "backchannel_authentication"
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        client = self.authenticate_endpoint_client(request)
        if not client.check_grant_type(GRANT_TYPE):
            raise UnauthorizedClientError("The client is not registered for CIBA.")
        form, session, runtime = request.form, self.server.db(), self.server.runtime
        settings, model = runtime.settings, client.model
        _check_unsupported(form)
        scopes = _check_scope(session, model, form.get("scope"))
        user = resolve_user(session, runtime.minter, form, model.client_id)
        binding_message = _check_binding_message(form.get("binding_message"))
        expiry = _check_expiry(
            form.get("requested_expiry"), settings.ciba_default_expiry, settings.ciba_max_expiry
        )
        mode = model.backchannel_token_delivery_mode or "poll"
        notification_token = _check_notification_token(mode, form.get("client_notification_token"))
        try:
            details = rar.parse(form.get("authorization_details"))
        except rar.InvalidDetails as error:
            raise InvalidAuthorizationDetailsError(str(error)) from None
        resources, details = _targets(self.server, session, form, details)
        auth_req_id = new_secret_value()
        row = self._create(model, user, scopes, resources, details, binding_message, expiry, mode)
        row.auth_req_hash = digest(auth_req_id)
        if notification_token is not None:
            row.callback_sealed = seal_callback(
                runtime.keyring, row, auth_req_id, notification_token
            )
        session.add(row)
        session.flush()
        announce(self.server, row, user, model)
        return (
            200,
            {"auth_req_id": auth_req_id, "expires_in": expiry, "interval": row.interval},
            self.server.JSON_HEADERS,
        )

    def _create(
        self,
        client: Any,
        user: User,
        scopes: list[str],
        resources: list[Any],
        details: Any,
        binding_message: str | None,
        expiry: int,
        mode: str,
    ) -> BackchannelRequest:
        moment = now()
        row = BackchannelRequest(
            id=new_id(),
            client_id=client.client_id,
            user_id=user.id,
            scope=" ".join(scopes),
            resources=[server.identifier for server in resources],
            authorization_details=details,
            binding_message=binding_message,
            delivery_mode=mode,
            created_at=moment,  # the same second as expires_at counts from
            expires_at=moment + expiry,
            interval=self.server.runtime.settings.ciba_interval,
            changed_at_ms=moment * 1000,
        )
        return row
