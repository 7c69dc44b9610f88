"""What the load needs before it starts: a signed-in browser with remembered consent,
PKCE values, and a pool of refresh tokens that are each used exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from sqlalchemy import select

from authserver.db import transaction
from authserver.models import Grant, User, new_id, now
from authserver.tokens import issue_refresh_token

from .servers import (
    CODE_FLOW_SCOPE,
    REDIRECT_URI,
    RESOURCE,
    USERNAME,
    AuthServer,
    ClientCredentials,
)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
EXCHANGE_SCOPE = "read"

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
SESSION_COOKIE = "authserver_session"


class Pkce:
    """One verifier for every flow: each code is still bound to its own challenge."""

    def __init__(self) -> None:
        self.verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        self.challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_path(server: AuthServer, pkce: Pkce) -> str:
    assert server.web_client is not None
    params = {
        "response_type": "code",
        "client_id": server.web_client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": CODE_FLOW_SCOPE,
        "state": "bench-state",
        "nonce": "bench-nonce",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    return "/authorize?" + urlencode(params)


def token_body(pkce: Pkce) -> str:
    """The code-redemption form without `code` (the wrk script appends it)."""
    return urlencode(
        {
            "grant_type": "authorization_code",
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.verifier,
        }
    )


def _csrf(page: str) -> str:
    match = CSRF.search(page)
    if match is None:
        raise RuntimeError("no CSRF field on the page")
    return html.unescape(match.group(1))


def sign_in_with_consent(server: AuthServer, pkce: Pkce) -> str:
    """Sign in over HTTP, approve consent once, check a code comes back; the Cookie header."""
    browser = requests.Session()
    page = browser.get(server.url + "/login", timeout=10).text
    form = {"username": USERNAME, "password": server.password, "csrf_token": _csrf(page)}
    signed_in = browser.post(server.url + "/login", data=form, allow_redirects=False, timeout=30)
    if signed_in.status_code != 302:
        raise RuntimeError(f"sign-in failed with HTTP {signed_in.status_code}")
    path = authorize_path(server, pkce)
    answer = browser.get(server.url + path, allow_redirects=False, timeout=10)
    location = answer.headers.get("Location", "")
    if location.startswith("/consent"):
        page = browser.get(server.url + location, timeout=10).text
        fields = [(k, html.unescape(v)) for k, v in HIDDEN.findall(page)]
        fields.append(("decision", "approve"))
        browser.post(server.url + "/consent", data=fields, allow_redirects=False, timeout=10)
        answer = browser.get(server.url + path, allow_redirects=False, timeout=10)
        location = answer.headers.get("Location", "")
    if "code" not in parse_qs(urlsplit(location).query):
        raise RuntimeError(f"consent was not remembered: /authorize answered {location!r}")
    return f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"


def _token(server: AuthServer, client: ClientCredentials, form: dict[str, str]) -> str:
    answer = requests.post(
        server.url + "/token",
        data=form,
        auth=(client.client_id, client.client_secret),
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def exchange_body(server: AuthServer) -> str:
    """RFC 8693 request body, the same for every request (neither token is consumed):
    the user's access token for the agent (from a refresh grant, as after sign-in) as
    subject, the agent's client-credentials token as actor, the resource as audience."""
    client = server.agent_client
    assert server.runtime is not None and client is not None
    runtime = server.runtime
    with transaction(runtime.session_factory) as session:
        user = session.scalars(select(User).where(User.username == USERNAME)).one()
        moment = now()
        grant = Grant(
            id=new_id(),
            user_id=user.id,
            client_id=client.client_id,
            scope=EXCHANGE_SCOPE,
            resources=[],
            auth_time=moment,
            expires_at=moment + runtime.settings.refresh_token_ttl,
        )
        session.add(grant)
        refresh = issue_refresh_token(
            session, grant, client.client_id, EXCHANGE_SCOPE, runtime.settings.refresh_token_ttl
        )
    subject = _token(server, client, {"grant_type": "refresh_token", "refresh_token": refresh})
    actor = _token(server, client, {"grant_type": "client_credentials", "scope": EXCHANGE_SCOPE})
    return urlencode(
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "actor_token": actor,
            "actor_token_type": ACCESS_TOKEN_TYPE,
            "audience": RESOURCE,
            "scope": EXCHANGE_SCOPE,
        }
    )


def mint_refresh_tokens(server: AuthServer, count: int, path: Path) -> None:
    """`count` refresh tokens, each of its own grant (as after `count` code flows),
    made with the app's own `issue_refresh_token`; written one per line to `path`."""
    assert server.runtime is not None and server.web_client is not None
    runtime = server.runtime
    ttl = runtime.settings.refresh_token_ttl
    client_id = server.web_client.client_id
    values = []
    with transaction(runtime.session_factory) as session:
        user = session.scalars(select(User).where(User.username == USERNAME)).one()
        moment = now()
        for _ in range(count):
            grant = Grant(
                id=new_id(),
                user_id=user.id,
                client_id=client_id,
                scope=CODE_FLOW_SCOPE,
                resources=[],
                auth_time=moment,
                expires_at=moment + ttl,
            )
            session.add(grant)
            values.append(issue_refresh_token(session, grant, client_id, CODE_FLOW_SCOPE, ttl))
    path.write_text("\n".join(values) + "\n", encoding="ascii")
