"""The SDK's sign-in against a live authserver: code + PKCE over a loopback redirect.

RFC 6749 §4.1, RFC 7636 (S256), RFC 8252 §7.3 (loopback redirect), RFC 9207 (`iss`),
OIDC Core §3.1.3.7 (ID token validation), RFC 6749 §6 with rotation (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from demo_agent.sdk import AccessDenied, AuthClient, InvalidGrant, SdkError, SignInError
from demo_agent.sdk.loopback import RedirectTarget
from tests.support.db import issued_counts

from .conftest import AGENT_SCOPE, register_agent


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _with(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (None removes one)."""
    query = _query(url) | changes
    parts = urlsplit(url)
    kept = {k: v for k, v in query.items() if v is not None}
    return urlunsplit(parts._replace(query=urlencode(kept)))


def test_sign_in_with_pkce_validates_the_id_token(scene):
    """RFC 7636 §4.3: S256 challenge in the request; OIDC §3.1.3.7: a valid ID token."""
    seen: list[str] = []
    client = scene.client()

    def user_agent(url: str) -> str:
        seen.append(url)
        return scene.browser().authorize(url)

    tokens = client.sign_in(user_agent, scope=AGENT_SCOPE)
    query = _query(seen[0])
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43 and query["redirect_uri"] == scene.agent.redirect_uri
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43
    assert client.id_claims["aud"] == scene.agent.client_id
    assert client.id_claims["iss"] == scene.issuer
    assert client.id_claims["nonce"] == query["nonce"]
    assert tokens.refresh_token and client.tokens is tokens
    assert client.username() == "alice"


