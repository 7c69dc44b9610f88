"""Tokens the agent obtains for itself and, by delegation, for one API at a time.

- RFC 6749 §4.4: the agent's own client-credentials token, used as the `actor_token`.
- RFC 8693 §2.1: the user's access token as `subject_token` exchanged for a short-lived
  token for one audience and scope; the result names the agent in `act` (§4.1). Cached
  per (audience, scope) until shortly before it expires.
- The token vault's federated tokens (the same exchange with
  `requested_token_type=urn:authserver:token-type:federated-access-token` and
  `connection`): upstream access tokens, never cached here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import InvalidRequest
from .tokens import TokenSet

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
FEDERATED_TOKEN_TYPE = "urn:authserver:token-type:federated-access-token"


class DelegatedTokens:
    """Mixed into `AuthClient`, which provides the token endpoint and the user's token."""

    clock: Callable[[], float]
    _lock: threading.RLock
    _actor: TokenSet | None
    _exchanged: dict[tuple[str, str], TokenSet]

    def token_request(self, form: dict[str, Any]) -> TokenSet:
        raise NotImplementedError

    def access_token(self) -> str:
        raise NotImplementedError

    def client_credentials(self, scope: str | None = None) -> TokenSet:
        """RFC 6749 §4.4: the agent's own token (the actor token), cached until near expiry."""
        with self._lock:
            if self._actor is None or self._actor.expired(self.clock()):
                form = {"grant_type": "client_credentials", "scope": scope}
                self._actor = self.token_request(form)
            return self._actor

    def _exchange_form(self, **extra: str | None) -> dict[str, Any]:
        """RFC 8693 §2.1: the user's token as subject, the agent's own token as actor."""
        return {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": self.access_token(),
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "actor_token": self.client_credentials().access_token,
            "actor_token_type": ACCESS_TOKEN_TYPE,
            **extra,
        }

    def exchange(self, audience: str, scope: str) -> TokenSet:
        """A short-lived token for one API with `act` naming this agent (RFC 8693 §4.1)."""
        key = (audience, scope)
        with self._lock:
            cached = self._exchanged.get(key)
            if cached is not None and not cached.expired(self.clock()):
                return cached
            tokens = self.token_request(self._exchange_form(audience=audience, scope=scope))
            self._exchanged[key] = tokens
            return tokens

    def federated_token(self, connection: str, scope: str | None = None) -> TokenSet:
        """An upstream access token from the token vault; never cached by the SDK.

        Raises `ConnectionRequired` (with `connect_uri`) when the user must connect the
        account first and `TemporarilyUnavailable` when the upstream provider failed.
        """
        if not connection:
            raise InvalidRequest(description="a connection name is required")
        form = self._exchange_form(
            requested_token_type=FEDERATED_TOKEN_TYPE, connection=connection, scope=scope
        )
        return self.token_request(form)
