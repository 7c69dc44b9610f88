"""Client authentication at the token and revocation endpoints (RFC 6749 §2.3.1).

Two methods: ``client_secret_basic`` (HTTP Basic with form-urlencoded id and
secret) and ``client_secret_post`` (``client_id`` and ``client_secret`` in the
body). Using both at once is refused (§2.3). Secrets are compared as SHA-256
digests with ``hmac.compare_digest``, and an unknown client costs the same work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import unquote_plus

from flask import Request

from .config import Client
from .errors import InvalidClient, InvalidRequest

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
_UNKNOWN_CLIENT_DIGEST = hashlib.sha256(b"no such client").digest()


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """(client_id, secret) from ``Authorization: Basic``, or None when absent."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if not header or scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClient("malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)


def _credentials(request: Request) -> tuple[str, str]:
    basic = _basic_credentials(request)
    if basic is not None:
        if "client_secret" in request.form:
            raise InvalidRequest("use exactly one client authentication method")
        if request.form.get("client_id", basic[0]) != basic[0]:
            raise InvalidRequest("client_id does not match the authenticated client")
        return basic
    client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
    if not client_id or secret is None:
        raise InvalidClient("client authentication is required")
    return client_id, secret


def authenticate_client(clients: dict[str, Client], request: Request) -> Client:
    """The authenticated client, or InvalidClient (401) without saying which part failed."""
    client_id, secret = _credentials(request)
    client = clients.get(client_id)
    expected = client.secret_sha256 if client else _UNKNOWN_CLIENT_DIGEST
    presented = hashlib.sha256(secret.encode("utf-8")).digest()
    if not hmac.compare_digest(presented, expected) or client is None:
        raise InvalidClient("client authentication failed")
    return client
