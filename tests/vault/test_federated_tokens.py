"""Federated access tokens: the agent's side of the token vault (DESIGN "Token vault").

An agent exchanges its user's access token (RFC 8693 §2.1, with
`requested_token_type=urn:authserver:token-type:federated-access-token` and
`connection=calendar`) for a short-lived upstream access token, served from the
vault's cache while valid and refreshed upstream (RFC 6749 §6) once it expires.
Real HTTP throughout: a live authserver and the mock calendar on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import update

from authserver.db import transaction
from authserver.models import User
from tests.support.db import issued_counts
from tests.support.vault_live import (
    FEDERATED,
    FREEBUSY_WINDOW,
    MACHINE_API,
    UpstreamSpy,
    VaultScene,
    follow_connect,
    leaks,
    vault_scene,
)
from vault.models import ConnectedAccount


@pytest.fixture
def scene(app, migrated_database, tmp_path) -> Iterator[VaultScene]:
    with vault_scene(app, migrated_database, tmp_path) as scene:
        yield scene


@pytest.fixture
def spy(monkeypatch) -> UpstreamSpy:
    return UpstreamSpy.install(monkeypatch)


def _moved_clock(scene: VaultScene, seconds: float) -> None:
    scene.vault.clock = lambda: time.time() + seconds


@pytest.fixture(autouse=True)
def _restore_clock(scene: VaultScene) -> Iterator[None]:
    yield
    scene.vault.clock = time.time


def test_cached_token_is_served_while_valid_then_refreshed_once(scene, spy):
    """DESIGN token vault: "serves a cached one while it is valid, else refreshes upstream
    once"; the refresh token never leaves the vault (RFC 8693 §2.2.1 response carries only
    the issued token); RFC 6749 §6 refresh after expiry."""
    scene.connect("alice")
    subject = scene.subject_token("alice")
    before = scene.calendar.stats()
    first = scene.federated(subject)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["issued_token_type"] == FEDERATED
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "calendar.freebusy"
    assert 3000 < body["expires_in"] <= 3600
    assert "refresh_token" not in body
    assert scene.freebusy(body["access_token"]).status_code == 200
    served = [first]
    for _ in range(3):
        again = scene.federated(subject)
        assert again.status_code == 200, again.text
        assert again.json()["access_token"] == body["access_token"]
        served.append(again)
    assert scene.calendar.stats() == before, "a valid cached token needs no upstream call"
    assert scene.vault.refreshes == []

    scene.calendar.expire_access_tokens()
    assert scene.freebusy(body["access_token"]).status_code == 401
    _moved_clock(scene, 7200)  # past the cached token's expiry (3600 s)
    refreshed = scene.federated(subject)
    assert refreshed.status_code == 200, refreshed.text
    new_token = refreshed.json()["access_token"]
    assert new_token != body["access_token"]
    assert scene.freebusy(new_token).status_code == 200
    after = scene.calendar.stats()
    assert after["refresh_grants"] == before["refresh_grants"] + 1
    assert after["refresh_attempts"] == before["refresh_attempts"] + 1
    served.append(refreshed)
    cached = scene.federated(subject)
    assert cached.status_code == 200 and cached.json()["access_token"] == new_token
    served.append(cached)
    assert scene.calendar.stats() == after, "the refreshed token is cached in turn"
    assert len(scene.vault.refreshes) == 1

    assert len(spy.refresh_tokens) == 2, "the calendar rotated the refresh token"
    for response in served:
        assert leaks(response.content, spy.refresh_tokens) == []
        assert "refresh_token" not in response.json()
    assert scene.stored_refresh_token("alice") == spy.refresh_tokens[-1]


def test_missing_scopes_returns_a_connect_uri_that_works(scene):
    """DESIGN token vault: missing scopes return a machine-readable error with the
    `connect_uri` the user must visit; after the user follows it the request succeeds."""
    scene.connect("alice", "calendar.freebusy")
    subject = scene.subject_token("alice")
    before, issued = scene.calendar.stats(), issued_counts(scene.app)
    wider = scene.federated(subject, scope="calendar.read")
    assert wider.status_code == 400
    body = wider.json()
    assert body["error"] == "connection_required"
    assert body["reason"] == "missing_scopes"
    assert body["connection"] == "calendar"
    assert "access_token" not in body
    assert set(body["scope"].split()) == {"calendar.freebusy", "calendar.read"}
    assert issued_counts(scene.app) == issued
    uri = body["connect_uri"]
    assert uri.startswith(f"{scene.url}/connections/calendar/connect?")
    assert "calendar.read" in parse_qs(urlsplit(uri).query)["scope"][0].split()
    assert scene.calendar.stats() == before

    page = follow_connect(scene.browser("alice"), uri, "alice")
    assert page.status_code == 200 and urlsplit(page.url).path == "/account/connections"
    granted = scene.federated(subject, scope="calendar.read")
    assert granted.status_code == 200, granted.text
    assert "calendar.read" in granted.json()["scope"].split()
    listed = requests.get(
        f"{scene.calendar.url}/events",
        params=FREEBUSY_WINDOW,
        headers={"Authorization": f"Bearer {granted.json()['access_token']}"},
        timeout=10,
    )
    assert listed.status_code == 200, listed.text


def test_scope_the_connection_does_not_offer_is_invalid_scope(scene):
    """RFC 6749 §5.2 / RFC 8693 §2.2.2 invalid_scope: a scope the connection never offers
    cannot be obtained by connecting, so no connect_uri is handed out for it."""
    scene.connect("alice")
    subject = scene.subject_token("alice")
    before, issued = scene.calendar.stats(), issued_counts(scene.app)
    refused = scene.federated(subject, scope="calendar.freebusy calendar.admin")
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "invalid_scope"
    assert body["error_description"] == "The connection does not offer the requested scope."
    assert "connect_uri" not in body and "access_token" not in body
    assert scene.calendar.stats() == before and issued_counts(scene.app) == issued
    assert scene.events("vault.token_served")[-1].details["error"] == "invalid_scope"


def test_client_not_allowed_for_the_connection_gets_invalid_target(scene):
    """RFC 8693 §2.2.2 / RFC 8707: a target the server will not serve to this client is
    `invalid_target`; no upstream token is served, the cache is not even read."""
    scene.connect("alice")
    own = scene.subject_token("alice", client=scene.stranger)
    before, issued = scene.calendar.stats(), issued_counts(scene.app)
    account = scene.account("alice")
    refused = scene.federated(own, client=scene.stranger)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_target"
    assert refused.json()["error_description"] == "This client may not use that connection."
    assert "access_token" not in refused.json()
    assert scene.calendar.stats() == before and issued_counts(scene.app) == issued
    assert scene.events("vault.token_served")[-1].outcome == "refused"
    assert not [e for e in scene.events("vault.token_served") if e.outcome == "success"]
    assert scene.account("alice").last_used_at == account.last_used_at


def test_another_users_account_is_never_served(scene, spy):
    """DESIGN token vault: a connected account is one user's link; bob's subject token
    never yields alice's upstream token (connection_required, reason not_connected)."""
    scene.connect("alice")
    alice_token = scene.federated(scene.subject_token("alice")).json()["access_token"]
    bob = scene.subject_token("bob")
    before, issued = scene.calendar.stats(), issued_counts(scene.app)
    refused = scene.federated(bob)
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "connection_required"
    assert body["reason"] == "not_connected"
    assert (
        body["connect_uri"] == f"{scene.url}/connections/calendar/connect?scope=calendar.freebusy"
    )
    assert alice_token not in refused.text
    assert leaks(refused.content, spy.secrets()) == []
    assert scene.account("bob") is None
    assert scene.calendar.stats() == before and issued_counts(scene.app) == issued


