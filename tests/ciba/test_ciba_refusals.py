"""CIBA refusals: what the server must turn down, and that a refusal changes nothing.

CIBA Core 1.0 §7.1-§7.2 and §13 at /bc-authorize, §10.1 and §11 at the token
endpoint, and the decisions on the approval page (DESIGN "CIBA with rich
authorization requests": decided once, only by its user, only before expiry, with
re-authentication, CSRF-protected, binding message escaped).
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import update

from authserver.admin import CIBA, AdminError, create_client
from authserver.credentials import digest
from authserver.db import transaction
from authserver.models import BackchannelRequest, Grant, Notification, User
from authserver.tokens import AccessTokenSpec
from tests.support.db import audit_events, count, issued_counts, rows
from tests.support.factories import (
    DEFAULT_PASSWORD,
    make_client,
    make_public_client,
    make_user,
)
from tests.support.flows import Browser, csrf_token
from tests.support.oauth import token_error

from .conftest import approval_form, bc_authorize, make_ciba_client, poll


def written(app) -> dict[str, int]:
    """Everything a CIBA request or decision could leave behind."""
    return {
        **issued_counts(app),
        "ciba_requests": count(app, BackchannelRequest),
        "notifications": count(app, Notification),
    }


def refused(app, response, error: str, status: int = 400, before=None) -> dict:
    body = token_error(response, error, status)
    assert body.get("error_description"), body
    if before is not None:
        assert written(app) == before
    return body


def request_row(app, auth_req_id: str) -> BackchannelRequest:
    [row] = rows(app, BackchannelRequest, BackchannelRequest.auth_req_hash == digest(auth_req_id))
    return row


def set_columns(app, auth_req_id: str, **values) -> None:
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        result = session.execute(
            update(BackchannelRequest)
            .where(BackchannelRequest.auth_req_hash == digest(auth_req_id))
            .values(**values)
        )
        assert result.rowcount == 1


# --- §7.1-§7.2, §13: the backchannel authentication request ---------------------------


def test_openid_scope_is_required(app, client, alice, agent):
    """§7.1: "scope REQUIRED ... MUST contain the openid scope value"; §13 invalid_scope."""
    before = written(app)
    response = bc_authorize(client, agent, scope="portfolio:read")
    body = refused(app, response, "invalid_scope", before=before)
    assert "openid" in body["error_description"]


def test_scope_not_allowed_to_the_client(app, client, alice, agent):
    """§13 invalid_scope: a scope the client is not registered for is refused, not dropped."""
    before = written(app)
    refused(app, bc_authorize(client, agent, scope="openid email"), "invalid_scope", before=before)


@pytest.mark.parametrize(
    "hints",
    [
        {"login_hint": None},
        {"login_hint": ""},
        {"login_hint": "alice", "id_token_hint": "x.y.z"},
        {"login_hint": "alice", "login_hint_token": "x.y.z"},
    ],
    ids=["none", "empty", "login_and_id_token", "login_and_login_hint_token"],
)
def test_exactly_one_hint(app, client, alice, agent, hints):
    """§7.1: "It is REQUIRED that Clients provide one (and only one) of the hints"."""
    before = written(app)
    body = refused(app, bc_authorize(client, agent, **hints), "invalid_request", before=before)
    assert "exactly one" in body["error_description"]


@pytest.mark.parametrize("hint", ["mallory", "mallory@example.com", "x" * 9000])
def test_unknown_user(app, client, alice, agent, hint):
    """§13 unknown_user_id: the hint identifies no user (or is absurdly long)."""
    before = written(app)
    response = bc_authorize(client, agent, login_hint=hint)
    expected = "invalid_request" if len(hint) > 8192 else "unknown_user_id"
    refused(app, response, expected, before=before)


def test_login_hint_by_email_and_case(app, client, alice, agent):
    """§7.1 login_hint: the username or email address identifies the user (the contrast case)."""
    response = bc_authorize(client, agent, login_hint="ALICE@example.com")
    assert response.status_code == 200, response.json
    assert request_row(app, response.json["auth_req_id"]).user_id == alice.id


def test_disabled_user_is_unknown(app, client, alice, agent):
    """§13 unknown_user_id: a disabled account cannot be asked (and is not revealed)."""
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(update(User).where(User.id == alice.id).values(disabled=True))
    before = written(app)
    refused(app, bc_authorize(client, agent), "unknown_user_id", before=before)


def _id_token(app, audience: str, subject: str) -> str:
    runtime = app.extensions["authserver"]
    return runtime.minter.id_token(
        client_id=audience,
        alg="RS256",
        subject=subject,
        auth_time=None,
        nonce=None,
        access_token=None,
    )


def test_id_token_hint_of_another_client(app, client, alice, agent):
    """§7.1 id_token_hint: "an ID Token previously issued to the Client"; not another's."""
    before = written(app)
    hint = _id_token(app, "someone-else", alice.id)
    response = bc_authorize(client, agent, login_hint=None, id_token_hint=hint)
    body = refused(app, response, "invalid_request", before=before)
    assert "this client" in body["error_description"]
    own = bc_authorize(
        client, agent, login_hint=None, id_token_hint=_id_token(app, "agent", alice.id)
    )
    assert own.status_code == 200, own.json
    assert request_row(app, own.json["auth_req_id"]).user_id == alice.id


