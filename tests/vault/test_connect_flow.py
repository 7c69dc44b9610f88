"""Connecting an account, and what goes wrong on the way (DESIGN "Token vault").

The connect flow is authorization code + PKCE + state against the upstream
(RFC 6749 §4.1, RFC 7636). `state` binds the callback to the browser that started
it (RFC 6749 §10.12, RFC 9700 §4.7.1): a forged, replayed, expired, someone else's
or another connection's state fails and stores nothing. `return_to` is accepted
only as a relative path; disconnecting revokes upstream (RFC 7009) and deletes the
ciphertext. Real HTTP against a live authserver and the mock calendar.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from authserver.db import make_engine, make_session_factory, transaction
from tests.support.calendar import CLIENT_ID, CLIENT_SECRET
from tests.support.flows import csrf_token
from tests.support.vault_live import (
    UpstreamSpy,
    VaultScene,
    calendar_callback,
    calendar_refresh,
    vault_scene,
)
from vault.connect import STATE_TTL_SECONDS, create_connection
from vault.models import ConnectedAccount, Connection, ConnectState


@pytest.fixture
def scene(app, migrated_database, tmp_path) -> Iterator[VaultScene]:
    with vault_scene(app, migrated_database, tmp_path) as scene:
        yield scene
        scene.vault.clock = time.time


def _start(scene: VaultScene, **params: str) -> str:
    query = urlencode({"scope": "calendar.freebusy", **params})
    return f"{scene.url}/connections/calendar/connect?{query}"


def _accounts(scene: VaultScene) -> int:
    with scene.server.runtime.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(ConnectedAccount)) or 0)


def _states(scene: VaultScene) -> int:
    with scene.server.runtime.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(ConnectState)) or 0)


def _refused_page(response: requests.Response, status: int = 400) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert "The account was not connected" in response.text


def _last_connect_failure(scene: VaultScene) -> str:
    event = scene.events("vault.connected")[-1]
    assert event.outcome == "failure"
    return str(event.details["reason"])


def test_forged_state_shows_an_error_page_and_stores_nothing(scene):
    """RFC 6749 §10.12: a callback whose state this server never issued is refused before
    the code is used (no upstream code exchange), with a page, not a redirect."""
    http = scene.browser("alice")
    before = scene.calendar.stats()
    forged = http.get(
        f"{scene.url}/connections/calendar/callback",
        params={"code": "attacker-code", "state": "forged-state"},
        allow_redirects=False,
        timeout=10,
    )
    _refused_page(forged)
    assert "not valid" in forged.text
    assert _accounts(scene) == 0
    assert scene.calendar.stats() == before
    assert _last_connect_failure(scene) == "bad_state"


def test_replayed_callback_fails_the_second_time(scene):
    """RFC 6749 §10.12 / RFC 9700 §4.7.1: the state is single-use; the same callback
    again is refused and leaves the account and the upstream untouched."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene), "alice")
    first = http.get(callback, allow_redirects=False, timeout=10)
    assert first.status_code == 302 and first.headers["Location"] == "/account/connections"
    stored = scene.account("alice")
    stats = scene.calendar.stats()
    assert stats["code_grants"] == 1

    replay = http.get(callback, allow_redirects=False, timeout=10)
    _refused_page(replay)
    assert scene.calendar.stats() == stats, "the code is not presented upstream again"
    again = scene.account("alice")
    assert again.refresh_token_sealed == stored.refresh_token_sealed
    assert again.updated_at == stored.updated_at
    assert _last_connect_failure(scene) == "bad_state"


def test_state_started_by_another_user_is_refused(scene):
    """RFC 6749 §10.12 (CSRF): a callback carrying alice's state and code, opened in bob's
    browser, must not link alice's calendar to bob's account."""
    callback = calendar_callback(scene.browser("alice"), _start(scene), "alice")
    before = scene.calendar.stats()
    stolen = scene.browser("bob").get(callback, allow_redirects=False, timeout=10)
    _refused_page(stolen)
    assert scene.account("bob") is None and scene.account("alice") is None
    assert scene.calendar.stats() == before


