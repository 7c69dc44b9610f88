"""The token vault end to end: a live authserver, the mock calendar, people and an agent.

`vault_scene(app, database_url, directory)` starts both servers on loopback, creates
alice and bob, the agent client (allowed to use the `calendar` connection) and a
second token-exchange client that is not, and registers the connection. The scene
then drives what people and agents do over HTTP: sign in, connect the calendar,
get a user token, ask for a federated token. `UpstreamSpy` records every token
the vault received from the upstream, so tests can look for their plaintext
(the calendar keeps only digests).
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from flask import Flask
from sqlalchemy import select, update
from werkzeug.serving import make_server

from authserver.admin import TOKEN_EXCHANGE
from authserver.db import transaction
from authserver.models import AuditEvent
from tests.support.apps import build_test_app
from tests.support.calendar import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORDS,
    LiveCalendar,
    live_calendar,
    register_calendar,
)
from tests.support.factories import (
    DEFAULT_PASSWORD,
    ClientInfo,
    make_client,
    make_resource,
    make_user,
)
from tests.support.flows import csrf_token, hidden_fields
from tests.support.live import LiveBrowser, LiveServer, ServerProcess, live_server
from vault import upstream
from vault.accounts import account_aad
from vault.envelope import unseal
from vault.models import ConnectedAccount

FEDERATED = "urn:authserver:token-type:federated-access-token"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
AGENT_REDIRECT = "https://agent.example.com/callback"
MACHINE_API = "https://api.example.com"  # for the agent's own client-credentials tokens
FREEBUSY_WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}


class UpstreamSpy:
    """Wraps vault.upstream's token calls and keeps every UpstreamTokens they returned."""

    def __init__(self) -> None:
        self.answers: list[upstream.UpstreamTokens] = []

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> UpstreamSpy:
        spy = cls()
        for name in ("exchange_code", "refresh"):
            original = getattr(upstream, name)
            monkeypatch.setattr(upstream, name, spy._recording(original))
        return spy

    def _recording(self, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> upstream.UpstreamTokens:
            answer: upstream.UpstreamTokens = original(*args, **kwargs)
            self.answers.append(answer)
            return answer

        return call

    @property
    def access_tokens(self) -> list[str]:
        return [answer.access_token for answer in self.answers]

    @property
    def refresh_tokens(self) -> list[str]:
        return list(dict.fromkeys(a.refresh_token for a in self.answers if a.refresh_token))

    def secrets(self) -> list[str]:
        """Every upstream token seen, and the connection's client secret."""
        return [*self.access_tokens, *self.refresh_tokens, CLIENT_SECRET]


def encodings(secret: str) -> list[bytes]:
    """`secret` as it could sit in storage or logs: plain, base64 (standard and urlsafe,
    padded or not, at each 3-byte alignment inside a longer blob) and hex."""
    raw = secret.encode()
    found = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw)
        found += [whole, whole.rstrip(b"=")]
        for shift in (0, 1, 2):
            # Inside a longer blob the secret may start mid-group and end mid-group: the
            # groups wholly made of its bytes do not depend on what surrounds it.
            shifted = encode(b"\0" * shift + raw)
            found.append(shifted[4 if shift else 0 : len(shifted) - 4])
    return found


def leaks(haystack: bytes | str, secrets: list[str]) -> list[str]:
    """The secrets (by position, never the value) found in `haystack` in any encoding."""
    data = haystack.encode() if isinstance(haystack, str) else haystack
    return [
        f"secret #{index} ({len(secret)} chars)"
        for index, secret in enumerate(secrets)
        if any(form in data for form in encodings(secret))
    ]


