"""Checks on an authorization request beyond RFC 6749's core (an ordered list of small checks).

Runs after the client and redirect URI are known to be good, so every error
here may redirect back to the client with `state` and `iss`.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError

from ... import rar
from ..errors import (
    InvalidAuthorizationDetailsError,
    InvalidTargetError,
    RequestNotSupportedError,
    RequestUriNotSupportedError,
)
from ..scopes import known_scopes, resolve_resources, scope_list

PROMPT_VALUES = {"none", "login", "consent", "select_account"}
MAX_STATE_LENGTH = 2000
MAX_NONCE_LENGTH = 500
MAX_ID_TOKEN_HINT_LENGTH = 8192  # our ID tokens are about 1 KB; it is kept in pushed requests
# `client_id` and `redirect_uri` are checked before the redirect URI is trusted (a page).
SINGLE_VALUED = (
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "response_mode",
    "request",
    "request_uri",
    "authorization_details",
)
# Every parameter /authorize reads; RFC 6749 §3.1: any other "MUST" be ignored.
READ_PARAMETERS = frozenset(SINGLE_VALUED) | {
    "client_id",
    "redirect_uri",
    "resource",
    "id_token_hint",
}


def check_single_valued(grant: Any) -> None:
    """RFC 6749 §3.1: parameters MUST NOT be included more than once (invalid_request)."""
    datalist = grant.request.payload.datalist
    for name in SINGLE_VALUED:
        if len(datalist.get(name, [])) > 1:
            raise InvalidRequestError(f"Multiple '{name}' in request.")


def check_pushed_if_required(grant: Any) -> None:
    """RFC 9126 §5 and §6: when the server (AUTHSERVER_REQUIRE_PAR) or the client's
    registration requires pushed requests, one sent straight to /authorize is refused."""
    required = (
        grant.server.runtime.settings.require_par
        or grant.request.client.model.require_pushed_authorization_requests
    )
    if required and not getattr(grant.request, "pushed", False):
        raise InvalidRequestError("Authorization requests must be pushed to /par first.")


def check_unsupported_parameters(grant: Any) -> None:
    """OIDC Core §6: request objects are not supported; say so with the registered codes."""
    data = grant.request.payload.data
    if "request" in data:
        raise RequestNotSupportedError("The 'request' parameter is not supported.")
    if "request_uri" in data:
        raise RequestUriNotSupportedError("The 'request_uri' parameter is not supported.")
    if data.get("response_mode", "query") != "query":
        raise InvalidRequestError("Only response_mode=query is supported.")


def is_valid_state(state: str) -> bool:
    """RFC 6749 Appendix A.5: state = 1*VSCHAR (printable ASCII), within our length limit."""
    return 0 < len(state) <= MAX_STATE_LENGTH and all(0x20 <= ord(c) <= 0x7E for c in state)


def check_lengths(grant: Any) -> None:
    data = grant.request.payload.data
    if len(data.get("state") or "") > MAX_STATE_LENGTH:
        raise InvalidRequestError("'state' is too long.")
    if data.get("state") and not is_valid_state(data["state"]):
        raise InvalidRequestError("'state' must be printable ASCII.")
    if len(data.get("nonce") or "") > MAX_NONCE_LENGTH:
        raise InvalidRequestError("'nonce' is too long.")
    if len(data.get("id_token_hint") or "") > MAX_ID_TOKEN_HINT_LENGTH:
        raise InvalidRequestError("'id_token_hint' is too long.")


def check_prompt_and_max_age(grant: Any) -> None:
    """OIDC Core §3.1.2.1: `prompt` values, `none` alone; `max_age` a non-negative integer."""
    data = grant.request.payload.data
    prompts = scope_list(data.get("prompt"))
    if not set(prompts) <= PROMPT_VALUES:
        raise InvalidRequestError("Unknown 'prompt' value.")
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("'prompt=none' cannot be combined with other values.")
    max_age = data.get("max_age")
    # isascii: str.isdigit() accepts '²', which int() then refuses (a 500).
    if max_age is not None and not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 9):
        raise InvalidRequestError("'max_age' must be a non-negative integer.")
    grant.request.prompts = prompts
    grant.request.max_age = int(max_age) if max_age is not None else None


def check_scopes(grant: Any) -> None:
    """Every scope must exist and be allowed to the client; never silently dropped."""
    asked = scope_list(grant.request.payload.scope)
    if not set(asked) <= known_scopes(grant.server.db()):
        raise InvalidScopeError("The request asks for an unknown scope.")
    if not set(asked) <= grant.request.client.model.allowed_scopes:
        raise InvalidScopeError("The client may not request this scope.")


def check_resources(grant: Any) -> None:
    """RFC 8707 §2: each `resource` names a registered resource server."""
    values = grant.request.payload.datalist.get("resource", [])
    grant.request.resources = resolve_resources(grant.server.resource, values)


def check_authorization_details(grant: Any) -> None:
    """RFC 9396 §2: known types, valid against their schema; they name the resource if none was."""
    data = grant.request.payload.data
    try:
        entries = rar.parse(data.get("authorization_details"))
        validated = rar.validate(grant.server.db(), entries) if entries else None
    except rar.InvalidDetails as error:
        raise InvalidAuthorizationDetailsError(str(error)) from None
    grant.request.authorization_details = entries
    if validated is None:
        return
    named = {server.id for server in grant.request.resources}
    if not named:
        grant.request.resources = validated.resources
    elif {server.id for server in validated.resources} != named:
        # A token approving an action goes only to the API that performs it: any other
        # audience could replay it there (RFC 9700 §2.3, audience restriction).
        raise InvalidTargetError(
            "The authorization_details must name exactly the resources they belong to."
        )


CHECKS = (
    check_single_valued,
    check_pushed_if_required,
    check_unsupported_parameters,
    check_lengths,
    check_prompt_and_max_age,
    check_scopes,
    check_resources,
    check_authorization_details,
)


class AuthorizationRequestChecks:
    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.run)

    def run(self, grant: Any, redirect_uri: str) -> None:
        for check in CHECKS:
            check(grant)
