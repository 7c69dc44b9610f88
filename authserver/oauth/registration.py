"""RFC 7591 dynamic client registration, off unless AUTHSERVER_REGISTRATION_ENABLED.

Whoever reaches `POST /register` may register a client, so what can be registered
there is narrow: a client of the authorization code grant (with refresh tokens),
response type `code`, authenticated by a secret or public with PKCE. It never skips
consent, cannot use client credentials, token exchange or CIBA, and is allowed no API
audience of its own; the consent page says its name is unverified (RFC 7591 §5).
Operators register every other kind of client with `authserver clients create`.

The document's shape is a JSON Schema (jsonschema); the values are checked against
what this server supports by Authlib's RFC 7591 metadata claims; redirect URIs by
the rules every client's are (RFC 6749 §3.1.2, RFC 8252 §7). Metadata this server
does not keep (`logo_uri`, `contacts`, ...) is checked and then ignored, as §2
allows, and not returned as registered. RFC 7592 (reading, updating and deleting a
registration) is not offered: a registered client is changed by an operator.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc7591 import ClientMetadataClaims
from joserfc.errors import InvalidClaimError, JoseError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sqlalchemy.orm import Session

from ..admin import AdminError, check_redirect_uri, create_client
from ..keys import SUPPORTED_ALGS
from .scopes import known_scopes

GRANTS = ["authorization_code", "refresh_token"]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
MAX_URIS = 10
# A URI (RFC 3986) is printable ASCII without spaces; anything else is refused as shape.
URI = {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"^[\x21-\x7e]+$"}
URI_LIST = {"type": "array", "items": URI, "maxItems": MAX_URIS, "uniqueItems": True}
SCOPE_TOKENS = r"^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$"  # RFC 6749 §3.3
NAMES = {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 10}

METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "redirect_uris": URI_LIST,
        "post_logout_redirect_uris": URI_LIST,
        "grant_types": NAMES,
        "response_types": NAMES,
        "token_endpoint_auth_method": {"type": "string", "maxLength": 100},
        "client_name": {"type": "string", "minLength": 1, "maxLength": 200},
        "scope": {"type": "string", "maxLength": 1000, "pattern": SCOPE_TOKENS},
        "id_token_signed_response_alg": {"type": "string", "maxLength": 16},
        # RFC 9126 §6: a client may ask that its requests be accepted only when pushed.
        "require_pushed_authorization_requests": {"type": "boolean"},
        # Not kept, but RFC 7591 §2 gives their types; a wrong one is still an error.
        "client_uri": URI,
        "logo_uri": URI,
        "tos_uri": URI,
        "policy_uri": URI,
        "jwks_uri": URI,
        "jwks": {
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": {"type": "object"}, "maxItems": 10}},
        },
        "contacts": {"type": "array", "items": {"type": "string", "maxLength": 320}},
        "software_id": {"type": "string", "maxLength": 200},
        "software_version": {"type": "string", "maxLength": 200},
    },
}
METADATA = Draft202012Validator(METADATA_SCHEMA)


class RegistrationError(Exception):
    """An RFC 7591 §3.2.2 error: `error` code and a description safe to send back."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Registered:
    client_id: str
    body: dict[str, Any]  # the RFC 7591 §3.2.1 response, secret included


def register(session: Session, document: Any) -> Registered:
    """Validate a client metadata document and register the client it describes."""
    metadata = _checked_shape(document)
    _check_supported(session, metadata)
    grant_types = metadata.get("grant_types") or ["authorization_code"]
    redirect_uris = _checked_redirect_uris(metadata.get("redirect_uris") or [])
    post_logout = _checked_redirect_uris(metadata.get("post_logout_redirect_uris") or [])
    if not redirect_uris:
        # RFC 7591 §2: clients of redirect-based flows MUST register their redirect URIs.
        raise RegistrationError(
            "invalid_redirect_uri", "The authorization_code grant needs redirect_uris."
        )
    alg = metadata.get("id_token_signed_response_alg", "RS256")
    if alg not in SUPPORTED_ALGS:
        raise RegistrationError(
            "invalid_client_metadata", "The id_token_signed_response_alg is not supported."
        )
    client_id = secrets.token_urlsafe(16)
    try:
        registered = create_client(
            session,
            client_id=client_id,
            name=metadata.get("client_name") or client_id,
            auth_method=metadata["token_endpoint_auth_method"],
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout,
            grant_types=list(dict.fromkeys(grant_types)),
            scope=metadata.get("scope") or "openid",
            id_token_alg=alg,
            self_registered=True,
            require_par=metadata.get("require_pushed_authorization_requests", False),
        )
    except AdminError:  # every rule it applies was checked above; kept as a backstop
        raise RegistrationError("invalid_client_metadata", "The metadata was refused.") from None
    return Registered(client_id, _response(registered.client, registered.client_secret))