@dataclass
class VaultScene:
    app: Flask
    server: LiveServer
    calendar: LiveCalendar
    agent: ClientInfo
    stranger: ClientInfo
    user_ids: dict[str, str]
    restartable: PortServer | None = None
    browsers: dict[str, requests.Session] = field(default_factory=dict)

    def restart(self, **overrides: Any) -> None:
        """Stop the authserver and start it again on the same port with `overrides`."""
        assert self.restartable is not None, "build the scene with a port to restart it"
        self.server = self.restartable.start(**overrides)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def vault(self) -> Any:
        return self.server.runtime.vault

    def browser(self, username: str) -> requests.Session:
        """The person's browser, signed in to the authserver (one per person)."""
        if username not in self.browsers:
            self.browsers[username] = signed_in(self.url, username)
        return self.browsers[username]

    def connect(self, username: str = "alice", scope: str = "calendar.freebusy") -> Any:
        uri = f"{self.url}/connections/calendar/connect?" + requests.compat.urlencode(
            {"scope": scope}
        )
        return follow_connect(self.browser(username), uri, username)

    def subject_token(self, username: str = "alice", client: ClientInfo | None = None) -> str:
        return user_token(self.server, client or self.agent, username)

    def federated(
        self,
        subject: str,
        scope: str | None = None,
        client: ClientInfo | None = None,
        **extra: str,
    ) -> requests.Response:
        return federated(self.server, client or self.agent, subject, scope, **extra)

    def account(self, username: str) -> ConnectedAccount | None:
        with self.server.runtime.session_factory() as session:
            return session.scalar(
                select(ConnectedAccount).where(
                    ConnectedAccount.user_id == self.user_ids[username],
                    ConnectedAccount.connection_name == "calendar",
                )
            )

    def stored_refresh_token(self, username: str) -> str:
        account = self.account(username)
        assert account is not None
        keyring = self.server.runtime.keyring
        opened = unseal(
            keyring, account.refresh_token_sealed, account_aad(account, "refresh_token")
        )
        return opened.decode()

    def expire_cached(self, username: str = "alice") -> None:
        """The cached upstream access token has expired: in the database (seen by every
        process) and at the calendar (so the old token no longer works there either)."""
        expire_cached(self.app, self.user_ids[username])
        self.calendar.expire_access_tokens()

    def events(self, event: str) -> list[AuditEvent]:
        with self.server.runtime.session_factory() as session:
            return list(
                session.scalars(
                    select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
                )
            )

    def freebusy(self, access_token: str) -> requests.Response:
        return requests.get(
            f"{self.calendar.url}/freebusy",
            params=FREEBUSY_WINDOW,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )


def expire_cached(app: Flask, user_id: str, connection: str = "calendar") -> None:
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(
            update(ConnectedAccount)
            .where(
                ConnectedAccount.user_id == user_id,
                ConnectedAccount.connection_name == connection,
            )
            .values(access_token_expires_at=time.time() - 60)
        )


def make_agent(app: Flask, client_id: str = "agent") -> ClientInfo:
    """An agent: signs its user in (code flow) and exchanges that token, or its own."""
    return make_client(
        app,
        client_id,
        redirect_uris=[AGENT_REDIRECT],
        grant_types=["authorization_code", "client_credentials", TOKEN_EXCHANGE],
        scope="openid read",
        allowed_audiences=[MACHINE_API],  # its own client-credentials tokens
    )


