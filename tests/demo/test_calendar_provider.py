"""Mock calendar provider: metadata, authorization endpoint, sign-in, consent, code grant.

RFC 6749 §4.1, RFC 7636 (S256 only), RFC 8414, RFC 9207; pages follow the
authserver's conventions (username, password, hidden csrf_token, decision).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from flask import Flask
from sqlalchemy import func, select

from demo_agent.calendar.models import AuthorizationCode
from tests.demo.conftest import (
    CLIENT_ID,
    REDIRECT_URI,
    CalendarFlow,
    hidden_inputs,
    redirect_params,
)


def codes_in_db(app: Flask) -> int:
    with app.extensions["calendar"].sessions() as db:
        return int(db.scalar(select(func.count()).select_from(AuthorizationCode)) or 0)


def test_metadata_is_built_from_settings(calendar_flow: CalendarFlow) -> None:
    """RFC 8414 §2-§3: metadata names every endpoint under the issuer; S256 is the only method."""
    meta = calendar_flow.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == "http://calendar.test"
    assert meta["authorization_endpoint"] == "http://calendar.test/authorize"
    assert meta["token_endpoint"] == "http://calendar.test/token"
    assert meta["revocation_endpoint"] == "http://calendar.test/revoke"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["scopes_supported"]) == {"calendar.freebusy", "calendar.read", "offline_access"}
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


def test_code_flow_returns_code_state_and_iss(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §4.1.2: code and the exact state go back to the registered URI; RFC 9207 iss."""
    params, verifier = calendar_flow.authorization_params(state="a b&c<")
    answer = redirect_params(calendar_flow.authorize(params))
    assert answer["state"] == "a b&c<"
    assert answer["iss"] == "http://calendar.test"
    reply = calendar_flow.exchange(answer["code"], verifier)
    assert reply.status == 200
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "calendar.freebusy"
    assert body["access_token"] and body["refresh_token"]
    assert reply.headers["Cache-Control"] == "no-store"


def test_offline_access_is_accepted_and_ignored(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §3.3: offline_access is a known scope but is never part of the granted scope."""
    tokens = calendar_flow.tokens(scope="offline_access calendar.read")
    assert tokens["scope"] == "calendar.read"
    assert tokens["refresh_token"]


def test_unknown_client_id_shows_a_page_and_never_redirects(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §4.1.2.1: an invalid client_id must not redirect to the redirect_uri."""
    for client_id in ("nobody", None):
        params, _ = calendar_flow.authorization_params(client_id=client_id)
        reply = calendar_flow.get("/authorize", params)
        assert reply.status == 400
        assert "Location" not in reply.headers
        assert "Unknown application" in reply.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://evil.example/callback",
        REDIRECT_URI + "/extra",
        REDIRECT_URI + "?x=1",
        REDIRECT_URI.replace("8000", "8001"),
        "",
        None,
    ],
)
def test_bad_redirect_uri_shows_a_page_and_never_redirects(
    calendar_flow: CalendarFlow, redirect_uri: str | None
) -> None:
    """RFC 6749 §3.1.2.3, §4.1.2.1: exact match, else an error page and no redirect."""
    params, _ = calendar_flow.authorization_params(redirect_uri=redirect_uri, code_challenge=None)
    reply = calendar_flow.get("/authorize", params)
    assert reply.status == 400
    assert "Location" not in reply.headers
    assert "Invalid redirect URI" in reply.text


