"""Demo data: users, clients and the broker resource, seeded idempotently.

Demo client secrets are derived from the instance's session secret, so re-seeding
prints the same values without ever storing them (only digests are stored).
Refused in production.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.connect import create_connection
from vault.models import Connection

from .admin import CIBA, TOKEN_EXCHANGE, create_client, create_resource, create_user
from .credentials import digest
from .models import Client, ResourceServer, User
from .runtime import Runtime

# The broker registers its `trade` authorization-details type (RFC 9396) from this file.
TRADE_TYPE_FILE = Path(__file__).resolve().parent.parent / "demo_agent/broker/trade_type.json"
BROKER_URL = os.environ.get("DEMO_BROKER_URL", "http://127.0.0.1:8001").rstrip("/")
CALENDAR_URL = os.environ.get("DEMO_CALENDAR_URL", "http://127.0.0.1:8002").rstrip("/")
# The agent's loopback redirect (RFC 8252 §7.3); another port when 8765 is taken.
AGENT_REDIRECT_URI = os.environ.get("DEMO_AGENT_REDIRECT_URI", "http://127.0.0.1:8765/callback")

DEMO_USERS = [
    {
        "username": "alice",
        "password": "alice-demo-password",
        "email": "alice@example.com",
        "name": "Alice Example",
    },
    {
        "username": "bob",
        "password": "bob-demo-password",
        "email": "bob@example.com",
        "name": "Bob Example",
    },
]


@dataclass
class DemoClient:
    client_id: str
    name: str
    auth_method: str
    grant_types: list[str]
    scope: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    may_delegate: bool = False
    allowed_audiences: list[str] = field(default_factory=list)


def demo_clients() -> list[DemoClient]:
    return [
        DemoClient(
            "demo-web",
            "Demo Web App",
            "client_secret_basic",
            ["authorization_code", "refresh_token"],
            "openid profile email offline_access portfolio:read",
            ["http://127.0.0.1:9000/callback"],
            ["http://127.0.0.1:9000/"],
        ),
        DemoClient(
            "demo-cli",
            "Demo CLI (public)",
            "none",
            ["authorization_code", "refresh_token"],
            "openid profile email portfolio:read",
            ["http://127.0.0.1/callback"],
        ),
        DemoClient(
            "demo-service",
            "Demo Service",
            "client_secret_basic",
            ["client_credentials"],
            "portfolio:read",
            allowed_audiences=[BROKER_URL],
        ),
        DemoClient("broker-api", "Broker API", "client_secret_basic", ["client_credentials"], ""),
        DemoClient(
            "demo-agent",
            "Demo Agent",
            "client_secret_basic",
            ["authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE, CIBA],
            "openid profile email offline_access portfolio:read",
            [AGENT_REDIRECT_URI],
            may_delegate=True,
            allowed_audiences=[BROKER_URL],
        ),
    ]


def demo_secret(runtime: Runtime, client_id: str) -> str:
    key = runtime.settings.secret_key.encode("utf-8")
    mac = hmac.new(key, f"demo-client-secret:{client_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _seed_users(session: Session, runtime: Runtime) -> None:
    for spec in DEMO_USERS:
        if session.scalar(select(User).where(User.username == spec["username"])) is None:
            create_user(
                session,
                runtime.passwords,
                spec["username"],
                spec["password"],
                spec["email"],
                spec["name"],
            )


def _seed_client(session: Session, runtime: Runtime, spec: DemoClient) -> dict[str, Any]:
    client = session.get(Client, spec.client_id)
    if client is None:
        client = create_client(
            session,
            name=spec.name,
            client_id=spec.client_id,
            auth_method=spec.auth_method,
            redirect_uris=spec.redirect_uris,
            grant_types=spec.grant_types,
            scope=spec.scope,
            post_logout_redirect_uris=spec.post_logout_redirect_uris,
            may_delegate=spec.may_delegate,
            allowed_audiences=spec.allowed_audiences,
            backchannel_mode="poll" if CIBA in spec.grant_types else None,
        ).client
    secret = None if spec.auth_method == "none" else demo_secret(runtime, spec.client_id)
    client.secret_hash = digest(secret) if secret else None
    return {
        "client_id": client.client_id,
        "client_secret": secret,
        "name": client.client_name,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "scope": client.scope,
    }


def _seed_broker(session: Session) -> dict[str, Any]:
    resource = session.scalar(select(ResourceServer).where(ResourceServer.identifier == BROKER_URL))
    if resource is None:
        resource = create_resource(
            session,
            identifier=BROKER_URL,
            name="Demo Broker",
            scopes=["portfolio:read"],
            client_id="broker-api",
            detail_types=[json.loads(TRADE_TYPE_FILE.read_text(encoding="utf-8"))],
        )
    return resource.describe()


def _seed_calendar(session: Session, runtime: Runtime) -> dict[str, Any]:
    """The mock calendar provider as connection `calendar`, usable by the demo agent."""
    from demo_agent.calendar.config import DEV_CLIENT_SECRET
    from demo_agent.calendar.demo_data import DEMO_USERS as CALENDAR_USERS

    connection = session.get(Connection, "calendar")
    if connection is None:
        connection = create_connection(
            session,
            runtime.keyring,
            time.time,
            name="calendar",
            display_name="Demo Calendar",
            client_id="authserver-vault",
            client_secret=DEV_CLIENT_SECRET,
            authorize_url=f"{CALENDAR_URL}/authorize",
            token_url=f"{CALENDAR_URL}/token",
            revocation_url=f"{CALENDAR_URL}/revoke",
            discovery_url=f"{CALENDAR_URL}/.well-known/oauth-authorization-server",
            scopes=["calendar.freebusy", "calendar.read"],
            default_scopes=["calendar.freebusy"],
            allowed_clients=["demo-agent"],
            issuer=CALENDAR_URL,
            require_iss=True,  # its metadata promises iss (RFC 9207)
        )
    return {
        "name": connection.name,
        "display_name": connection.display_name,
        "provider": CALENDAR_URL,
        "scopes": connection.scopes,
        "connect_uri": f"{runtime.settings.issuer}/connections/calendar/connect",
        "provider_users": [
            {"username": u["username"], "password": u["password"]} for u in CALENDAR_USERS
        ],
    }


def seed(session: Session, runtime: Runtime) -> dict[str, Any]:
    """Create what is missing and describe everything (passwords and secrets included)."""
    _seed_users(session, runtime)
    specs = demo_clients()
    # The broker resource names its own client, and clients may only be allowed registered
    # resources: clients without audiences first, then the broker, then the rest.
    seeded = {
        s.client_id: _seed_client(session, runtime, s) for s in specs if not s.allowed_audiences
    }
    resources = [_seed_broker(session)]
    seeded |= {s.client_id: _seed_client(session, runtime, s) for s in specs if s.allowed_audiences}
    clients = [seeded[spec.client_id] for spec in specs]
    return {
        "issuer": runtime.settings.issuer,
        "users": [{k: u[k] for k in ("username", "password", "email")} for u in DEMO_USERS],
        "clients": clients,
        "resources": resources,
        "connections": [_seed_calendar(session, runtime)],
    }
