"""Talking to upstream OAuth 2.0 providers, through Authlib's requests client.

Every failure becomes an :class:`UpstreamError` whose text never includes a token:
a timeout, a 5xx, a malformed answer, or an OAuth error code from the provider
(``rejected``, with the code, e.g. ``invalid_grant``).

Each call is over within its `timeout`, whatever the provider does: requests' own
timeout bounds only the connect and each socket read, so a provider answering a byte
at a time could otherwise hold a refresh past its account lease (and a second request
would then send the same refresh token). A `Deadline` cuts such a call off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.requests_client import (  # type: ignore[import-untyped]
    OAuth2Session,
    OAuthError,
)

from vault.deadline import Deadline, WatchedAdapter
from vault.errors import UpstreamError

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class UpstreamClient:
    """A connection's endpoints and credentials, with the secret opened for this call only."""

    client_id: str
    client_secret: str | None
    auth_method: str
    authorize_url: str
    token_url: str
    revocation_url: str | None

    def __repr__(self) -> str:
        return f"UpstreamClient(client_id={self.client_id!r}, token_url={self.token_url!r})"


@dataclass(frozen=True)
class UpstreamTokens:
    access_token: str
    expires_at: float | None
    refresh_token: str | None
    scopes: list[str] | None

    def __repr__(self) -> str:
        return f"UpstreamTokens(expires_at={self.expires_at!r}, scopes={self.scopes!r})"


def _session(client: UpstreamClient, **extra: Any) -> Any:
    session = OAuth2Session(
        client.client_id,
        client.client_secret,
        token_endpoint_auth_method=client.auth_method,
        # RFC 7009 §2.1: revoke with the same client authentication as at the token endpoint
        # (Authlib would otherwise use client_secret_basic whenever there is a secret).
        revocation_endpoint_auth_method=client.auth_method,
        **extra,
    )
    # Never follow a redirect from a token or revocation endpoint: it would step around
    # the https rule checked at registration, and a 307/308 would resend the refresh
    # token and client secret to wherever it points. requests refuses before sending.
    session.max_redirects = 0
    _watch(session)
    return session


def _watch(session: requests.Session) -> None:
    """Put every socket the session opens under the deadline of the call using it."""
    adapter = WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def authorization_url(
    client: UpstreamClient,
    redirect_uri: str,
    scopes: list[str],
    state: str,
    code_verifier: str,
    extra_params: dict[str, Any],
) -> str:
    session = _session(
        client, redirect_uri=redirect_uri, scope=" ".join(scopes), code_challenge_method="S256"
    )
    url, _ = session.create_authorization_url(
        client.authorize_url, state=state, code_verifier=code_verifier, **extra_params
    )
    return str(url)


def _seconds(value: Any) -> float | None:
    """`expires_in` (RFC 6749 §5.1) as positive seconds. Some providers send it as a string;
    ignoring that would leave every token uncached and refresh upstream on each request."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 < value < 10**9 else None  # also refuses nan and inf


def _tokens(raw: Any, clock: Callable[[], float]) -> UpstreamTokens:
    if not isinstance(raw, dict) or not isinstance(raw.get("access_token"), str):
        raise UpstreamError("bad_response", "no access_token in the answer")
    lifetime = _seconds(raw.get("expires_in"))
    expires_at = clock() + lifetime if lifetime is not None else None
    scope = raw.get("scope")
    refresh = raw.get("refresh_token")
    return UpstreamTokens(
        access_token=raw["access_token"],
        expires_at=expires_at,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scopes=scope.split() if isinstance(scope, str) else None,
    )


def _call(action: Callable[[], Any], clock: Callable[[], float], timeout: float) -> UpstreamTokens:
    with Deadline(timeout) as deadline:
        try:
            return _tokens(action(), clock)
        except OAuthError as error:
            raise UpstreamError("rejected", str(getattr(error, "error", "") or "error")) from None
        except (requests.RequestException, ValueError, TypeError, OverflowError) as error:
            if deadline.finish():  # cut off mid-answer: whatever broke, it was the clock
                raise UpstreamError("timeout") from None
            raise _failure(error) from None


def _failure(error: Exception) -> UpstreamError:
    if isinstance(error, requests.Timeout):
        return UpstreamError("timeout")
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else 0
        kind = "unavailable" if status >= 500 or status == 0 else "bad_response"
        return UpstreamError(kind, f"HTTP {status}")
    if isinstance(error, requests.RequestException):
        return UpstreamError("unavailable", type(error).__name__)
    # Not JSON, or fields Authlib cannot read (`"expires_in": [1]`, `1e400`).
    return UpstreamError("bad_response", "unreadable answer")


def exchange_code(
    client: UpstreamClient,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    clock: Callable[[], float],
    timeout: float = DEFAULT_TIMEOUT,
) -> UpstreamTokens:
    with _session(client, redirect_uri=redirect_uri) as session:
        return _call(
            lambda: session.fetch_token(
                client.token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                timeout=timeout,
            ),
            clock,
            timeout,
        )


def refresh(
    client: UpstreamClient,
    refresh_token: str,
    clock: Callable[[], float],
    timeout: float = DEFAULT_TIMEOUT,
) -> UpstreamTokens:
    """A new access token; `refresh_token` in the result is the rotated one or the same."""
    with _session(client) as session:
        return _call(
            lambda: session.refresh_token(
                client.token_url,
                refresh_token=refresh_token,
                timeout=timeout,
            ),
            clock,
            timeout,
        )


def revoke(client: UpstreamClient, token: str, hint: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """RFC 7009 where offered; True when the provider accepted the revocation."""
    if not client.revocation_url:
        return False
    with _session(client) as session, Deadline(timeout) as deadline:
        try:
            response = session.revoke_token(
                client.revocation_url,
                token=token,
                token_type_hint=hint,
                timeout=timeout,
            )
        except (requests.RequestException, OAuthError):
            return False
        accepted = 200 <= response.status_code < 300
        return bool(accepted and not deadline.finish())


def discover(discovery_url: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """RFC 8414 / OIDC discovery document of an upstream (used when registering it)."""
    with requests.Session() as session, Deadline(timeout) as deadline:
        _watch(session)
        try:
            response = session.get(discovery_url, timeout=timeout, allow_redirects=False)
            response.raise_for_status()
            if response.is_redirect:
                raise UpstreamError("bad_response", "discovery document redirects elsewhere")
            document = response.json()
        except (requests.RequestException, ValueError):
            kind = "timeout" if deadline.finish() else "unavailable"
            raise UpstreamError(kind, "discovery document unreachable") from None
    if not isinstance(document, dict):
        raise UpstreamError("bad_response", "discovery document is not an object")
    return document