def test_id_token_hint_not_from_this_server(app, client, alice, agent):
    """§7.1: an id_token_hint that this OP did not sign is refused."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {"iss": "http://127.0.0.1:8000", "sub": alice.id, "aud": "agent", "iat": 1, "exp": 2},
        key,
        algorithm="RS256",
        headers={"kid": "not-ours"},
    )
    before = written(app)
    response = bc_authorize(client, agent, login_hint=None, id_token_hint=forged)
    refused(app, response, "invalid_request", before=before)


def _access_token(app, subject: str, ttl: int) -> str:
    runtime = app.extensions["authserver"]
    spec = AccessTokenSpec(
        client_id="agent",
        subject=subject,
        audience=runtime.settings.issuer,
        scope="openid",
        ttl=ttl,
    )
    with transaction(runtime.session_factory) as session:
        return runtime.minter.access_token(session, spec).token


def test_expired_login_hint_token(app, client, alice, agent):
    """§13 expired_login_hint_token: the login_hint_token has expired."""
    expired = _access_token(app, alice.id, ttl=-120)
    before = written(app)
    response = bc_authorize(client, agent, login_hint=None, login_hint_token=expired)
    refused(app, response, "expired_login_hint_token", before=before)
    live = _access_token(app, alice.id, ttl=60)
    accepted = bc_authorize(client, agent, login_hint=None, login_hint_token=live)
    assert accepted.status_code == 200, accepted.json


@pytest.mark.parametrize(
    "message",
    [
        "x" * 129,
        "",
        "   ",
        "line\nbreak",
        "bell\x07",
        "del\x7f",
        "c1\x85",
        "ORDER-\u202e24",  # right-to-left override: the user would read another code
        "line\u2028separator",
        "zero\u200bwidth",
    ],
    ids=[
        "129_chars",
        "empty",
        "blank",
        "newline",
        "bell",
        "delete",
        "c1_control",
        "bidi_override",
        "line_separator",
        "zero_width_space",
    ],
)
def test_invalid_binding_message(app, client, alice, agent, message):
    """§7.1 binding_message "SHOULD be relatively short and use a limited set of plain text
    characters"; §13 invalid_binding_message. Nothing that can disguise the code."""
    before = written(app)
    refused(
        app,
        bc_authorize(client, agent, binding_message=message),
        "invalid_binding_message",
        before=before,
    )


def test_binding_message_of_128_characters_is_accepted(app, client, alice, agent):
    """The limit is inclusive (DESIGN: up to 128 characters, any script)."""
    message = "Kauf-ÄÖÜ-株式-" + "x" * 116
    assert len(message) == 128
    response = bc_authorize(client, agent, binding_message=message)
    assert response.status_code == 200, response.json
    assert request_row(app, response.json["auth_req_id"]).binding_message == message


@pytest.mark.parametrize(
    "value", ["0", "-5", "1.5", "abc", "601", "", "²", "١٠", "9" * 5000, " 60"]
)
def test_invalid_requested_expiry(app, client, alice, agent, value):
    """§7.1 requested_expiry: "A positive integer"; at most ciba_max_expiry (600 here)."""
    before = written(app)
    body = refused(
        app,
        bc_authorize(client, agent, requested_expiry=value),
        "invalid_request",
        before=before,
    )
    assert "requested_expiry" in body["error_description"]


