"""Fixtures for the demo services. Calendar fixtures are prefixed ``calendar_``.

``CalendarFlow`` drives the mock calendar provider the way a browser and the
vault would (sign in, consent with CSRF, code exchange with PKCE, refresh), over
either Flask's test client or real HTTP, so the same steps serve both layers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from demo_agent.calendar import create_app

CLIENT_ID = "vault-test"
CLIENT_SECRET = "vault-test-secret"
REDIRECT_URI = "http://127.0.0.1:8000/connections/calendar/callback"
OTHER_CLIENT_ID = "other-app"
OTHER_SECRET = "other-app-secret"
OTHER_REDIRECT_URI = "http://127.0.0.1:9000/callback"
PASSWORDS = {"alice": "alice-calendar-pw", "bob": "bob-calendar-pw"}


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


class Http(Protocol):
    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply: ...


class FlaskHttp:
    """Http over Flask's test client (cookies kept, redirects not followed)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        reply = self.client.open(
            path, method=method, query_string=params, data=data, headers=dict(headers or {})
        )
        return Reply(reply.status_code, reply.headers, reply.get_data(as_text=True))


class RequestsHttp:
    """Http over a real socket with requests.Session (redirects not followed)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        url = path if path.startswith("http") else self.base_url + path
        reply = self.session.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            allow_redirects=False,
            timeout=30,
        )
        return Reply(reply.status_code, reply.headers, reply.text)


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.fields[found["name"] or ""] = found.get("value") or ""


def hidden_inputs(html: str) -> dict[str, str]:
    """The hidden form fields of a page (csrf_token, next, request)."""
    parser = _Inputs()
    parser.feed(html)
    return parser.fields


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636 §4.1-§4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def redirect_params(reply: Reply, redirect_uri: str = REDIRECT_URI) -> dict[str, str]:
    """Query parameters of a redirect to the client, checking it goes to ``redirect_uri``."""
    assert reply.status == 302, reply.text
    assert reply.location.split("?")[0] == redirect_uri
    return dict(parse_qsl(urlsplit(reply.location).query))


def local_path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + ("?" + parts.query if parts.query else "")


class CalendarFlow:
    """A browser plus a confidential client, walking the provider's pages and endpoints."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def get(self, path: str, params: Mapping[str, str] | None = None, **kw: Any) -> Reply:
        return self.http.request("GET", path, params=params, **kw)

    def post(self, path: str, data: Mapping[str, str] | None = None, **kw: Any) -> Reply:
        return self.http.request("POST", path, data=data, **kw)

    def authorization_params(self, **overrides: str | None) -> tuple[dict[str, str], str]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": "calendar.freebusy",
            "state": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)  # type: ignore[arg-type]
        return {k: v for k, v in params.items() if v is not None}, verifier

    def sign_in(self, username: str = "alice", next_path: str | None = None) -> Reply:
        page = self.get("/login", {"next": next_path} if next_path else None)
        fields = hidden_inputs(page.text)
        form = {**fields, "username": username, "password": PASSWORDS[username]}
        return self.post("/login", form)

    def consent_page(self, params: Mapping[str, str], username: str = "alice") -> Reply:
        """GET /authorize, signing in when asked; returns the consent page."""
        reply = self.get("/authorize", params)
        if urlsplit(reply.location).path == "/login":
            next_path = dict(parse_qsl(urlsplit(reply.location).query))["next"]
            reply = self.get(local_path(self.sign_in(username, next_path).location))
        assert urlsplit(reply.location).path == "/consent", reply.text
        return self.get(local_path(reply.location))

    def authorize(
        self, params: Mapping[str, str], username: str = "alice", decision: str = "approve"
    ) -> Reply:
        page = self.consent_page(params, username)
        return self.post("/consent", {**hidden_inputs(page.text), "decision": decision})

    def code(self, scope: str = "calendar.freebusy", username: str = "alice") -> tuple[str, str]:
        params, verifier = self.authorization_params(scope=scope)
        answer = redirect_params(self.authorize(params, username))
        assert answer["state"] == params["state"]
        return answer["code"], verifier

    def exchange(self, code: str, verifier: str, **overrides: str) -> Reply:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
        }
        return self.post("/token", {**form, **overrides}, headers=basic())

    def tokens(self, scope: str = "calendar.freebusy", username: str = "alice") -> dict[str, Any]:
        reply = self.exchange(*self.code(scope, username))
        assert reply.status == 200, reply.text
        return reply.json()

    def refresh(self, refresh_token: str, **extra: str) -> Reply:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
        return self.post("/token", form, headers=basic())

    def revoke(self, token: str, **extra: str) -> Reply:
        return self.post("/revoke", {"token": token, **extra}, headers=basic())

    def api(self, path: str, token: str, start: str, end: str) -> Reply:
        headers = {"Authorization": f"Bearer {token}"}
        return self.get(path, {"start": start, "end": end}, headers=headers)


def calendar_settings(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'calendar.db'}",
        "SECRET_KEY": "calendar-test-session-key",
        "ISSUER": "http://calendar.test",
        "TEST_CONTROLS": True,
        "TESTING": True,
        "CLIENTS": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI],
            },
            {
                "client_id": OTHER_CLIENT_ID,
                "client_secret": OTHER_SECRET,
                "redirect_uris": [OTHER_REDIRECT_URI],
            },
        ],
    }
    return settings | overrides


@pytest.fixture
def calendar_config(tmp_path: Path) -> dict[str, Any]:
    """Override in a module to change the wiring."""
    return calendar_settings(tmp_path)


@pytest.fixture
def calendar_app(calendar_config: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(calendar_config)
    yield app
    app.extensions["calendar"].engine.dispose()


@pytest.fixture
def calendar_client(calendar_app: Flask) -> FlaskClient:
    return calendar_app.test_client()


@pytest.fixture
def calendar_flow(calendar_client: FlaskClient) -> CalendarFlow:
    return CalendarFlow(FlaskHttp(calendar_client))


@pytest.fixture
def calendar_server(tmp_path: Path) -> Iterator[tuple[str, Flask]]:
    """The provider on a free loopback port in a thread: (base URL, app)."""
    apps: list[Flask] = []
    server = make_server("127.0.0.1", 0, lambda env, start: apps[0](env, start), threaded=True)
    base_url = f"http://127.0.0.1:{server.port}"
    apps.append(create_app(calendar_settings(tmp_path, ISSUER=base_url, TESTING=False)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base_url, apps[0]
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()
    apps[0].extensions["calendar"].engine.dispose()