class PortServer:
    """The authserver on a fixed loopback port, so it can be restarted with other settings
    (a new key ring) under the same issuer: tokens it issued stay valid across restarts."""

    def __init__(self, port: int, database_url: str) -> None:
        self.port = port
        self.database_url = database_url
        self.url = f"http://127.0.0.1:{port}"
        self._running: tuple[Any, threading.Thread, Flask] | None = None

    def start(self, **overrides: Any) -> LiveServer:
        self.stop()
        app = build_test_app(self.database_url, issuer=self.url, **overrides)
        server = make_server("127.0.0.1", self.port, app, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._running = (server, thread, app)
        return LiveServer(app, self.url)

    def stop(self) -> None:
        if self._running is None:
            return
        server, thread, app = self._running
        self._running = None
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        app.extensions["authserver"].engine.dispose()


@contextmanager
def vault_scene(
    app: Flask,
    database_url: str,
    directory: Path,
    access_token_ttl: int = 3600,
    port: int | None = None,
    **server_overrides: Any,
) -> Iterator[VaultScene]:
    """Both servers on loopback, alice and bob, the agent and a stranger client.

    With `port`, the authserver listens there and `scene.restart(**overrides)` replaces it.
    """
    with ExitStack() as stack:
        if port is None:
            server = stack.enter_context(live_server(database_url, **server_overrides))
            restartable = None
        else:
            restartable = PortServer(port, database_url)
            stack.callback(restartable.stop)
            server = restartable.start(**server_overrides)
        calendar = stack.enter_context(live_calendar(server.url, directory, access_token_ttl))
        user_ids = {name: make_user(app, name).id for name in ("alice", "bob")}
        make_resource(app, MACHINE_API, ("read",))
        agent = make_agent(app, "agent")
        stranger = make_agent(app, "stranger")
        register_calendar(app, calendar.url, ["agent"])
        yield VaultScene(app, server, calendar, agent, stranger, user_ids, restartable)


def signed_in(server_url: str, username: str) -> requests.Session:
    http = requests.Session()
    page = http.get(f"{server_url}/login", timeout=10).text
    response = http.post(
        f"{server_url}/login",
        timeout=10,
        data={"username": username, "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page)},
    )
    assert response.status_code == 200 and "/logout" in response.text, "sign-in failed"
    return http


def follow_connect(
    http: requests.Session, connect_uri: str, username: str, decision: str = "approve"
) -> requests.Response:
    """Open `connect_uri` in the person's browser and answer the calendar's pages."""
    response = http.get(connect_uri, timeout=10)
    for _ in range(6):
        text = response.text
        if 'name="password"' in text and 'name="decision"' not in text:
            form = dict(hidden_fields(text)) | {
                "username": username,
                "password": PASSWORDS[username],
            }
            response = http.post(form_action(response), data=form, timeout=10)
        elif 'name="decision"' in text:
            form = hidden_fields(text) + [("decision", decision)]
            response = http.post(form_action(response), data=form, timeout=10)
        else:
            return response
    raise AssertionError("the connect flow did not finish")


def calendar_callback(
    http: requests.Session, start_uri: str, username: str, decision: str = "approve"
) -> str:
    """Walk the connect flow up to (not into) the authserver's callback; return its URL."""
    response = http.get(start_uri, allow_redirects=False, timeout=10)
    for _ in range(10):
        location = response.headers.get("Location")
        if response.status_code in (301, 302, 303) and location:
            target = urljoin(response.url, location)
            if "/connections/" in target and "/callback" in target:
                return target
            response = http.get(target, allow_redirects=False, timeout=10)
            continue
        text = response.text
        if 'name="password"' in text and 'name="decision"' not in text:
            form = dict(hidden_fields(text)) | {
                "username": username,
                "password": PASSWORDS[username],
            }
        elif 'name="decision"' in text:
            form = dict(hidden_fields(text)) | {"decision": decision}
        else:
            raise AssertionError(f"unexpected page {response.status_code}: {response.url}")
        response = http.post(form_action(response), data=form, allow_redirects=False, timeout=10)
    raise AssertionError("the calendar never redirected back")


def form_action(response: requests.Response) -> str:
    match = re.search(r'<form[^>]*action="([^"]*)"', response.text)
    return urljoin(response.url, match.group(1) if match else "")


def user_token(server: LiveServer | str, agent: ClientInfo, username: str) -> str:
    """The user signs the agent in (authorization code + PKCE); its access token."""
    from authlib.integrations.requests_client import OAuth2Session

    url = server if isinstance(server, str) else server.url
    metadata = requests.get(f"{url}/.well-known/openid-configuration", timeout=10).json()
    session = OAuth2Session(
        agent.client_id,
        agent.client_secret,
        scope="openid",
        redirect_uri=AGENT_REDIRECT,
        code_challenge_method="S256",
    )
    verifier = "v" * 64
    authorize, _ = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier
    )
    callback = LiveBrowser(url, username, DEFAULT_PASSWORD).authorize(authorize)
    token = session.fetch_token(
        metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    return str(token["access_token"])


def federated(
    server: LiveServer | str,
    agent: ClientInfo,
    subject: str,
    scope: str | None = None,
    **extra: str,
) -> requests.Response:
    """RFC 8693 token exchange for a federated (upstream) access token."""
    url = server if isinstance(server, str) else server.url
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        "requested_token_type": FEDERATED,
        "connection": "calendar",
        **extra,
    }
    if scope:
        data["scope"] = scope
    return requests.post(f"{url}/token", data=data, auth=agent.basic_auth, timeout=30)


def wait_until_up(process: ServerProcess, seconds: float = 120.0) -> None:
    """Like ServerProcess.wait_until_up, but patient with a busy machine: a slow first
    answer (a read timeout) means "not yet", not "failed"."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise AssertionError(f"server exited: {process.log.read_text()[-2000:]}")
        try:
            requests.get(f"{process.url}/.well-known/openid-configuration", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"{process.url} did not start: {process.log.read_text()[-2000:]}")


def calendar_refresh(calendar_url: str, refresh_token: str) -> requests.Response:
    """Present a refresh token to the calendar directly, as the vault's client would."""
    return requests.post(
        f"{calendar_url}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=10,
    )