def test_requested_expiry_is_honoured(app, client, alice, agent):
    """§7.3 expires_in follows requested_expiry when acceptable."""
    response = bc_authorize(client, agent, requested_expiry="600")
    assert response.json["expires_in"] == 600
    row = request_row(app, response.json["auth_req_id"])
    assert row.expires_at - row.created_at == 600


@pytest.mark.parametrize("mode", ["ping", "push"])
def test_notification_token_required_for_ping_and_push(app, client, alice, broker, mode):
    """§7.1 client_notification_token: "REQUIRED if the Client is registered to use Ping or
    Push modes"."""
    agent = make_ciba_client(app, f"agent-{mode}", mode, "http://127.0.0.1:9/cb")
    before = written(app)
    body = refused(app, bc_authorize(client, agent), "invalid_request", before=before)
    assert "client_notification_token" in body["error_description"]


@pytest.mark.parametrize(
    "token",
    ["has space", 'quote"d', "caf\u00e9", "new\nline", "=leading", "t" * 1025, "trailing\n"],
    ids=["space", "quote", "non_ascii", "newline", "leading_padding", "too_long", "trailing_lf"],
)
def test_notification_token_must_be_a_bearer_token(app, client, alice, broker, token):
    """§7.1: the token is sent back as `Authorization: Bearer` (RFC 6750 §2.1 b64token)."""
    agent = make_ciba_client(app, "agent-ping", "ping", "http://127.0.0.1:9/cb")
    before = written(app)
    response = bc_authorize(client, agent, client_notification_token=token)
    refused(app, response, "invalid_request", before=before)


@pytest.mark.parametrize("name", ["request", "request_uri", "user_code"])
def test_unsupported_parameters(app, client, alice, agent, name):
    """§7.1.1 signed requests and §7.1 user_code are not supported (discovery says so);
    they are refused rather than ignored."""
    before = written(app)
    response = bc_authorize(client, agent, **{name: "x.y.z"})
    body = refused(app, response, "invalid_request", before=before)
    assert ("user_code" if name == "user_code" else "Signed") in body["error_description"]


@pytest.mark.parametrize("auth", [None, ("agent", "wrong-secret"), ("nobody", "secret")])
def test_unauthenticated_client(app, client, alice, agent, auth):
    """§7.1: the client authenticates (RFC 6749 §2.3); §13 invalid_client with 401."""
    data = {"scope": "openid", "login_hint": "alice"}
    before = written(app)
    response = client.post("/bc-authorize", data=data, auth=auth)
    refused(app, response, "invalid_client", status=401, before=before)


def test_client_without_the_ciba_grant(app, client, alice, broker):
    """§13 unauthorized_client: "The Client is not authorized to use this authentication
    flow"."""
    rp = make_client(app, "web-rp")
    before = written(app)
    refused(app, bc_authorize(client, rp), "unauthorized_client", before=before)


def test_public_clients_cannot_use_ciba(app, client, alice, broker):
    """§4: CIBA clients are confidential: registration refuses a public one, and a public
    client presenting only its id is invalid_client."""
    runtime = app.extensions["authserver"]
    with pytest.raises(AdminError, match="public clients"):
        with transaction(runtime.session_factory) as session:
            create_client(session, name="Public agent", auth_method="none", grant_types=[CIBA])
    make_public_client(app, "native")
    before = written(app)
    response = client.post(
        "/bc-authorize", data={"scope": "openid", "login_hint": "alice", "client_id": "native"}
    )
    refused(app, response, "invalid_client", status=401, before=before)


# --- §10.1, §11: the token endpoint ---------------------------------------------------