def test_state_of_another_connection_is_refused(scene, app):
    """The state is bound to its connection: a calendar state presented at another
    connection's callback is refused and nothing is exchanged."""
    with transaction(app.extensions["authserver"].session_factory) as session:
        create_connection(
            session,
            app.extensions["authserver"].keyring,
            time.time,
            name="other",
            display_name="Other",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            authorize_url=f"{scene.calendar.url}/authorize",
            token_url=f"{scene.calendar.url}/token",
            revocation_url=None,
            discovery_url=None,
            scopes=["calendar.freebusy"],
        )
    callback = calendar_callback(scene.browser("alice"), _start(scene), "alice")
    query = urlsplit(callback).query
    before = scene.calendar.stats()
    moved = scene.browser("alice").get(
        f"{scene.url}/connections/other/callback?{query}", allow_redirects=False, timeout=10
    )
    _refused_page(moved)
    assert _accounts(scene) == 0
    assert scene.calendar.stats() == before


def test_expired_state_is_refused(scene):
    """The connect state lives STATE_TTL_SECONDS (600 s); a callback after that fails."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene), "alice")
    scene.vault.clock = lambda: time.time() + STATE_TTL_SECONDS + 1
    before = scene.calendar.stats()
    late = http.get(callback, allow_redirects=False, timeout=10)
    _refused_page(late)
    assert _accounts(scene) == 0
    assert scene.calendar.stats() == before


@pytest.mark.parametrize(
    "return_to",
    ["https://evil.example/steal", "//evil.example/steal", "/\\evil.example", "javascript:x"],
)
def test_absolute_return_to_is_ignored(scene, return_to):
    """STYLE: `return_to=` accepted only as a relative path (RFC 9700 §4.11 open
    redirectors); anything else falls back to the connected-accounts page."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene, return_to=return_to), "alice")
    done = http.get(callback, allow_redirects=False, timeout=10)
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/connections"
    assert scene.account("alice") is not None


def test_relative_return_to_is_honoured(scene):
    """A relative return_to brings the user back where they started."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene, return_to="/account/connections?x=1"), "alice")
    done = http.get(callback, allow_redirects=False, timeout=10)
    assert done.status_code == 302 and done.headers["Location"] == "/account/connections?x=1"


def test_scope_not_offered_by_the_connection_is_400(scene):
    """A connection grants only its registered scopes; asking for another is a 400 page,
    records no state and sends nobody upstream."""
    states = _states(scene)
    refused = scene.browser("alice").get(
        _start(scene, scope="calendar.freebusy calendar.admin"), allow_redirects=False, timeout=10
    )
    assert refused.status_code == 400
    assert "Cannot connect" in refused.text
    assert "Location" not in refused.headers
    assert _states(scene) == states


def test_not_signed_in_is_sent_to_sign_in(scene):
    """The connect flow links the signed-in user's account: a stranger is sent to /login
    (with a relative `next`), no state is recorded."""
    anonymous = requests.Session()
    for path in ("/connections/calendar/connect", "/connections/calendar/callback?state=x"):
        response = anonymous.get(f"{scene.url}{path}", allow_redirects=False, timeout=10)
        assert response.status_code == 302
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query)["next"][0].startswith("/connections/calendar/")
    assert _states(scene) == 0


def test_upstream_denial_shows_a_page_and_stores_nothing(scene):
    """RFC 6749 §4.1.2.1: the user denied consent upstream (error=access_denied); the vault
    shows a page, exchanges nothing and stores no account."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene), "alice", decision="deny")
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
    before = scene.calendar.stats()
    denied = http.get(callback, allow_redirects=False, timeout=10)
    _refused_page(denied)
    assert "did not grant access" in denied.text
    assert _accounts(scene) == 0
    assert scene.calendar.stats() == before
    assert _last_connect_failure(scene) == "upstream_refused"


