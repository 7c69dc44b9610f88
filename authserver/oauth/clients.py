"""The client model as Authlib's `ClientMixin`, and redirect URI matching.

Redirect URIs match exactly (RFC 9700 §4.1.3), except that a public client
registered with a loopback IP redirect may use any port (RFC 8252 §7.3).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin

from ..credentials import matches_digest
from ..registry import ClientSnapshot
from .scopes import scope_list

LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")
# Endpoints at which a public client may identify itself by id only: /token, /revoke and
# /par (RFC 9126 §2: a public client pushes its request as it would send it to /authorize).
PUBLIC_CLIENT_ENDPOINTS = ("revocation", "token", "pushed_authorization")


def _without_port(netloc: str) -> str:
    host, _, port = netloc.rpartition(":")
    return host if host and port.isdigit() and not netloc.endswith("]") else netloc


def loopback_match(registered: str, requested: str) -> bool:
    """RFC 8252 §7.3: same scheme, loopback host, path and query; any port.

    A requested URI that is not a valid URL (an unclosed IPv6 literal, a port out of range
    or not ASCII digits) matches nothing: urllib raises ValueError for it, which was a 500.
    """
    try:
        reg, req = urlsplit(registered), urlsplit(requested)
        if reg.scheme != "http" or req.scheme != "http":
            return False
        reg_host, req_host = _without_port(reg.netloc), _without_port(req.netloc)
        return (
            reg_host in LOOPBACK_HOSTS
            and reg_host == req_host
            and (reg.path, reg.query, reg.fragment) == (req.path, req.query, req.fragment)
            and req.port is not None
        )
    except ValueError:
        return False


class OAuthClient(ClientMixin):
    """A client registration (a snapshot, see `authserver.registry`) as Authlib sees it.

    `reload` reads the registration from the database again, past the cache.
    """

    def __init__(
        self, model: ClientSnapshot, reload: Callable[[], ClientSnapshot | None] | None = None
    ) -> None:
        self.model = model
        self.client_id = model.client_id
        self._reload = reload

    def get_client_id(self) -> str:
        return self.model.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # redirect_uri is always required (OIDC Core §3.1.2.1).

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = self.model.allowed_scopes
        # RFC 6749 §3.3: a scope is a set; a repeated value is one value (and cannot grow the
        # stored scope past what the client is registered for).
        return " ".join(item for item in scope_list(scope) if item in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        registered = self.model.redirect_uris or []
        if redirect_uri in registered:
            return True
        return self.model.is_public and any(loopback_match(uri, redirect_uri) for uri in registered)

    def check_client_secret(self, client_secret: str) -> bool:
        if matches_digest(client_secret, self.model.secret_hash):
            return True
        # Never refuse on a cached row: the secret may have been rotated in another process
        # within the cache TTL. Costs one query per refusal, as every request did before.
        fresh = self._reload() if self._reload is not None else None
        if fresh is None:
            return False
        self.model = fresh
        return matches_digest(client_secret, fresh.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.model.is_public:
            return method == "none" and endpoint in PUBLIC_CLIENT_ENDPOINTS
        return method == self.model.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in (self.model.response_types or [])

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in (self.model.grant_types or [])
