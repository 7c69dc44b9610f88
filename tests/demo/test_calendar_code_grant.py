"""Mock calendar provider: the authorization code grant at the token endpoint.

RFC 6749 §4.1.3 (single-use code bound to client and redirect URI, 60 s life,
reuse revokes what it issued) and RFC 7636 §4.5-§4.6 (PKCE verifier).
"""

from __future__ import annotations

from flask import Flask

from tests.demo.conftest import (
    OTHER_CLIENT_ID,
    OTHER_SECRET,
    REDIRECT_URI,
    CalendarFlow,
    basic,
)


def test_wrong_verifier_is_invalid_grant(calendar_flow: CalendarFlow) -> None:
    """RFC 7636 §4.6: a verifier that does not hash to the challenge gets invalid_grant."""
    code, _ = calendar_flow.code()
    reply = calendar_flow.exchange(code, "x" * 64)
    assert reply.status == 400
    assert reply.json() == {
        "error": "invalid_grant",
        "error_description": "code_verifier does not match the code_challenge",
    }


def test_missing_verifier_is_invalid_request(calendar_flow: CalendarFlow) -> None:
    """RFC 7636 §4.5: the token request must carry code_verifier."""
    code, _ = calendar_flow.code()
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    reply = calendar_flow.post("/token", form, headers=basic())
    assert reply.status == 400 and reply.json()["error"] == "invalid_request"


def test_code_is_bound_to_redirect_uri(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §4.1.3: redirect_uri must be identical to the authorization request's."""
    code, verifier = calendar_flow.code()
    reply = calendar_flow.exchange(code, verifier, redirect_uri=REDIRECT_URI + "x")
    assert reply.json()["error"] == "invalid_grant"
    assert calendar_flow.exchange(code, verifier).status == 200


def test_code_is_bound_to_client(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §4.1.3: a code issued to one client is invalid_grant for another."""
    code, verifier = calendar_flow.code()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
    }
    reply = calendar_flow.post("/token", form, headers=basic(OTHER_CLIENT_ID, OTHER_SECRET))
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant"


def test_code_expires_after_60_seconds(calendar_flow: CalendarFlow, calendar_app: Flask) -> None:
    """RFC 6749 §4.1.2: codes are short-lived (60 s here)."""
    code, verifier = calendar_flow.code()
    state = calendar_app.extensions["calendar"]
    real = state.clock
    state.clock = lambda: real() + 61
    reply = calendar_flow.exchange(code, verifier)
    assert reply.json() == {
        "error": "invalid_grant",
        "error_description": "the authorization code has expired",
    }


def test_reused_code_revokes_what_it_issued(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §4.1.2, §10.5: a second redemption fails and revokes the first one's tokens."""
    code, verifier = calendar_flow.code()
    first = calendar_flow.exchange(code, verifier).json()
    second = calendar_flow.exchange(code, verifier)
    assert second.status == 400 and second.json()["error"] == "invalid_grant"
    refreshed = calendar_flow.refresh(first["refresh_token"])
    assert refreshed.json()["error"] == "invalid_grant"
    api = calendar_flow.api("/freebusy", first["access_token"], "2030-01-01", "2030-01-02")
    assert api.status == 401


def test_unknown_code_is_invalid_grant(calendar_flow: CalendarFlow) -> None:
    """RFC 6749 §5.2: an unknown code is invalid_grant."""
    reply = calendar_flow.exchange("not-a-code", "v" * 43)
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant"