def test_polling_faster_than_the_interval_is_slow_down(app, client, alice, agent):
    """§11 slow_down: "the interval MUST be increased by at least 5 seconds for this and
    all subsequent requests": a poll after the old interval but within the new one is
    slow_down again; one after the new interval is authorization_pending."""
    started = bc_authorize(client, agent).json
    auth_req_id = started["auth_req_id"]
    assert started["interval"] == 5
    assert poll(client, agent, auth_req_id).json["error"] == "authorization_pending"
    before = written(app)
    body = refused(app, poll(client, agent, auth_req_id), "slow_down", before=before)
    assert "10 seconds" in body["error_description"]
    assert request_row(app, auth_req_id).interval == 10
    set_columns(app, auth_req_id, last_polled_at=time.time() - 6)  # > 5 s, < 10 s ago
    refused(app, poll(client, agent, auth_req_id), "slow_down", before=before)
    assert request_row(app, auth_req_id).interval == 15
    set_columns(app, auth_req_id, last_polled_at=time.time() - 16)
    refused(app, poll(client, agent, auth_req_id), "authorization_pending", before=before)


def test_expired_request(app, client, browser, alice, agent):
    """§11 expired_token: "The auth_req_id has expired"; it cannot be approved either."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    page = browser.client.get("/approvals").get_data(as_text=True)
    request_id = request_row(app, auth_req_id).id
    assert request_id in page
    set_columns(app, auth_req_id, expires_at=int(time.time()) - 1)
    before = written(app)
    refused(app, poll(client, agent, auth_req_id), "expired_token", before=before)
    form = {"csrf_token": csrf_token(page), "decision": "approve", "password": DEFAULT_PASSWORD}
    late = browser.client.post(f"/approvals/{request_id}", data=form)
    assert late.status_code == 409
    assert request_row(app, auth_req_id).status == "pending"
    assert written(app) == before
    assert request_id not in browser.client.get("/approvals").get_data(as_text=True)


def test_approved_but_expired_before_redeemed(app, client, browser, alice, agent):
    """§11 expired_token also when the user approved but the client came too late."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    approval_form(browser)
    set_columns(app, auth_req_id, expires_at=int(time.time()) - 1)
    before = written(app)
    refused(app, poll(client, agent, auth_req_id), "expired_token", before=before)


def test_user_disabled_after_approving(app, client, browser, alice, agent):
    """§11 with RFC 6749 §5.2: a user disabled between approval and redemption gets no
    tokens; invalid_grant, as a refresh for a disabled user (tests/oidc), nothing issued."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    approval_form(browser)
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(update(User).where(User.id == alice.id).values(disabled=True))
    before = written(app)
    body = refused(app, poll(client, agent, auth_req_id), "invalid_grant", before=before)
    assert "access_token" not in body
    assert request_row(app, auth_req_id).status == "approved"


def test_auth_req_id_of_another_client(app, client, browser, alice, agent):
    """§11 invalid_grant: the auth_req_id was issued to another client; the owner can still
    redeem it afterwards (the attempt changed nothing)."""
    other = make_ciba_client(app, "other-agent")
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    approval_form(browser)
    before = written(app)
    refused(app, poll(client, other, auth_req_id), "invalid_grant", before=before)
    assert poll(client, agent, auth_req_id).status_code == 200


@pytest.mark.parametrize("value", ["unknown", "x" * 600, "A" * 43])
def test_unknown_auth_req_id(app, client, alice, agent, value):
    """§11 invalid_grant: "The auth_req_id is invalid" (too long is invalid_request)."""
    before = written(app)
    expected = "invalid_request" if len(value) > 512 else "invalid_grant"
    refused(app, poll(client, agent, value), expected, before=before)


def test_redeemed_twice(app, client, browser, alice, agent):
    """Consumable (STYLE): a second redemption is invalid_grant and mints nothing."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    approval_form(browser)
    assert poll(client, agent, auth_req_id).status_code == 200
    before = written(app)
    refused(app, poll(client, agent, auth_req_id), "invalid_grant", before=before)


def test_push_client_cannot_poll(app, client, browser, alice, broker):
    """§10.3: push clients receive tokens at their endpoint; the token endpoint refuses
    them with unauthorized_client (the grant is not theirs to poll)."""
    agent = make_ciba_client(app, "agent-push", "push", "http://127.0.0.1:9/cb")
    auth_req_id = bc_authorize(client, agent, client_notification_token="n-123456").json[
        "auth_req_id"
    ]
    before = written(app)
    refused(app, poll(client, agent, auth_req_id), "unauthorized_client", before=before)
    assert request_row(app, auth_req_id).last_polled_at is None