def refused_without_effect(scene, subject, status, error, description):
    """The federated exchange of `subject`, refused with `error`: no token in the answer,
    the provider not called, nothing issued."""
    before, issued = scene.calendar.stats(), issued_counts(scene.app)
    refused = scene.federated(subject)
    assert refused.status_code == status, refused.text
    assert refused.json() == {"error": error, "error_description": description}
    assert scene.calendar.stats() == before and issued_counts(scene.app) == issued
    return refused


def test_client_credentials_subject_token_is_invalid_request(scene):
    """RFC 8693 §2.2.2: a subject token unacceptable for this exchange is invalid_request;
    a client-credentials token has no user, so no user's account can be served."""
    scene.connect("alice")
    machine = requests.post(
        f"{scene.url}/token",
        data={"grant_type": "client_credentials", "scope": "read", "resource": MACHINE_API},
        auth=scene.agent.basic_auth,
        timeout=10,
    )
    assert machine.status_code == 200, machine.text
    refused_without_effect(
        scene,
        machine.json()["access_token"],
        400,
        "invalid_request",
        "Federated tokens need a subject token of a user.",
    )
    assert scene.events("vault.token_served")[-1].details == {
        "connection": "calendar",
        "error": "invalid_request",
    }
    assert scene.events("vault.token_served")[-1].user_id is None


