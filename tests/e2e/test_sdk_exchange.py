"""The SDK's token exchange against the live authserver and the mock broker.

RFC 8693 §2.1 (subject token + the agent's own token as actor_token), §4.1 (`act`),
RFC 8707 (`invalid_target`), RFC 6749 §5.2 (typed errors), and the trace hook with
every credential masked.
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
import requests

from demo_agent.sdk import (
    AuthClient,
    InvalidClient,
    InvalidScope,
    InvalidTarget,
    SdkError,
)
from tests.support.db import issued_counts

from .conftest import AGENT_SCOPE


def test_exchange_gives_a_delegated_broker_token(scene):
    """RFC 8693 §4.1: the token's `sub` is the user, `act.sub` the agent; the broker
    accepts it for `portfolio:read` and records the actor."""
    client = scene.signed_in()
    tokens = client.exchange(scene.broker.url, "portfolio:read")
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert claims["aud"] == scene.broker.url and claims["scope"] == "portfolio:read"
    assert claims["act"] == {"sub": scene.agent.client_id}
    assert claims["sub"] == client.id_claims["sub"]
    assert tokens.issued_token_type == "urn:ietf:params:oauth:token-type:access_token"
    response = requests.get(
        f"{scene.broker.url}/portfolio",
        headers={"Authorization": f"Bearer {tokens.access_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert scene.broker.reads()[-1].act == {"sub": scene.agent.client_id}


def test_exchanged_tokens_are_cached_until_near_expiry(scene):
    """One exchange per audience and scope while the token is fresh; a new one after."""
    shift = [0.0]
    calls: list[str] = []
    client = scene.client(clock=lambda: time.time() + shift[0], trace=lambda e: calls.append(e.url))
    client.sign_in(scene.browser().authorize, scope=AGENT_SCOPE)
    first = client.exchange(scene.broker.url, "portfolio:read")
    before = len(calls)
    assert client.exchange(scene.broker.url, "portfolio:read") is first
    assert len(calls) == before
    shift[0] = 280.0  # the 300 s delegated token is inside the refresh margin
    assert client.exchange(scene.broker.url, "portfolio:read") is not first


def test_unknown_audience_is_invalid_target_and_issues_nothing(scene):
    """RFC 8707 §2 / RFC 8693 §2.2.2: an audience that is no registered resource."""
    client = scene.signed_in()
    client.client_credentials()
    before = issued_counts(scene.server.app)
    with pytest.raises(InvalidTarget) as raised:
        client.exchange("https://unknown.example.com", "portfolio:read")
    assert raised.value.error == "invalid_target" and raised.value.status == 400
    assert raised.value.description
    assert issued_counts(scene.server.app) == before


def test_wider_scope_is_invalid_scope(scene):
    """RFC 8693 §2.2.2: asking for more than subject ∩ client ∩ resource is refused."""
    client = scene.signed_in()
    client.client_credentials()
    before = issued_counts(scene.server.app)
    with pytest.raises(InvalidScope) as raised:
        client.exchange(scene.broker.url, "portfolio:write")
    assert raised.value.error == "invalid_scope"
    assert issued_counts(scene.server.app) == before


def test_wrong_client_secret_is_invalid_client(scene):
    """RFC 6749 §5.2: failed client authentication is `invalid_client` with status 401."""
    client = AuthClient(scene.issuer, scene.agent.client_id, "not-the-secret")
    before = issued_counts(scene.server.app)
    with pytest.raises(InvalidClient) as raised:
        client.client_credentials()
    assert raised.value.error == "invalid_client" and raised.value.status == 401
    assert issued_counts(scene.server.app) == before
    client.close()


def test_exchange_needs_a_signed_in_user(scene):
    """Without the user's token there is nothing to exchange; nothing is sent."""
    with pytest.raises(SdkError, match="not signed in"):
        scene.client().exchange(scene.broker.url, "portfolio:read")


def test_trace_reports_every_exchange_with_credentials_masked(scene):
    """No token, code, verifier or secret appears in the trace; fingerprints do."""
    events = []
    client = scene.client(trace=events.append)
    client.sign_in(scene.browser().authorize, scope=AGENT_SCOPE)
    exchanged = client.exchange(scene.broker.url, "portfolio:read")
    client.refresh()
    printed = "\n".join(json.dumps(e.__dict__) for e in events) + repr(client)
    secrets = [scene.agent.client_secret, exchanged.access_token, client.tokens.refresh_token]
    secrets += [client.tokens.access_token, client.tokens.id_token]
    for secret in secrets:
        assert secret and secret not in printed
    token_calls = [e for e in events if e.url.endswith("/token")]
    grants = [e.request["grant_type"] for e in token_calls]
    assert grants[0] == "authorization_code" and "refresh_token" in grants
    code_call = token_calls[0]
    assert code_call.request["code"].startswith("<redacted sha256:")
    assert code_call.request["code_verifier"].startswith("<redacted sha256:")
    assert code_call.headers["Authorization"].startswith(f"Basic {scene.agent.client_id}:<redacted")
    assert code_call.response["refresh_token"].startswith("<redacted sha256:")
    assert code_call.response["token_type"] == "Bearer"
    assert any(e.url.endswith("/.well-known/openid-configuration") for e in events)
