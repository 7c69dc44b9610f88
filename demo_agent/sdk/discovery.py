"""Server metadata and signing keys, found from the issuer alone.

OIDC Discovery 1.0 §4 (`/.well-known/openid-configuration`) gives every endpoint;
§4.3 (and RFC 8414 §3.3) requires the document's `issuer` to equal the issuer the
client was configured with, otherwise an attacker's metadata could be substituted.
The JWKS (RFC 7517) is cached and fetched again once when a token names an unknown
`kid`, which is how a key rotation reaches the client (OIDC Core §10.1.1).
"""

from __future__ import annotations

import threading
from typing import Any

import jwt

from .errors import SdkError
from .http import Transport

WELL_KNOWN = "/.well-known/openid-configuration"


class Discovery:
    """The issuer's metadata document and JWKS, fetched lazily and cached."""

    def __init__(self, issuer: str, transport: Transport) -> None:
        self.issuer = issuer.rstrip("/")
        self.transport = transport
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        """The discovery document; its `issuer` must match exactly (Discovery §4.3)."""
        with self._lock:
            if self._metadata is None:
                document = self.transport.json("GET", self.issuer + WELL_KNOWN)
                if document.get("issuer") != self.issuer:
                    raise SdkError("discovery document names another issuer")
                self._metadata = document
            return self._metadata

    def endpoint(self, name: str) -> str:
        """An endpoint URL from the metadata, e.g. `token_endpoint`."""
        value = self.metadata().get(name)
        if not isinstance(value, str) or not value:
            raise SdkError(f"the server does not advertise {name}")
        return value

    def supports(self, name: str, value: str) -> bool:
        """Whether the metadata list `name` contains `value`."""
        listed = self.metadata().get(name)
        return isinstance(listed, list) and value in listed

    def key(self, kid: str) -> jwt.PyJWK:
        """The signing key `kid` from `jwks_uri`, re-fetching once if it is not cached."""
        with self._lock:
            found = self._keys.get(kid)
        if found is not None:
            return found
        self._refresh_keys()
        with self._lock:
            found = self._keys.get(kid)
        if found is None:
            raise SdkError("the token was signed with a key the issuer does not publish")
        return found

    def _refresh_keys(self) -> None:
        document = self.transport.json("GET", self.endpoint("jwks_uri"))
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or not entry.get("kid"):
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm this client does not use
        with self._lock:
            self._keys = keys