def _with_iss(callback: str, *values: str) -> str:
    """The callback URL with its `iss` replaced by `values` (none: without `iss`)."""
    parts = urlsplit(callback)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "iss"]
    query += [("iss", value) for value in values]
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.parametrize(
    "iss",
    [("https://attacker.example",), (), "twice"],
    ids=["another_issuer", "missing", "duplicated"],
)
def test_authorization_response_of_another_issuer_is_refused(scene, iss):
    """RFC 9207 §2.4: an `iss` that is not the connection's issuer, or none from a provider
    whose metadata promises it, means the response may come from another provider mixed
    up with this one (RFC 9700 §4.4): refused before its code is used, nothing stored, and
    the state is spent (the genuine response cannot be replayed after it)."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene), "alice")
    genuine = parse_qs(urlsplit(callback).query)["iss"]
    assert genuine == [scene.calendar.url]
    values = tuple(genuine * 2) if iss == "twice" else iss
    before = scene.calendar.stats()
    mixed_up = http.get(_with_iss(callback, *values), allow_redirects=False, timeout=10)
    _refused_page(mixed_up)
    assert "did not come from this provider" in mixed_up.text
    assert scene.calendar.stats() == before, "the code is not presented upstream"
    assert _accounts(scene) == 0
    assert _last_connect_failure(scene) == "issuer_mismatch"
    _refused_page(http.get(callback, allow_redirects=False, timeout=10))
    assert _last_connect_failure(scene) == "bad_state"


def test_an_error_response_of_another_issuer_is_refused_as_such(scene):
    """RFC 9207 §2.4 covers error responses too: the issuer is checked first."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene), "alice", decision="deny")
    refused = http.get(_with_iss(callback, "https://attacker.example"), timeout=10)
    _refused_page(refused)
    assert _last_connect_failure(scene) == "issuer_mismatch"


def test_a_connection_registered_without_its_issuer_takes_any_iss(scene, app):
    """Connections registered before issuers were recorded (migration 0009) cannot compare
    `iss`: their callbacks work as before, bound to the connection by its own callback URL
    and state (RFC 9700 §4.4.2.2). Recording the issuer turns the check on."""
    runtime = scene.server.runtime
    with transaction(runtime.session_factory) as session:
        session.execute(
            update(Connection)
            .where(Connection.name == "calendar")
            .values(issuer=None, require_iss=False)
        )
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene), "alice")
    done = http.get(_with_iss(callback), allow_redirects=False, timeout=10)
    assert done.status_code == 302 and done.headers["Location"] == "/account/connections"
    assert _accounts(scene) == 1


def _disconnect(http: requests.Session, url: str, with_csrf: bool = True) -> requests.Response:
    page = http.get(f"{url}/account/connections", timeout=10).text
    form = {"csrf_token": csrf_token(page)} if with_csrf else {}
    return http.post(
        f"{url}/account/connections/calendar/disconnect",
        data=form,
        allow_redirects=False,
        timeout=10,
    )


def test_purging_an_unused_account_revokes_it_upstream_first(scene):
    """DESIGN token vault: accounts unused for the period are purged. The provider's grant
    must not outlive our copy: the refresh token is revoked upstream (RFC 7009) once the
    row is gone, and each purge is an audit row naming the person and the connection."""
    from authserver.housekeeping import DAY, purge

    scene.connect("alice")
    scene.connect("bob")
    subject = scene.subject_token("alice")
    scene.federated(subject)  # alice's account is used now; bob's was never used
    refresh_token = scene.stored_refresh_token("alice")
    long_ago = int(time.time() - 100 * DAY)
    with transaction(scene.server.runtime.session_factory) as session:
        session.execute(
            update(ConnectedAccount)
            .where(ConnectedAccount.user_id == scene.user_ids["alice"])
            .values(last_used_at=long_ago, created_at=long_ago)
        )
    before = scene.calendar.stats()

    report = purge(scene.server.runtime, 90)

    assert report["accounts"] == 1 and report["revoked_upstream"] == 1
    assert scene.calendar.stats()["revocations"] == before["revocations"] + 1
    assert scene.account("alice") is None and scene.account("bob") is not None
    revoked = calendar_refresh(scene.calendar.url, refresh_token)
    assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"
    [event] = scene.events("vault.purged")
    assert event.user_id == scene.user_ids["alice"]
    assert event.details == {"connection": "calendar", "unused_days": 90, "revoked_upstream": True}