def test_sign_in_pushes_the_request_when_asked(scene):
    """RFC 9126: with `push=True` the parameters go to the pushed authorization request
    endpoint (with client authentication) and the browser carries only `client_id` and
    `request_uri`; the sign-in then completes as usual."""
    seen: list[str] = []
    client = scene.client()

    def user_agent(url: str) -> str:
        seen.append(url)
        return scene.browser().authorize(url)

    client.sign_in(user_agent, scope=AGENT_SCOPE, push=True)
    query = _query(seen[0])
    assert set(query) == {"client_id", "request_uri"}
    assert query["client_id"] == scene.agent.client_id
    assert query["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert client.signed_in and client.username() == "alice"


def test_sign_in_pushes_when_the_server_requires_it(scene):
    """RFC 9126 §5: discovery's `require_pushed_authorization_requests` makes the SDK push
    without being asked. The agent here is registered to require pushing, so a request
    that did not push would be refused."""
    agent = register_agent(
        scene.server.app, scene.broker.url, client_id="par-agent", require_par=True
    )
    client = AuthClient(
        scene.issuer, agent.client_id, agent.client_secret, redirect_uri=agent.redirect_uri
    )
    scene.clients.append(client)
    client.discovery.metadata()["require_pushed_authorization_requests"] = True
    seen: list[str] = []

    def user_agent(url: str) -> str:
        seen.append(url)
        return scene.browser().authorize(url)

    client.sign_in(user_agent, scope=AGENT_SCOPE)
    assert set(_query(seen[0])) == {"client_id", "request_uri"}
    assert client.signed_in
    opened: list[str] = []
    with pytest.raises(SignInError, match="requires pushed"):
        client.sign_in(opened.append, scope=AGENT_SCOPE, push=False)
    assert opened == [], "RFC 9126 §5: the request must not go into the URL"
    unpushed = AuthClient(
        scene.issuer, agent.client_id, agent.client_secret, redirect_uri=agent.redirect_uri
    )
    scene.clients.append(unpushed)  # its discovery says nothing is required
    before = issued_counts(scene.server.app)
    with pytest.raises(SdkError) as refused:
        unpushed.sign_in(scene.browser().authorize, scope=AGENT_SCOPE)
    assert refused.value.error == "invalid_request"
    assert issued_counts(scene.server.app) == before


def test_push_without_a_pushed_authorization_request_endpoint_is_refused(scene):
    """Asked to push to a server that offers no endpoint for it, the SDK stops before
    anything is sent rather than sending the request in the URL after all."""
    client = scene.client()
    client.discovery.metadata().pop("pushed_authorization_request_endpoint")
    opened: list[str] = []
    with pytest.raises(SignInError, match="RFC 9126"):
        client.sign_in(opened.append, scope=AGENT_SCOPE, push=True)
    assert opened == []


def test_sign_in_over_the_loopback_listener(scene):
    """RFC 8252 §7.3: a one-shot listener on the registered loopback port gets the code;
    the URL is printed; the browser lands on a page telling the user to go back."""
    client = scene.client()
    printed: list[str] = []
    landed: list[requests.Response] = []

    def opener(url: str) -> bool:
        def browse() -> None:
            callback = scene.browser().authorize(url)
            landed.append(requests.get(callback, timeout=10))

        threading.Thread(target=browse, daemon=True).start()
        return False  # as on a machine without a display

    client.sign_in(scope=AGENT_SCOPE, announce=printed.append, opener=opener, timeout=30)
    assert client.signed_in and client.username() == "alice"
    assert any(scene.issuer + "/authorize?" in line for line in printed)
    for _ in range(50):
        if landed:
            break
        time.sleep(0.05)
    assert landed[0].status_code == 200 and "close this window" in landed[0].text


def test_a_stray_callback_cannot_cancel_the_sign_in(scene):
    """Any web page can send a request to the loopback port. One without this sign-in's
    state is answered 400 and the listener keeps waiting; the real callback then completes
    the sign-in (RFC 8252 §7.3, RFC 6749 §10.12)."""
    client = scene.client()
    strays: list[int] = []

    def opener(url: str) -> bool:
        def browse() -> None:
            redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
            for query in ("code=stolen&state=other", "error=access_denied", "state=%C3%A9"):
                strays.append(requests.get(f"{redirect_uri}?{query}", timeout=10).status_code)
            requests.get(scene.browser().authorize(url), timeout=10)

        threading.Thread(target=browse, daemon=True).start()
        return False

    client.sign_in(scope=AGENT_SCOPE, announce=lambda line: None, opener=opener, timeout=30)
    assert strays == [400, 400, 400]
    assert client.signed_in and client.username() == "alice"


def test_wrong_state_is_refused_before_the_code_is_used(scene):
    """RFC 6749 §10.12: a response whose state differs is dropped; no token is issued."""
    client = scene.client()
    before = {}

    def forged(url: str) -> str:
        callback = scene.browser().authorize(url)
        before.update(issued_counts(scene.server.app))
        return _with(callback, state="attacker-state")

    with pytest.raises(SignInError, match="state"):
        client.sign_in(forged, scope=AGENT_SCOPE)
    assert issued_counts(scene.server.app) == before
    assert not client.signed_in


@pytest.mark.parametrize("iss", ["https://evil.example", None])
def test_wrong_or_missing_iss_is_refused(scene, iss):
    """RFC 9207 §2.4: `iss` must equal the issuer, and is required once advertised."""
    client = scene.client()
    before = {}

    def mixed_up(url: str) -> str:
        callback = scene.browser().authorize(url)
        before.update(issued_counts(scene.server.app))
        return _with(callback, iss=iss)

    with pytest.raises(SignInError, match="RFC 9207"):
        client.sign_in(mixed_up, scope=AGENT_SCOPE)
    assert issued_counts(scene.server.app) == before


def test_nonce_mismatch_is_refused(scene):
    """OIDC Core §3.1.3.7 item 11: the ID token's nonce must be the one the client sent."""
    client = scene.client()

    def replayed(url: str) -> str:
        return scene.browser().authorize(_with(url, nonce="someone-elses-nonce"))

    with pytest.raises(SignInError, match="nonce"):
        client.sign_in(replayed, scope=AGENT_SCOPE)
    assert not client.signed_in


def test_denied_consent_raises_access_denied(scene):
    """RFC 6749 §4.1.2.1: `error=access_denied` in the redirect becomes `AccessDenied`."""
    client = scene.client()
    with pytest.raises(AccessDenied) as raised:
        client.sign_in(lambda url: scene.browser().authorize(url, "deny"), scope=AGENT_SCOPE)
    assert raised.value.error == "access_denied"


def test_refresh_rotates_and_the_sdk_keeps_the_new_token(scene):
    """RFC 6749 §6 / RFC 9700 §4.14.2: each refresh returns a new refresh token, which the
    SDK stores; the old one is dead (its reuse would revoke the whole family)."""
    shift = [0.0]
    client = scene.client(clock=lambda: time.time() + shift[0])
    first = client.sign_in(scene.browser().authorize, scope=AGENT_SCOPE)
    second = client.refresh()
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert client.tokens is second
    shift[0] = 580.0  # the 600 s access token is now within the refresh margin
    current = client.access_token()
    assert current not in (first.access_token, second.access_token)
    assert client.tokens.refresh_token not in (first.refresh_token, second.refresh_token)
    stale = scene.client()
    stale._tokens = first
    with pytest.raises(InvalidGrant) as raised:
        stale.refresh()
    assert raised.value.error == "invalid_grant" and raised.value.status == 400
    with pytest.raises(InvalidGrant):  # reuse detection revoked the family, current included
        client.refresh()
    assert not client.signed_in, "a dead refresh token means signing in again"


def test_redirect_target_must_be_loopback():
    """RFC 8252 §7.3: the listener binds only a loopback address, on the URI's port/path."""
    target = RedirectTarget.from_uri("http://127.0.0.1:8765/callback")
    assert (target.host, target.port, target.path) == ("127.0.0.1", 8765, "/callback")
    for uri in ("https://127.0.0.1:8765/cb", "http://example.com:8765/cb"):
        with pytest.raises(SdkError):
            RedirectTarget.from_uri(uri)


def test_discovery_issuer_must_match(scene):
    """OIDC Discovery §4.3: a document naming another issuer is refused."""
    port = urlsplit(scene.issuer).port
    client = scene.client()
    client.discovery.issuer = f"http://localhost:{port}"
    with pytest.raises(SdkError, match="another issuer"):
        client.discovery.metadata()


@pytest.mark.parametrize("state", ["\u00e9t\u00e9", "attacker-\u2603"])
def test_non_ascii_state_is_refused_as_a_sign_in_error(scene, state):
    """RFC 6749 §10.12: a callback whose state is not ours is refused with `SignInError`,
    whatever its characters; any web page can send one to the loopback listener, and a
    TypeError out of the comparison would end the agent instead. No token is issued."""
    client = scene.client()
    before = {}

    def forged(url: str) -> str:
        callback = scene.browser().authorize(url)
        before.update(issued_counts(scene.server.app))
        return _with(callback, state=state)

    with pytest.raises(SignInError, match="state"):
        client.sign_in(forged, scope=AGENT_SCOPE)
    assert issued_counts(scene.server.app) == before
    assert not client.signed_in


class _WithoutScopeAndIdToken(requests.Session):
    """A token endpoint that omits `scope` (RFC 6749 §5.1: then it is the requested one)
    and the ID token, as a faulty or manipulated server would."""

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        data = kwargs.get("data") or {}
        if method == "POST" and data.get("grant_type") == "authorization_code":
            body = response.json()
            body.pop("scope", None)
            body.pop("id_token", None)
            response._content = json.dumps(body).encode()
        return response


def test_openid_sign_in_without_id_token_is_refused_when_scope_is_omitted(scene):
    """OIDC Core §3.1.3.3: a code redeemed for an `openid` request returns an ID token; a
    response without `scope` was granted the requested scope (RFC 6749 §5.1), so it still
    needs one, or the nonce and audience checks (§3.1.3.7) would be skipped."""
    client = scene.client(session=_WithoutScopeAndIdToken())
    with pytest.raises(SignInError, match="no ID token"):
        client.sign_in(scene.browser().authorize, scope=AGENT_SCOPE)
    assert not client.signed_in and client.id_claims == {}