def test_a_disabled_users_account_is_not_served(scene):
    """A user disabled since connecting gets no upstream token: their subject token is
    refused (RFC 8693 §2.2.2 invalid_request), the vault never calls the provider."""
    scene.connect("alice")
    subject = scene.subject_token("alice")
    assert scene.federated(subject).status_code == 200
    with transaction(scene.app.extensions["authserver"].session_factory) as session:
        session.execute(
            update(User).where(User.id == scene.user_ids["alice"]).values(disabled=True)
        )
    scene.expire_cached("alice")  # so serving would mean a refresh at the provider
    refused_without_effect(
        scene,
        subject,
        400,
        "invalid_request",
        "The 'subject_token' is invalid, expired or revoked.",
    )


@pytest.mark.parametrize("sealed", ["access_token_sealed", "refresh_token_sealed"])
def test_an_account_that_does_not_open_is_temporarily_unavailable(scene, sealed):
    """A stored token that does not open (its key withdrawn from the key ring, or the row
    altered) is the operator's to fix: 503 temporarily_unavailable (RFC 6749 §4.1.2.1)
    saying so, never a server error, nothing issued, the provider not called, and the
    refusal audited. For the refresh token, the cached access token has expired first."""
    scene.connect("alice")
    subject = scene.subject_token("alice")
    assert scene.federated(subject).status_code == 200
    if sealed == "refresh_token_sealed":
        scene.expire_cached("alice")
    with transaction(scene.app.extensions["authserver"].session_factory) as session:
        session.execute(update(ConnectedAccount).values({sealed: b"not a ciphertext"}))
    refused_without_effect(
        scene,
        subject,
        503,
        "temporarily_unavailable",
        "The connected account cannot be opened right now; no token was issued.",
    )
    assert scene.events("vault.token_served")[-1].details == {
        "connection": "calendar",
        "error": "temporarily_unavailable",
    }


def test_every_request_is_audited_without_tokens(scene, spy):
    """DESIGN audit: every vault read is one audit row (`vault.token_served`), served or
    refused, with details that never contain a token."""
    scene.connect("alice")
    subject = scene.subject_token("alice")
    bob = scene.subject_token("bob")
    generic_refusals = len(scene.events("token"))
    responses = [scene.federated(subject) for _ in range(3)]
    responses.append(scene.federated(subject, scope="calendar.read"))  # missing scopes
    responses.append(scene.federated(bob))  # not connected
    _moved_clock(scene, 7200)
    responses.append(scene.federated(subject))  # refreshed
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 400, 400, 200]

    events = scene.events("vault.token_served")
    assert [e.outcome for e in events] == [
        "success",
        "success",
        "success",
        "refused",
        "refused",
        "success",
    ]
    assert [e.details.get("refreshed") for e in events if e.outcome == "success"] == [
        False,
        False,
        False,
        True,
    ]
    assert [e.details.get("reason") for e in events if e.outcome == "refused"] == [
        "missing_scopes",
        "not_connected",
    ]
    assert {e.client_id for e in events} == {"agent"}
    assert [e.user_id for e in events] == [scene.user_ids[u] for u in ["alice"] * 4 + ["bob"]] + [
        scene.user_ids["alice"]
    ]
    assert all(e.details["connection"] == "calendar" for e in events)
    # One row per refusal: the token endpoint's generic "token refused" is not added.
    assert len(scene.events("token")) == generic_refusals
    served = [r.json()["access_token"] for r in responses if r.status_code == 200]
    secrets = [*spy.secrets(), *served, subject, bob]
    assert leaks(json.dumps([e.details for e in events]), secrets) == []
