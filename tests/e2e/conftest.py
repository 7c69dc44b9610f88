"""Live servers for the agent SDK and CLI: the authserver, the mock broker, the mock calendar.

Module-scoped servers on loopback; each test gets fresh rows and a `Scene` with the
demo-agent-like client registered as `authserver demo` registers it (code, refresh,
client credentials, token exchange and CIBA; may_delegate; the broker as its only
audience; allowed to use the `calendar` connection), the broker resource with its
`trade` type, and alice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authserver.admin import CIBA, TOKEN_EXCHANGE, create_resource
from authserver.db import transaction
from demo_agent.sdk import AuthClient
from tests.support.apps import reset_database
from tests.support.broker import LiveBroker, live_broker
from tests.support.calendar import LiveCalendar, live_calendar, register_calendar
from tests.support.ciba_live import ApprovalBrowser
from tests.support.factories import DEFAULT_PASSWORD, ClientInfo, make_client, make_user
from tests.support.live import LiveBrowser, LiveServer, free_port, live_server

AGENT_ID = "demo-agent"
AGENT_SCOPE = "openid profile email offline_access portfolio:read"
TRADE_TYPE = json.loads(
    (Path(__file__).resolve().parents[2] / "demo_agent/broker/trade_type.json").read_text()
)


@pytest.fixture(scope="module")
def server(migrated_database):
    """The authserver with a 1 s CIBA interval and its notification dispatcher running."""
    with live_server(migrated_database, ciba_interval=1, notification_poll_interval=0.05) as up:
        try:
            yield up
        finally:
            up.runtime.dispatcher.stop()


@pytest.fixture(scope="module")
def broker(server, tmp_path_factory):
    with live_broker(server.url, tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture(scope="module")
def calendar(server, tmp_path_factory):
    with live_calendar(server.url, tmp_path_factory.mktemp("calendar")) as running:
        yield running


@dataclass
class Scene:
    server: LiveServer
    broker: LiveBroker
    calendar: LiveCalendar
    agent: ClientInfo
    clients: list[AuthClient]

    @property
    def issuer(self) -> str:
        return self.server.url

    def client(self, **options: Any) -> AuthClient:
        """An SDK client for the demo agent (closed after the test)."""
        options.setdefault("redirect_uri", self.agent.redirect_uri)
        made = AuthClient(self.issuer, self.agent.client_id, self.agent.client_secret, **options)
        self.clients.append(made)
        return made

    def browser(self, username: str = "alice", password: str = DEFAULT_PASSWORD) -> LiveBrowser:
        """A person's browser that signs in and consents (the SDK's `user_agent`)."""
        return LiveBrowser(self.issuer, username, password)

    def signed_in(self, **options: Any) -> AuthClient:
        made = self.client(**options)
        made.sign_in(self.browser().authorize, scope=AGENT_SCOPE)
        return made

    def approver(self, username: str = "alice") -> ApprovalBrowser:
        """The user at /approvals in a browser session of their own."""
        approver = ApprovalBrowser(self.issuer, username, DEFAULT_PASSWORD)
        approver.sign_in()
        return approver


def register_agent(app: Any, broker_url: str, **extra: Any) -> ClientInfo:
    """The demo agent as `authserver demo` seeds it, on a free loopback redirect port."""
    extra.setdefault("backchannel_mode", "poll")
    return make_client(
        app,
        extra.pop("client_id", AGENT_ID),
        name="Demo Agent",
        redirect_uris=[f"http://127.0.0.1:{free_port()}/callback"],
        grant_types=["authorization_code", "refresh_token", "client_credentials"]
        + [TOKEN_EXCHANGE, CIBA],
        scope=AGENT_SCOPE,
        may_delegate=True,
        allowed_audiences=[broker_url],
        **extra,
    )


@pytest.fixture
def scene(server, broker, calendar):
    reset_database(server.app)
    with transaction(server.runtime.session_factory) as session:
        create_resource(
            session,
            identifier=broker.url,
            name="Broker",
            scopes=["portfolio:read"],
            detail_types=[TRADE_TYPE],
        )
    make_user(server.app, "alice")
    agent = register_agent(server.app, broker.url)
    register_calendar(server.app, calendar.url, [AGENT_ID])
    made = Scene(server, broker, calendar, agent, [])
    yield made
    for client in made.clients:
        client.close()