def test_disconnect_revokes_upstream_and_deletes_the_account(scene, monkeypatch):
    """DESIGN token vault: disconnect revokes upstream (RFC 7009 §2.1: revoking the refresh
    token also invalidates its access tokens) and deletes the ciphertext."""
    spy = UpstreamSpy.install(monkeypatch)
    scene.connect("alice")
    subject = scene.subject_token("alice")
    access = scene.federated(subject).json()["access_token"]
    http = scene.browser("alice")

    no_csrf = _disconnect(http, scene.url, with_csrf=False)
    assert no_csrf.status_code == 400
    assert scene.account("alice") is not None

    before = scene.calendar.stats()
    done = _disconnect(http, scene.url)
    assert done.status_code == 302 and done.headers["Location"] == "/account/connections"
    assert scene.calendar.stats()["revocations"] == before["revocations"] + 1
    assert scene.account("alice") is None
    assert scene.freebusy(access).status_code == 401
    revoked = calendar_refresh(scene.calendar.url, spy.refresh_tokens[-1])
    assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"
    refused = scene.federated(subject)
    assert refused.status_code == 400 and refused.json()["reason"] == "not_connected"
    event = scene.events("vault.disconnected")[-1]
    assert event.outcome == "success" and event.details == {"connection": "calendar"}


def test_connections_page_lists_scopes_and_last_use_and_escapes_names(scene, app):
    """The account page shows each connected account's scopes and last use; names from
    the connection registry are escaped (no markup injection)."""
    scene.connect("alice", "calendar.freebusy calendar.read")
    marker = '<img src=x onerror="alert(1)">'
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(
            update(Connection)
            .where(Connection.name == "calendar")
            .values(display_name=f"Cal {marker}")
        )
        session.execute(update(ConnectedAccount).values(last_used_at=1767225600))
    page = scene.browser("alice").get(f"{scene.url}/account/connections", timeout=10)
    assert page.status_code == 200
    assert marker not in page.text
    assert "Cal &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page.text
    assert "<code>calendar.freebusy</code>" in page.text
    assert "<code>calendar.read</code>" in page.text
    assert "2026-01-01 00:00 UTC" in page.text

    empty = scene.browser("bob").get(f"{scene.url}/account/connections", timeout=10)
    assert "No accounts connected yet." in empty.text
    assert marker not in empty.text and "Cal &lt;img" in empty.text
    assert "/connections/calendar/connect" in empty.text


def test_disconnect_authenticates_revocation_with_the_connections_method(scene, monkeypatch):
    """RFC 7009 §2.1: the revocation request carries the client's credentials as it
    authenticates at the token endpoint (RFC 6749 §2.3). A connection registered for
    `client_secret_post` must not switch to HTTP Basic when revoking, or a provider that
    holds it to its registered method refuses and the grant outlives the account."""
    with transaction(scene.server.runtime.session_factory) as session:
        session.execute(
            update(Connection)
            .where(Connection.name == "calendar")
            .values(token_endpoint_auth_method="client_secret_post")
        )
    scene.connect("alice")
    sent: list[requests.PreparedRequest] = []
    original = requests.Session.send

    def recording(self, request, **kwargs):
        if request.url.endswith("/revoke"):
            sent.append(request)
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", recording)
    before = scene.calendar.stats()
    done = _disconnect(scene.browser("alice"), scene.url)
    assert done.status_code == 302
    [revocation] = sent
    assert "Authorization" not in set(revocation.headers), "no HTTP Basic credentials"
    assert parse_qs(str(revocation.body))["client_id"] == [CLIENT_ID]
    assert scene.calendar.stats()["revocations"] == before["revocations"] + 1
    assert scene.account("alice") is None


