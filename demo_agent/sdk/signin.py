"""Sign-in: authorization code flow with PKCE over a loopback redirect.

RFC 6749 §4.1 with RFC 7636 PKCE (S256 only, §4.2), RFC 8252 §7.3 loopback
redirects, OIDC Core §3.1.2.1 `nonce`. The request can be pushed first (RFC 9126 PAR):
its parameters then travel in the back channel and the browser carries only
`client_id` and the `request_uri` the server returned. The authorization response is
checked before the code is used: `state` (RFC 6749 §10.12), the issuer identifier
`iss` (RFC 9207 §2.4, required when discovery says the server sends it), then an error
or a code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .discovery import Discovery
from .errors import SignInError, error_for
from .loopback import LoopbackReceiver, RedirectTarget, open_system_browser
from .masking import mask

UserAgent = Callable[[str], str]
"""Drives the browser part: gets the authorization URL, returns the final redirect URL."""

Pusher = Callable[[dict[str, str]], str]
"""Pushes the request's parameters (RFC 9126 §2.1) and returns the `request_uri`."""


def _random() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    """One authorization request: its URL and the values the response must match."""

    url: str
    redirect_uri: str
    state: str
    nonce: str
    code_verifier: str = field(repr=False)

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r}, state={mask(self.state)})"


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_request(
    discovery: Discovery,
    client_id: str,
    redirect_uri: str,
    scope: str,
    push: Pusher | None = None,
    **extra: str,
) -> AuthorizationRequest:
    """A fresh request with 256-bit state, nonce and code verifier (RFC 7636 §7.1);
    pushed first with `push`, so the URL carries only its reference (RFC 9126 §4)."""
    if not discovery.supports("code_challenge_methods_supported", "S256"):
        raise SignInError("the server does not advertise PKCE with S256")
    state, nonce, verifier = _random(), _random(), _random() + _random()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        **extra,
    }
    if push is not None:
        query = {"client_id": client_id, "request_uri": push(query)}
    url = f"{discovery.endpoint('authorization_endpoint')}?{urlencode(query)}"
    return AuthorizationRequest(url, redirect_uri, state, nonce, verifier)


def authorization_code(
    callback_url: str, request: AuthorizationRequest, discovery: Discovery
) -> str:
    """The code from the redirect, after the state and iss checks; errors become exceptions."""
    parts, expected = urlsplit(callback_url), urlsplit(request.redirect_uri)
    if parts[:3] != expected[:3]:
        raise SignInError("the authorization response came back to another address")
    params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    # Bytes: compare_digest raises TypeError on non-ASCII str, which anyone can send here.
    if not hmac.compare_digest(params.get("state", "").encode(), request.state.encode()):
        raise SignInError("the authorization response's state does not match (RFC 6749 §10.12)")
    _check_iss(params.get("iss"), discovery)
    if "error" in params:
        raise error_for(params)
    code = params.get("code")
    if not code:
        raise SignInError("the authorization response carries neither a code nor an error")
    return code


def _check_iss(iss: str | None, discovery: Discovery) -> None:
    """RFC 9207 §2.4: compare `iss` with the issuer; it is required when advertised."""
    advertised = discovery.metadata().get("authorization_response_iss_parameter_supported")
    if iss is None and advertised is True:
        raise SignInError("the authorization response lacks iss (RFC 9207)")
    if iss is not None and iss != discovery.issuer:
        raise SignInError("the authorization response comes from another issuer (RFC 9207)")


def run_browser_step(
    request: AuthorizationRequest,
    user_agent: UserAgent | None,
    announce: Callable[[str], None],
    opener: Callable[[str], bool] = open_system_browser,
    timeout: float = 300.0,
) -> str:
    """The callback URL: from `user_agent` if given, else through the loopback listener."""
    if user_agent is not None:
        return user_agent(request.url)
    target = RedirectTarget.from_uri(request.redirect_uri)
    with LoopbackReceiver(target, state=request.state) as receiver:
        opened = opener(request.url)
        verb = "Your browser should open; if not, open" if opened else "Open"
        announce(f"{verb} this URL to sign in:\n  {request.url}")
        return receiver.wait(timeout)


def code_form(code: str, request: AuthorizationRequest) -> dict[str, Any]:
    """RFC 6749 §4.1.3 with RFC 7636 §4.5: the token request for the code."""
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.code_verifier,
    }
