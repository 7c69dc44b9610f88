"""Token-endpoint calls and response checks shared by the protocol conformance tests."""

from __future__ import annotations

import html
from typing import Any

import jwt
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from authserver.credentials import digest
from authserver.db import transaction
from authserver.models import AuthorizationCode, RefreshToken

from .factories import ClientInfo
from .flows import Browser, Pkce, code_params, query_of


def token_request(client: FlaskClient, rp: ClientInfo, **data: Any) -> Any:
    """POST /token as `rp`: HTTP Basic for a confidential client, `client_id` for a public one."""
    if rp.client_secret:
        return client.post("/token", data=data, auth=rp.basic_auth)
    return client.post("/token", data={**data, "client_id": rp.client_id})


def redeem(client: FlaskClient, rp: ClientInfo, code: str, **extra: Any) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    return token_request(client, rp, **{**data, **extra})


def refresh(client: FlaskClient, rp: ClientInfo, refresh_token: str, **extra: Any) -> Any:
    return token_request(
        client, rp, grant_type="refresh_token", refresh_token=refresh_token, **extra
    )


def introspect(client: FlaskClient, rp: ClientInfo, token: str) -> dict[str, Any]:
    response = client.post("/introspect", data={"token": token}, auth=rp.basic_auth)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def tokens_for(
    browser: Browser,
    client: FlaskClient,
    rp: ClientInfo,
    scope: str = "openid profile",
    **extra: Any,
) -> dict[str, Any]:
    """A signed-in browser walks the code flow (with PKCE) and `rp` redeems the code."""
    pkce = Pkce.new()
    code = browser.code_for(code_params(rp.client_id, rp.redirect_uri, pkce, scope=scope, **extra))
    response = redeem(client, rp, code, code_verifier=pkce.verifier)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def redirect_error(response: Any, rp: ClientInfo, error: str, issuer: str) -> dict[str, str]:
    """An error sent back to the client's redirect URI (RFC 6749 §4.1.2.1, RFC 9207 §2)."""
    assert response.status_code == 302, response.get_data(as_text=True)[-500:]
    location = response.headers["Location"]
    assert location.split("?")[0] == rp.redirect_uri.split("?")[0], location
    query = query_of(location)
    assert query.get("error") == error, query
    assert query.get("iss") == issuer, query
    assert "code" not in query, query
    return query


def error_page(response: Any, status: int = 400) -> str:
    """A browser-facing error page: HTML, the given status, and never a redirect."""
    assert response.status_code == status, response.headers.get("Location")
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    return html.unescape(response.get_data(as_text=True))


def token_error(response: Any, error: str, status: int = 400) -> dict[str, Any]:
    """An RFC 6749 §5.2 error: JSON, `error`, the status, and not cacheable."""
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:300]
    body: dict[str, Any] = response.get_json()
    assert (response.status_code, body.get("error")) == (status, error), body
    assert response.headers.get("Cache-Control") == "no-store"
    assert "access_token" not in body
    return body


def verify_with_jwks(
    client: FlaskClient, token: str, *, audience: str, issuer: str, alg: str
) -> dict[str, Any]:
    """Verify a JWT as a relying party would: the key from /jwks.json by `kid`, a fixed alg."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg, header
    jwks = jwt.PyJWKSet.from_dict(client.get("/jwks.json").get_json())
    key = next(key for key in jwks.keys if key.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=[alg], audience=audience, issuer=issuer
    )
    return claims


def age_code(app: Flask, code: str, expires_at: int) -> None:
    """Move an authorization code's expiry (to test expired codes without sleeping)."""
    _update(app, AuthorizationCode, AuthorizationCode.code_hash == digest(code), expires_at)


def age_refresh_token(app: Flask, value: str, expires_at: int) -> None:
    _update(app, RefreshToken, RefreshToken.token_hash == digest(value), expires_at)


def _update(app: Flask, model: Any, where: Any, expires_at: int) -> None:
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        result = session.execute(update(model).where(where).values(expires_at=expires_at))
        assert result.rowcount == 1


def last_refusal(app: Flask, event: str) -> str:
    """The RFC `error` code of the newest refused `event` in the audit log (an error page shows
    people a description; the code it stands for is what the audit row records)."""
    from .db import audit_events

    refused = [row for row in audit_events(app, event) if row.outcome == "refused"]
    assert refused, f"no refused {event!r} audit row"
    error: str = refused[-1].details["error"]
    return error
