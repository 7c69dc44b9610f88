"""`AuthClient`: an agent's OAuth 2.0 / OpenID Connect client, driven by discovery.

Everything is found from the issuer (OIDC Discovery §4). The user's tokens live in
memory only; a refresh (RFC 6749 §6) always keeps the newly issued refresh token,
since the server rotates them and a reused one revokes the whole family (RFC 9700
§4.14.2). Delegated tokens for an API come from token exchange (RFC 8693 §2.1) with
the agent's own client-credentials token (RFC 6749 §4.4) as `actor_token`
(`delegation.DelegatedTokens`); CIBA is in `ciba`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from . import ciba, signin
from .delegation import DelegatedTokens
from .discovery import Discovery
from .errors import InvalidGrant, SdkError, SignInError
from .http import TraceHook, Transport
from .loopback import open_system_browser
from .masking import Redactor, mask
from .tokens import TokenSet, verify_id_token

DEFAULT_SCOPE = "openid profile offline_access"


class AuthClient(DelegatedTokens):
    """One registered client (confidential unless `client_secret` is None) at one issuer."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        session: requests.Session | None = None,
        *,
        redirect_uri: str | None = None,
        trace: TraceHook | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        ciba_mode: str = "poll",
        notification_endpoint: str | None = None,
        on_tokens: Callable[[str, TokenSet], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self.redirect_uri = redirect_uri
        self.clock, self.sleep = clock, sleep
        self.redactor = Redactor()
        self.redactor.add(client_secret)
        self.transport = Transport(session, trace, timeout)
        self.discovery = Discovery(issuer, self.transport)
        self.ciba = ciba.CibaSettings(ciba_mode, notification_endpoint)
        # Told of every token response with its grant type (a tour decodes them for learners).
        self.on_tokens = on_tokens
        self._tokens: TokenSet | None = None
        self.id_claims: dict[str, Any] = {}
        self._actor: TokenSet | None = None
        self._username: str | None = None
        self._exchanged: dict[tuple[str, str], TokenSet] = {}
        self._lock = threading.RLock()

    @property
    def issuer(self) -> str:
        return self.discovery.issuer

    @property
    def metadata(self) -> dict[str, Any]:
        """The cached discovery document."""
        return self.discovery.metadata()

    def __repr__(self) -> str:
        secret = mask(self._secret) if self._secret else None
        signed_in = self._tokens is not None
        return (
            f"AuthClient(issuer={self.issuer!r}, client_id={self.client_id!r}, "
            f"client_secret={secret}, signed_in={signed_in})"
        )

    def redact(self, text: str) -> str:
        """`text` with every secret this client has seen masked."""
        return self.redactor.scrub(text)

    # -- the token endpoint ------------------------------------------------------------

    def post(self, endpoint: str, form: dict[str, Any]) -> dict[str, Any]:
        """POST a form to one of the server's endpoints with client authentication.

        RFC 6749 §2.3.1: HTTP Basic with the form-urlencoded id and secret; a public
        client sends only `client_id` in the body.
        """
        data = {k: str(v) for k, v in form.items() if v is not None}
        auth = None
        if self._secret is None:
            data["client_id"] = self.client_id
        else:
            auth = (quote(self.client_id, safe=""), quote(self._secret, safe=""))
        url = self.discovery.endpoint(endpoint)
        return self.transport.json("POST", url, data=data, auth=auth)

    def token_request(self, form: dict[str, Any]) -> TokenSet:
        """RFC 6749 §3.2: one token request; every credential it returns is remembered."""
        body = self.post("token_endpoint", form)
        if "access_token" not in body:
            raise SdkError("the token response carries no access_token")
        tokens = TokenSet.from_response(body, self.clock())
        self.redactor.add(*tokens.secrets())
        if self.on_tokens is not None:
            self.on_tokens(str(form.get("grant_type", "")), tokens)
        return tokens

    # -- the user's tokens -------------------------------------------------------------

    def sign_in(
        self,
        user_agent: signin.UserAgent | None = None,
        *,
        scope: str = DEFAULT_SCOPE,
        redirect_uri: str | None = None,
        announce: Callable[[str], None] = print,
        opener: Callable[[str], bool] = open_system_browser,
        timeout: float = 300.0,
        push: bool | None = None,
        **extra: str,
    ) -> TokenSet:
        """Authorization code + PKCE S256 over the loopback redirect (or `user_agent`).

        Without `user_agent`, a one-shot listener waits on the redirect URI's port while
        `opener` shows the URL in the system browser (when there is one); `announce`
        always prints the URL. `push` sends the request to the pushed authorization
        request endpoint first (RFC 9126); by default only when discovery says the server
        requires it (`require_pushed_authorization_requests`), and `push=False` is then
        refused. A client registered to push (RFC 9126 §6) passes `push=True`: that is
        not in discovery.
        """
        uri = redirect_uri or self.redirect_uri
        if not uri:
            raise SdkError("sign-in needs a redirect_uri")
        pusher = self._pusher(push)
        request = signin.authorization_request(
            self.discovery, self.client_id, uri, scope, pusher, **extra
        )
        callback = signin.run_browser_step(request, user_agent, announce, opener, timeout)
        code = signin.authorization_code(callback, request, self.discovery)
        tokens = self.token_request(signin.code_form(code, request))
        claims = self._check_id_token(tokens, request.nonce, scope)
        with self._lock:
            self._tokens, self.id_claims = tokens, claims
            self._username = None
            self._exchanged.clear()
        return tokens

    def _pusher(self, push: bool | None) -> signin.Pusher | None:
        metadata = self.metadata
        required = metadata.get("require_pushed_authorization_requests") is True
        if push is False and required:
            # RFC 9126 §5: the client MUST push; the request never goes into the URL.
            raise SignInError("the server requires pushed authorization requests (RFC 9126)")
        if not (push or required):
            return None
        if not metadata.get("pushed_authorization_request_endpoint"):
            raise SignInError("the server offers no pushed authorization requests (RFC 9126)")
        return self._push

    def _push(self, parameters: dict[str, str]) -> str:
        """RFC 9126 §2: the request, with client authentication; 201 with `request_uri`."""
        body = self.post("pushed_authorization_request_endpoint", parameters)
        request_uri = body.get("request_uri")
        if not isinstance(request_uri, str) or not request_uri:
            raise SignInError("the pushed authorization response carries no request_uri")
        return request_uri

    def _check_id_token(
        self, tokens: TokenSet, nonce: str | None, requested: str = ""
    ) -> dict[str, Any]:
        if tokens.id_token is None:
            # RFC 6749 §5.1: a response without `scope` was granted the requested one.
            if "openid" in (tokens.scope or requested).split():
                raise SignInError("an openid sign-in returned no ID token")
            return {}
        return verify_id_token(tokens.id_token, self.discovery, self.client_id, nonce, self.clock())

    @property
    def signed_in(self) -> bool:
        """True while the user's tokens are usable (fresh, or refreshable)."""
        tokens = self._tokens
        return tokens is not None and bool(tokens.refresh_token or not tokens.expired(self.clock()))

    @property
    def tokens(self) -> TokenSet | None:
        """The user's current tokens (None before sign-in)."""
        return self._tokens

    def access_token(self) -> str:
        """The user's access token, refreshed first when it is about to expire."""
        with self._lock:
            if not self.signed_in or self._tokens is None:
                raise SdkError("not signed in")
            if self._tokens.expired(self.clock()):
                self.refresh()
            return self._tokens.access_token

    def refresh(self) -> TokenSet:
        """RFC 6749 §6; the new refresh token replaces the old one (rotation)."""
        with self._lock:
            current = self._tokens
            if current is None or not current.refresh_token:
                raise SdkError("no refresh token: sign in again")
            try:
                fresh = self.token_request(
                    {"grant_type": "refresh_token", "refresh_token": current.refresh_token}
                )
            except InvalidGrant:
                self._forget()  # revoked or reused: only a new sign-in helps
                raise
            if fresh.id_token:  # OIDC Core §12.2: same iss, sub and aud as before
                claims = self._check_id_token(fresh, None)
                if claims.get("sub") != self.id_claims.get("sub"):
                    raise SignInError("the refreshed ID token names another user")
                self.id_claims = claims
            fresh.refresh_token = fresh.refresh_token or current.refresh_token
            self._tokens = fresh
            return fresh

    def userinfo(self) -> dict[str, Any]:
        """OIDC Core §5.3 with the user's access token."""
        url = self.discovery.endpoint("userinfo_endpoint")
        return self.transport.json("GET", url, bearer=self.access_token())

    def username(self) -> str | None:
        """`preferred_username` from the ID token, else from userinfo (needs `profile`),
        asked once per sign-in."""
        name = self.id_claims.get("preferred_username") or self._username
        if not name and self.signed_in:
            info = self.userinfo()
            # OIDC Core §5.3.2: a userinfo answer for another subject must not be used.
            expected = self.id_claims.get("sub")
            if expected is not None and info.get("sub") != expected:
                raise SignInError("userinfo describes another user than the ID token")
            name = self._username = info.get("preferred_username")
        return str(name) if name else None

    def _forget(self) -> None:
        with self._lock:
            self._tokens = None
            self._exchanged.clear()
            self.id_claims = {}
            self._username = None

    def sign_out(self) -> None:
        """Revoke the refresh token (RFC 7009 §2.1) and forget every token."""
        current = self._tokens
        self._forget()
        if current is not None and current.refresh_token:
            form = {"token": current.refresh_token, "token_type_hint": "refresh_token"}
            self.post("revocation_endpoint", form)

    # -- CIBA --------------------------------------------------------------------------

    def request_approval(
        self,
        login_hint: str | None,
        scope: str = "openid",
        binding_message: str | None = None,
        authorization_details: list[dict[str, Any]] | None = None,
        requested_expiry: int | None = None,
        **extra: str,
    ) -> ciba.PendingApproval:
        """CIBA Core §7.1: ask the user (on their authentication device) to approve."""
        return ciba.request_approval(
            self, login_hint, scope, binding_message, authorization_details, requested_expiry, extra
        )

    def wait_for_approval(
        self,
        pending: ciba.PendingApproval,
        on_waiting: Callable[[ciba.PendingApproval], None] | None = None,
    ) -> TokenSet:
        """CIBA Core §7.3, §10-11: poll (or wait for the ping) until tokens or a final error."""
        return ciba.wait_for_approval(self, pending, on_waiting)

    def close(self) -> None:
        """Stop the ping receiver, if any, and close the HTTP session."""
        self.ciba.close()
        self.transport.session.close()