def test_missing_auth_req_id(app, client, alice, agent):
    """§10.1: auth_req_id is REQUIRED; RFC 6749 §5.2 invalid_request."""
    before = written(app)
    response = client.post("/token", auth=agent.basic_auth, data={"grant_type": CIBA})
    refused(app, response, "invalid_request", before=before)


def test_client_without_ciba_grant_cannot_redeem(app, client, alice, agent):
    """RFC 6749 §5.2 unauthorized_client at the token endpoint too."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    rp = make_client(app, "web-rp")
    before = written(app)
    response = client.post(
        "/token", auth=rp.basic_auth, data={"grant_type": CIBA, "auth_req_id": auth_req_id}
    )
    refused(app, response, "unauthorized_client", before=before)


# --- decisions on the approval page ---------------------------------------------------


def _page_and_id(browser: Browser, app, auth_req_id: str) -> tuple[str, str]:
    page = browser.client.get("/approvals").get_data(as_text=True)
    return page, request_row(app, auth_req_id).id


def test_decision_by_another_user(app, client, alice, agent):
    """Only the user the request names may decide it: another user gets a 404 page, never
    sees the request, and the request stays pending for its user."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    make_user(app, "bob")
    bobs_own = bc_authorize(client, agent, login_hint="bob").json["auth_req_id"]
    bob = Browser(app.test_client())
    bob.login("bob", DEFAULT_PASSWORD)
    page, request_id = _page_and_id(bob, app, auth_req_id)
    assert request_id not in page and request_row(app, bobs_own).id in page
    before = written(app)
    for decision in ("approve", "deny"):
        form = {"csrf_token": csrf_token(page), "decision": decision, "password": DEFAULT_PASSWORD}
        response = bob.client.post(f"/approvals/{request_id}", data=form)
        assert response.status_code == 404
        assert response.mimetype == "text/html"
    assert written(app) == before
    assert request_row(app, auth_req_id).status == "pending"
    outcomes = [e.outcome for e in audit_events(app, "ciba.decided")]
    assert outcomes == ["refused", "refused"]


