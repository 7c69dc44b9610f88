"""Walking the browser side of the flows with a test client (or requests.Session)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def csrf_token(page: str) -> str:
    match = CSRF.search(page)
    if match is None:
        raise AssertionError("no CSRF field on the page")
    return html.unescape(match.group(1))


def hidden_fields(page: str) -> list[tuple[str, str]]:
    return [(name, html.unescape(value)) for name, value in HIDDEN.findall(page)]


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


class Browser:
    """One person's browser session against the app."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, username: str, password: str, next_url: str = "/") -> Any:
        page = self.client.get("/login").get_data(as_text=True)
        form = {
            "username": username,
            "password": password,
            "next": next_url,
            "csrf_token": csrf_token(page),
        }
        return self.client.post("/login", data=form)

    def authorize(self, params: dict[str, Any], decision: str = "approve") -> Any:
        """GET /authorize, approve or deny on the consent page if shown; the final response."""
        response = self.client.get("/authorize?" + urlencode(params, doseq=True))
        location = response.headers.get("Location", "")
        if response.status_code == 302 and location.startswith("/consent"):
            page = self.client.get(location).get_data(as_text=True)
            fields = MultiDict(hidden_fields(page) + [("decision", decision)])
            response = self.client.post("/consent", data=fields)
        return response

    def code_for(self, params: dict[str, Any]) -> str:
        response = self.authorize(params)
        query = query_of(response.headers["Location"])
        if "code" not in query:
            raise AssertionError(f"no code in redirect: {query}")
        return query["code"]


def code_params(
    client_id: str,
    redirect_uri: str,
    pkce: Pkce | None = None,
    scope: str = "openid profile",
    **extra: Any,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    if pkce is not None:
        params.update(code_challenge=pkce.challenge, code_challenge_method="S256")
    params.update(extra)
    return {key: value for key, value in params.items() if value is not None}
