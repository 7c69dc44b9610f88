"""The mock calendar provider on loopback, registered as the vault connection `calendar`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import make_server

from authserver.db import transaction
from demo_agent.calendar import create_app
from vault.connect import create_connection

CLIENT_ID = "authserver-vault"
CLIENT_SECRET = "calendar-test-secret-0123456789"
PASSWORDS = {"alice": "alice-calendar-pw", "bob": "bob-calendar-pw"}


@dataclass
class LiveCalendar:
    app: Flask
    url: str

    def stats(self) -> dict[str, int]:
        return dict(requests.get(f"{self.url}/_test/stats", timeout=5).json())

    def fault(self, mode: str, **extra: Any) -> None:
        response = requests.post(
            f"{self.url}/_test/faults", json={"token": mode, **extra}, timeout=5
        )
        response.raise_for_status()

    def expire_access_tokens(self) -> None:
        requests.post(f"{self.url}/_test/expire-access-tokens", timeout=5).raise_for_status()


@contextmanager
def live_calendar(
    authserver_url: str, directory: Path, access_token_ttl: int = 3600
) -> Iterator[LiveCalendar]:
    holder: dict[str, Any] = {}
    server = make_server(
        "127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True
    )
    url = f"http://127.0.0.1:{server.server_port}"
    holder["app"] = create_app(
        {
            "ISSUER": url,
            "DATABASE_URL": f"sqlite:///{directory / 'calendar.db'}",
            "SECRET_KEY": "calendar-test-session-secret-0123456789",
            "TEST_CONTROLS": True,
            "ACCESS_TOKEN_TTL": access_token_ttl,
            "CLIENTS": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [f"{authserver_url}/connections/calendar/callback"],
                }
            ],
        }
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield LiveCalendar(holder["app"], url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def register_calendar(app: Flask, calendar_url: str, allowed_clients: list[str]) -> None:
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        create_connection(
            session,
            runtime.keyring,
            runtime.vault.clock,
            name="calendar",
            display_name="Calendar",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            authorize_url=f"{calendar_url}/authorize",
            token_url=f"{calendar_url}/token",
            revocation_url=f"{calendar_url}/revoke",
            discovery_url=None,
            scopes=["calendar.freebusy", "calendar.read"],
            default_scopes=["calendar.freebusy"],
            allowed_clients=allowed_clients,
            issuer=calendar_url,
            require_iss=True,
        )


def connect_account(
    http: requests.Session,
    authserver_url: str,
    username: str = "alice",
    scope: str = "calendar.freebusy",
) -> requests.Response:
    """A signed-in browser links its calendar: authserver → calendar sign-in and consent → back."""
    from tests.support.flows import hidden_fields

    response = http.get(
        f"{authserver_url}/connections/calendar/connect", params={"scope": scope}, timeout=10
    )
    for _ in range(6):
        text = response.text
        if 'name="password"' in text and 'name="decision"' not in text:
            form = dict(hidden_fields(text)) | {
                "username": username,
                "password": PASSWORDS[username],
            }
            response = http.post(_form_action(response), data=form, timeout=10)
        elif 'name="decision"' in text:
            form = hidden_fields(text) + [("decision", "approve")]
            response = http.post(_form_action(response), data=form, timeout=10)
        else:
            return response
    raise AssertionError("the connect flow did not finish")


def _form_action(response: requests.Response) -> str:
    import re
    from urllib.parse import urljoin

    match = re.search(r'<form[^>]*action="([^"]*)"', response.text)
    action = match.group(1) if match else ""
    return urljoin(response.url, action)
