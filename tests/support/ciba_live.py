"""CIBA over real HTTP: the mock broker on loopback, a person approving in a browser session.

- `serve_wsgi(build)`: binds a free 127.0.0.1 port first, then builds the app with
  that URL (a resource server whose identifier is its own address), serves it in a
  thread and stops it on exit.
- `live_broker(issuer, database_url)`: demo_agent.broker trusting `issuer`, its
  audience (RFC 8707 resource identifier) being its own URL.
- `ApprovalBrowser`: a person's cookie jar (requests.Session) that signs in through
  /login with the CSRF field and decides on /approvals through the HTML forms.
- `verify_jwt`: a token checked with PyJWT against the issuer's /jwks.json.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import requests
from werkzeug.serving import make_server

from .flows import csrf_token

APPROVAL_ACTION = re.compile(r'action="/approvals/([^"/]+)"')
TIMEOUT = 10


class _Deferred:
    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@contextmanager
def serve_wsgi(build: Callable[[str], Any]) -> Iterator[tuple[str, Any]]:
    """(url, app): `build(url)` served by werkzeug's threaded server on loopback."""
    deferred = _Deferred()
    server = make_server("127.0.0.1", 0, deferred, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        deferred.app = build(url)
    except BaseException:
        server.server_close()
        raise
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield url, deferred.app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def live_broker(issuer: str, database_url: str) -> Iterator[tuple[str, Any]]:
    """The demo broker on a free port; BROKER_AUDIENCE is its own URL."""
    from demo_agent.broker import create_app

    def build(url: str) -> Any:
        config = {
            "BROKER_ISSUER": issuer,
            "BROKER_AUDIENCE": url,
            "BROKER_DATABASE_URL": database_url,
            "BROKER_JWKS_REFETCH_INTERVAL": 0,
        }
        return create_app(config)

    with serve_wsgi(build) as (url, app):
        try:
            yield url, app
        finally:
            app.extensions["broker"].close()


def broker_orders(broker_app: Any) -> list[Any]:
    """Every order row in the broker's ledger (bookkeeping, not through the API)."""
    from sqlalchemy import select

    from demo_agent.broker.models import Order

    with broker_app.extensions["broker"].ledger.transaction() as session:
        return list(session.scalars(select(Order)).all())


class ApprovalBrowser:
    """A person at the approval page, in a cookie jar of their own."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.username = username
        self.password = password
        self.http = requests.Session()

    def sign_in(self) -> None:
        page = self.http.get(f"{self.base_url}/login", timeout=TIMEOUT)
        form = {
            "username": self.username,
            "password": self.password,
            "next": "/approvals",
            "csrf_token": csrf_token(page.text),
        }
        response = self.http.post(
            f"{self.base_url}/login", data=form, allow_redirects=False, timeout=TIMEOUT
        )
        assert response.status_code == 302, response.text[:500]

    def page(self) -> str:
        response = self.http.get(f"{self.base_url}/approvals", timeout=TIMEOUT)
        assert response.status_code == 200, response.status_code
        return response.text

    def pending_ids(self) -> list[str]:
        return APPROVAL_ACTION.findall(self.page())

    def decide(
        self, request_id: str, decision: str = "approve", password: str | None = None
    ) -> requests.Response:
        """Submit the request's form as the page renders it (hidden CSRF field included)."""
        page = self.page()
        form = {
            "csrf_token": csrf_token(page),
            "decision": decision,
            "password": self.password if password is None else password,
        }
        return self.http.post(
            f"{self.base_url}/approvals/{request_id}",
            data=form,
            allow_redirects=False,
            timeout=TIMEOUT,
        )


def verify_jwt(
    issuer: str, token: str, *, audience: str, algorithms: list[str], typ: str
) -> dict[str, Any]:
    """RFC 9068 §4 / OIDC Core §3.1.3.7: a key by `kid` from the JWKS, fixed algorithms."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] in algorithms and header["typ"] == typ, header
    jwks = requests.get(f"{issuer}/jwks.json", timeout=TIMEOUT).json()
    key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=algorithms,
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    return claims