def test_decided_only_once(app, client, browser, alice, agent):
    """A request is decided once: a second approval or a later denial changes nothing."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    page, request_id = _page_and_id(browser, app, auth_req_id)
    first = browser.client.post(
        f"/approvals/{request_id}",
        data={"csrf_token": csrf_token(page), "decision": "approve", "password": DEFAULT_PASSWORD},
    )
    assert first.status_code == 302
    decided = request_row(app, auth_req_id)
    before = written(app)
    for decision in ("approve", "deny"):
        again = browser.client.post(
            f"/approvals/{request_id}",
            data={
                "csrf_token": csrf_token(page),
                "decision": decision,
                "password": DEFAULT_PASSWORD,
            },
        )
        assert again.status_code == 409
    assert written(app) == before
    after = request_row(app, auth_req_id)
    assert (after.status, after.decided_at, after.grant_id) == (
        "approved",
        decided.decided_at,
        decided.grant_id,
    )
    assert count(app, Grant) == 1
    assert poll(client, agent, auth_req_id).status_code == 200


def test_wrong_password_decides_nothing_and_is_throttled(app, client, browser, alice, agent):
    """Approval re-authenticates: a wrong password is 401 and decides nothing; after 10
    failures even the right password is 429 with Retry-After (DESIGN sign-in limits)."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    page, request_id = _page_and_id(browser, app, auth_req_id)
    before = written(app)
    for attempt in range(10):
        response = browser.client.post(
            f"/approvals/{request_id}",
            data={
                "csrf_token": csrf_token(page),
                "decision": "approve",
                "password": f"no{attempt}",
            },
        )
        assert response.status_code == 401, attempt
        assert "Nothing was approved" in response.get_data(as_text=True)
    blocked = browser.client.post(
        f"/approvals/{request_id}",
        data={"csrf_token": csrf_token(page), "decision": "approve", "password": DEFAULT_PASSWORD},
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert written(app) == before
    assert request_row(app, auth_req_id).status == "pending"
    outcomes = [e.outcome for e in audit_events(app, "ciba.decided")]
    assert outcomes == ["reauth_failed"] * 11


def test_empty_password_does_not_approve(app, client, browser, alice, agent):
    """Approving without the password field is a failed re-authentication."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    page, request_id = _page_and_id(browser, app, auth_req_id)
    before = written(app)
    response = browser.client.post(
        f"/approvals/{request_id}", data={"csrf_token": csrf_token(page), "decision": "approve"}
    )
    assert response.status_code == 401
    assert written(app) == before


@pytest.mark.parametrize("decision", ["approve", "deny"])
@pytest.mark.parametrize("csrf", [None, "forged-token"])
def test_decision_without_csrf(app, client, browser, alice, agent, decision, csrf):
    """The decision form is CSRF-protected: without the field (or with a wrong one) it is a
    400 page and nothing is decided."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    _, request_id = _page_and_id(browser, app, auth_req_id)
    form = {"decision": decision, "password": DEFAULT_PASSWORD}
    if csrf:
        form["csrf_token"] = csrf
    before = written(app)
    response = browser.client.post(f"/approvals/{request_id}", data=form)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert written(app) == before
    assert request_row(app, auth_req_id).status == "pending"


def test_unknown_decision_value(app, client, browser, alice, agent):
    """`decision` is approve or deny; anything else decides nothing."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    page, request_id = _page_and_id(browser, app, auth_req_id)
    before = written(app)
    response = browser.client.post(
        f"/approvals/{request_id}",
        data={"csrf_token": csrf_token(page), "decision": "yes", "password": DEFAULT_PASSWORD},
    )
    assert response.status_code == 400
    assert written(app) == before


def test_signed_out_decision_goes_to_sign_in(app, client, alice, agent):
    """Deciding needs a signed-in user: the form post without a session decides nothing."""
    auth_req_id = bc_authorize(client, agent).json["auth_req_id"]
    request_id = request_row(app, auth_req_id).id
    token = csrf_token(client.get("/login").get_data(as_text=True))
    before = written(app)
    response = client.post(
        f"/approvals/{request_id}", data={"decision": "deny", "csrf_token": token}
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert written(app) == before
    assert request_row(app, auth_req_id).status == "pending"


MARKUP = '"><img src=x onerror=alert(1)>&amp;'


def test_binding_message_markup_is_escaped(app, client, browser, alice, agent):
    """The binding message is the user's check; it is shown as text on the page and in the
    live card (SSE), never as markup."""
    auth_req_id = bc_authorize(client, agent, binding_message=MARKUP).json["auth_req_id"]
    browser.login("alice", DEFAULT_PASSWORD)
    page = browser.client.get("/approvals").get_data(as_text=True)
    escaped = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;"
    assert escaped in page
    assert "<img" not in page
    request_id = request_row(app, auth_req_id).id
    card = _first_stream_card(browser, request_id)
    assert escaped in card and "<img" not in card


def _first_stream_card(browser: Browser, request_id: str) -> str:
    response = browser.client.get("/approvals/stream?since=0", buffered=False)
    assert response.mimetype == "text/event-stream"
    text = ""
    try:
        for chunk in response.response:
            text += chunk.decode() if isinstance(chunk, bytes) else chunk
            for block in text.split("\n\n"):
                lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                if lines.get("event") == "request":
                    data = json.loads(lines["data"])
                    if data["id"] == request_id:
                        return str(data["html"])
    finally:
        response.close()
    raise AssertionError("no request event on the stream")


@pytest.mark.parametrize("since", ["²", "١٢٣", "12x", "9" * 40])
def test_stream_cursor_must_be_ascii_digits(app, browser, alice, since):
    """A malformed `since` (or Last-Event-ID) is ignored, never a 500: the stream starts now."""
    browser.login("alice", DEFAULT_PASSWORD)
    for headers, query in (({}, f"?since={since}"), ({"Last-Event-ID": since}, "")):
        response = browser.client.get(f"/approvals/stream{query}", headers=headers, buffered=False)
        try:
            assert response.status_code == 200
            assert response.mimetype == "text/event-stream"
            assert next(iter(response.response)).startswith(b"retry:")
        finally:
            response.close()