def test_repeated_client_parameters_never_redirect(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §3.1: a repeated redirect_uri cannot be trusted, so it is an error page."""
    params, _ = calendar_flow.authorization_params()
    query = urlencode(params) + "&" + urlencode({"redirect_uri": REDIRECT_URI})
    reply = calendar_flow.get("/authorize?" + query)
    assert reply.status == 400 and "Location" not in reply.headers


def test_repeated_parameters_redirect_invalid_request(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §3.1, §4.1.2.1: other repeated parameters are a redirected invalid_request."""
    params, _ = calendar_flow.authorization_params()
    answer = redirect_params(calendar_flow.get("/authorize?" + urlencode(params) + "&scope=x"))
    assert answer["error"] == "invalid_request" and "scope" in answer["error_description"]


def test_redirect_uri_of_another_client_is_refused(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §3.1.2.3: the URI must be registered for this client, not for any client."""
    params, _ = calendar_flow.authorization_params(redirect_uri="http://127.0.0.1:9000/callback")
    reply = calendar_flow.get("/authorize", params)
    assert reply.status == 400 and "Location" not in reply.headers


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
        ({"code_challenge": None}, "invalid_request", "code_challenge is required"),
        ({"code_challenge_method": None}, "invalid_request", "S256"),
        ({"code_challenge": "short"}, "invalid_request", "43 base64url"),
        ({"response_type": "token"}, "unsupported_response_type", "code"),
        ({"scope": "calendar.write"}, "invalid_scope", "unknown scope"),
        ({"scope": "offline_access"}, "invalid_scope", "at least one"),
    ],
)
def test_invalid_requests_redirect_errors_with_state(
    calendar_flow: CalendarFlow, overrides: dict[str, str | None], error: str, description: str
) -> None:
    """RFC 7636 §4.4.1 (S256 only, plain refused), RFC 6749 §4.1.2.1: redirect error + state."""
    params, _ = calendar_flow.authorization_params(**overrides)
    answer = redirect_params(calendar_flow.get("/authorize", params))
    assert answer["error"] == error
    assert description in answer["error_description"]
    assert answer["state"] == params["state"]
    assert answer["iss"] == "http://calendar.test"
    assert "code" not in answer


def test_unsigned_user_is_sent_to_sign_in_and_back(calendar_flow: CalendarFlow) -> None:
    """Sign-in convention: /authorize sends a stranger to /login with a relative next."""
    params, _ = calendar_flow.authorization_params()
    reply = calendar_flow.get("/authorize", params)
    assert reply.status == 302
    location = urlsplit(reply.location)
    assert location.path == "/login"
    assert dict(parse_qsl(location.query))["next"].startswith("/authorize?")


def test_wrong_password_is_refused(calendar_flow: CalendarFlow) -> None:
    """Sign-in: a wrong password is a 401 page and leaves the browser signed out."""
    page = calendar_flow.get("/login")
    form = {**hidden_inputs(page.text), "username": "alice", "password": "bob-calendar-pw"}
    reply = calendar_flow.post("/login", form)
    assert reply.status == 401
    assert "wrong password" in reply.text
    params, _ = calendar_flow.authorization_params()
    assert urlsplit(calendar_flow.get("/authorize", params).location).path == "/login"


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"],
)
def test_next_must_be_a_relative_path(calendar_flow: CalendarFlow, next_path: str) -> None:
    """Sign-in convention (RFC 6749 §10.15 open redirector): next is a relative path or ignored."""
    reply = calendar_flow.sign_in("alice", next_path)
    assert reply.status == 302
    assert reply.location == "/"


def test_login_without_csrf_token_is_rejected(calendar_flow: CalendarFlow) -> None:
    """CSRF: a sign-in POST without the hidden csrf_token is a 400 and signs nobody in."""
    reply = calendar_flow.post("/login", {"username": "alice", "password": "alice-calendar-pw"})
    assert reply.status == 400
    params, _ = calendar_flow.authorization_params()
    assert urlsplit(calendar_flow.get("/authorize", params).location).path == "/login"


def test_consent_without_csrf_token_issues_no_code(
    calendar_flow: CalendarFlow, calendar_app: Flask
) -> None:
    """CSRF: an approval POST without csrf_token is a 400, no redirect, no code stored."""
    params, _ = calendar_flow.authorization_params()
    page = calendar_flow.consent_page(params)
    fields = {k: v for k, v in hidden_inputs(page.text).items() if k != "csrf_token"}
    reply = calendar_flow.post("/consent", {**fields, "decision": "approve"})
    assert reply.status == 400
    assert "Location" not in reply.headers
    assert codes_in_db(calendar_app) == 0


def test_consent_page_shows_client_and_scopes(calendar_flow: CalendarFlow) -> None:
    """Consent: the page names the client and each requested scope, and cannot be framed."""
    params, _ = calendar_flow.authorization_params(scope="calendar.freebusy calendar.read")
    page = calendar_flow.consent_page(params)
    assert CLIENT_ID in page.text
    assert "calendar.freebusy" in page.text and "calendar.read" in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "<script" not in page.text


def test_deny_redirects_access_denied(calendar_flow: CalendarFlow, calendar_app: Flask) -> None:
    """RFC 6749 §4.1.2.1: the owner denies, the client gets access_denied and state, no code."""
    params, _ = calendar_flow.authorization_params()
    answer = redirect_params(calendar_flow.authorize(params, decision="deny"))
    assert answer["error"] == "access_denied"
    assert answer["state"] == params["state"]
    assert codes_in_db(calendar_app) == 0


def test_consent_is_answered_once(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §4.1.2: one authorization request yields at most one code."""
    params, _ = calendar_flow.authorization_params()
    page = calendar_flow.consent_page(params)
    form = {**hidden_inputs(page.text), "decision": "approve"}
    assert "code" in redirect_params(calendar_flow.post("/consent", form))
    again = calendar_flow.post("/consent", form)
    assert again.status == 400 and "Location" not in again.headers


def test_invalid_decision_changes_nothing(calendar_flow: CalendarFlow, calendar_app: Flask) -> None:
    """Consent convention: decision is approve or deny; anything else is a 400 page."""
    params, _ = calendar_flow.authorization_params()
    page = calendar_flow.consent_page(params)
    reply = calendar_flow.post("/consent", {**hidden_inputs(page.text), "decision": "maybe"})
    assert reply.status == 400 and "Location" not in reply.headers
    assert codes_in_db(calendar_app) == 0