def test_overlong_return_to_falls_back_without_a_server_error(scene):
    """DESIGN: unknown or malformed input gets a clear answer and changes nothing else; a
    relative return_to longer than the stored column (2000) is dropped like an unsafe one,
    not a 500 from the database (PostgreSQL enforces the length)."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene, return_to="/" + "a" * 2500), "alice")
    done = http.get(callback, allow_redirects=False, timeout=10)
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/connections"
    assert scene.account("alice") is not None


def test_reconnecting_revokes_the_refresh_token_it_replaces(scene, monkeypatch):
    """Connecting an account again (to add scopes, or after reconnect_required) creates a
    new grant upstream. The refresh token of the one it replaces is revoked (RFC 7009), or
    that grant would outlive the account: disconnecting revokes only the stored one."""
    spy = UpstreamSpy.install(monkeypatch)
    scene.connect("alice")
    first = scene.stored_refresh_token("alice")
    before = scene.calendar.stats()
    scene.connect("alice", "calendar.freebusy calendar.read")
    second = scene.stored_refresh_token("alice")
    assert second != first and spy.refresh_tokens == [first, second]
    assert scene.calendar.stats()["revocations"] == before["revocations"] + 1
    replaced = calendar_refresh(scene.calendar.url, first)
    assert replaced.status_code == 400 and replaced.json()["error"] == "invalid_grant"
    assert calendar_refresh(scene.calendar.url, second).status_code == 200


def test_two_first_connects_at_once_store_one_account(scene, monkeypatch):
    """Two tabs complete a first connect at the same moment. On PostgreSQL both can find
    no account and both insert one: the second commit meets the unique (user, connection)
    row, and that is not a server error: it replaces the first tab's account (revoking
    that one's refresh token), and the person has one account. On SQLite the callback's
    first statement takes the database's write lock, so the other tab's write is refused
    until this one commits: the two are serial, and the person has one account too."""
    from authserver.web import connections as connections_view
    from vault import upstream
    from vault.accounts import store_account

    runtime = scene.server.runtime
    other_tab = upstream.UpstreamTokens("other-tab-access", None, "other-tab-refresh", None)
    competed: list[bool] = []
    # The other tab's own connection; on SQLite one that does not wait for the lock.
    engine = make_engine(runtime.settings.database_url, sqlite_busy_timeout_ms=0)
    other_tabs_database = make_session_factory(engine)

    def other_tab_commits_first(session, vault, connection, user_id, tokens, requested):
        stored = store_account(session, vault, connection, user_id, tokens, requested)
        if not competed:
            try:
                with transaction(other_tabs_database) as elsewhere:
                    store_account(elsewhere, vault, connection, user_id, other_tab, requested)
                competed.append(True)
            # SQLite: "database is locked" by this callback (the driver's error: BEGIN
            # IMMEDIATE is sent from SQLAlchemy's begin event, which does not wrap it).
            except (OperationalError, sqlite3.OperationalError):
                competed.append(False)
        return stored

    monkeypatch.setattr(connections_view, "store_account", other_tab_commits_first)
    revoked: list[str] = []
    monkeypatch.setattr(
        upstream, "revoke", lambda client, token, hint, timeout: revoked.append(token) or True
    )
    http = scene.browser("alice")
    done = http.get(calendar_callback(http, _start(scene), "alice"), allow_redirects=False)
    assert done.status_code == 302 and done.headers["Location"] == "/account/connections"
    assert _accounts(scene) == 1
    assert scene.stored_refresh_token("alice") != "other-tab-refresh"
    assert competed == [runtime.engine.dialect.name == "postgresql"]
    assert revoked == (["other-tab-refresh"] if competed[0] else [])
    engine.dispose()


def test_a_connection_whose_secret_does_not_open_gives_a_page(scene):
    """The connection's sealed client secret does not open (its key was withdrawn from the
    key ring, or the row was tampered with): starting or completing a connect answers with
    a page saying the connection cannot be used now, not a server error or a wrong
    reason, and stores nothing."""
    http = scene.browser("alice")
    callback = calendar_callback(http, _start(scene), "alice")
    with transaction(scene.server.runtime.session_factory) as session:
        session.execute(
            update(Connection)
            .where(Connection.name == "calendar")
            .values(client_secret_sealed=b"not a ciphertext")
        )
    for response in (
        http.get(callback, allow_redirects=False, timeout=10),
        http.get(_start(scene), allow_redirects=False, timeout=10),
    ):
        assert response.status_code == 503, response.text
        assert "cannot be used right now" in response.text
        assert "Traceback" not in response.text
    assert _accounts(scene) == 0


def test_no_token_is_served_once_a_disconnect_has_begun(scene, monkeypatch):
    """Disconnecting deletes the account before revoking upstream (a call that may take the
    upstream timeout). An agent asking meanwhile gets not_connected: were the row still
    there, it would be served, and a refresh it started could store a new refresh token
    into an account being removed."""
    from vault import upstream

    scene.connect("alice")
    subject = scene.subject_token("alice")
    scene.expire_cached("alice")
    during: list[requests.Response] = []
    original = upstream.revoke

    def revoke_slowly(client, token, hint, timeout):
        during.append(scene.federated(subject))
        return original(client, token, hint, timeout)

    monkeypatch.setattr(upstream, "revoke", revoke_slowly)
    done = _disconnect(scene.browser("alice"), scene.url)
    assert done.status_code == 302
    [answer] = during
    assert answer.status_code == 400 and answer.json()["reason"] == "not_connected"
    assert scene.account("alice") is None