def _checked_shape(document: Any) -> dict[str, Any]:
    error = best_match(METADATA.iter_errors(document))
    if error is not None:
        where = next((str(part) for part in error.path if isinstance(part, str)), "")
        if where in ("redirect_uris", "post_logout_redirect_uris"):
            raise _bad_redirect_uri()  # RFC 7591 §3.2.2: the redirect URI code, whatever is wrong
        described = f"The {where} value is malformed." if where else "Send a JSON object."
        raise RegistrationError("invalid_client_metadata", described)
    metadata: dict[str, Any] = document
    name = metadata.get("client_name", "x")
    # Shown to people on the consent page: letters, marks, numbers, punctuation, symbols and
    # spaces only. Not a control or format character (a right-to-left override shows another
    # name than the one registered), nor a lone surrogate (no UTF-8 for it: the database
    # refuses it), a private-use or unassigned code point, nor nothing but spaces.
    if not name.strip() or any(unicodedata.category(char)[0] == "C" for char in name):
        raise RegistrationError("invalid_client_metadata", "The client_name is malformed.")
    return metadata


def _check_supported(session: Session, metadata: dict[str, Any]) -> None:
    """Authlib's RFC 7591 claims: grant and response types, auth method and scopes that
    this server lets a self-registered client have; URIs well formed. Sets the default
    `token_endpoint_auth_method` (client_secret_basic) in `metadata`."""
    options = ClientMetadataClaims.get_claims_options(
        {
            "grant_types_supported": GRANTS,
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "scopes_supported": sorted(known_scopes(session)),
        }
    )
    claims = ClientMetadataClaims(metadata, {}, options, {})
    try:
        claims.validate()
    except InvalidClaimError as error:
        if error.claim in ("redirect_uris", "post_logout_redirect_uris"):
            raise _bad_redirect_uri() from None
        raise RegistrationError(
            "invalid_client_metadata", f"The {error.claim} value is not supported here."
        ) from None
    except (JoseError, ValueError, TypeError, KeyError):  # e.g. a JWK the key parser rejects
        raise RegistrationError("invalid_client_metadata", "The metadata was refused.") from None
    metadata["token_endpoint_auth_method"] = claims["token_endpoint_auth_method"]
    response_types = metadata.get("response_types") or ["code"]
    grants = set(metadata.get("grant_types") or ["authorization_code"])
    if "authorization_code" not in grants or response_types != ["code"]:
        # RFC 7591 §2.1: `code` goes with authorization_code; a refresh-only client is none.
        raise RegistrationError(
            "invalid_client_metadata",
            "Register the authorization_code grant with the response type code.",
        )


def _checked_redirect_uris(uris: list[str]) -> list[str]:
    try:
        return [check_redirect_uri(uri) for uri in uris]
    except (AdminError, ValueError):  # ValueError: urlsplit's, e.g. an unclosed IPv6 literal
        raise _bad_redirect_uri() from None


def _bad_redirect_uri() -> RegistrationError:
    return RegistrationError(
        "invalid_redirect_uri",
        "Redirect URIs must be absolute and without fragment: https, http only on "
        "loopback, or a reverse-DNS private-use scheme (RFC 8252).",
    )


def _response(client: Any, secret: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "client_name": client.client_name,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": list(client.response_types),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": client.scope,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
    }
    if client.post_logout_redirect_uris:
        body["post_logout_redirect_uris"] = list(client.post_logout_redirect_uris)
    if secret is not None:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0  # RFC 7591 §3.2.1: does not expire
    return body
