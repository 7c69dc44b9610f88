"""RFC 7591 dynamic client registration at `POST /register` (off unless enabled).

§3.1 a JSON client metadata document; §3.2.1 201 with the client id, the secret for a
confidential client, `no-store`; §3.2.2 `invalid_redirect_uri` / `invalid_client_metadata`
for what cannot be registered, and nothing is written. What anyone can register is
narrow (authorization code + refresh, consent always, no client credentials, token
exchange or CIBA), and the consent page says the client's name is unverified (§5).
Real HTTP on loopback for the flow, Authlib's own client to use what was registered.
"""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import func, select

from authserver.models import AuditEvent, Client
from tests.support.apps import build_test_app, reset_database
from tests.support.db import audit_events, rows
from tests.support.factories import (
    DEFAULT_PASSWORD,
    ClientInfo,
    make_client,
    make_resource,
    make_user,
)
from tests.support.flows import Browser, Pkce, code_params, query_of
from tests.support.live import LiveBrowser, live_server
from tests.support.oauth import tokens_for

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CIBA = "urn:openid:params:grant-type:ciba"
WEB = {
    "client_name": "Trip planner",
    "redirect_uris": ["https://trips.example.com/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid profile offline_access",
}


@pytest.fixture(scope="module")
def server(migrated_database):
    with live_server(
        migrated_database, registration_enabled=True, registration_rate_limit="1000/hour"
    ) as running:
        yield running


@pytest.fixture
def live(server):
    reset_database(server.app)
    return server


def _count(app, model) -> int:
    with app.extensions["authserver"].session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _assert_no_store(response) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_discovery_lists_the_registration_endpoint_it_serves(live):
    """RFC 8414 §2 `registration_endpoint`, on the issuer."""
    assert live.metadata()["registration_endpoint"] == f"{live.url}/register"


def test_a_registered_client_signs_a_person_in_with_authlib(live):
    """§3.2.1: 201, the client id and a secret shown once (stored as a SHA-256 digest), the
    metadata as registered; Authlib's client then runs code + PKCE and a refresh with
    them, and the audit log has the registration."""
    make_user(live.app, "alice")
    answer = requests.post(live.endpoint("registration_endpoint"), json=WEB, timeout=10)
    assert answer.status_code == 201, answer.text
    _assert_no_store(answer)
    body = answer.json()
    assert body["client_name"] == "Trip planner"
    assert body["redirect_uris"] == WEB["redirect_uris"]
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"  # §2 default
    assert body["client_secret_expires_at"] == 0 and body["client_id_issued_at"] > 0
    secret = body["client_secret"]
    assert len(secret) >= 43  # 256 bits, base64url
    [stored] = rows(live.app, Client, Client.client_id == body["client_id"])
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert stored.self_registered and not stored.skip_consent and not stored.may_delegate
    [event] = audit_events(live.app, "client.registered")
    assert (event.outcome, event.client_id) == ("success", body["client_id"])
    assert secret not in json.dumps(event.details)

    oauth = OAuth2Session(
        body["client_id"],
        secret,
        scope=WEB["scope"],
        redirect_uri=WEB["redirect_uris"][0],
        code_challenge_method="S256",
    )
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(
        live.endpoint("authorization_endpoint"), code_verifier=verifier
    )
    callback = LiveBrowser(live.url, "alice", DEFAULT_PASSWORD).authorize(url)
    assert query_of(callback)["state"] == state
    token = oauth.fetch_token(
        live.endpoint("token_endpoint"), authorization_response=callback, code_verifier=verifier
    )
    assert token["id_token"] and token["refresh_token"]
    refreshed = oauth.refresh_token(live.endpoint("token_endpoint"))
    assert refreshed["access_token"] != token["access_token"]


def test_a_public_client_gets_no_secret_and_still_needs_pkce(live):
    """§3.2.1: no `client_secret` for `none`; the client is public, so the authorization
    request without PKCE is refused (RFC 7636 §4.4.1, RFC 9700 §2.1.1)."""
    native = {
        "client_name": "Desk app",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
    }
    answer = requests.post(live.endpoint("registration_endpoint"), json=native, timeout=10)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert "client_secret" not in body and "client_secret_expires_at" not in body
    assert body["grant_types"] == ["authorization_code"]  # §2 default
    assert body["scope"] == "openid"  # §2: a default set when omitted
    make_user(live.app, "bob")
    browser = Browser(live.app.test_client())
    browser.login("bob", DEFAULT_PASSWORD)
    params = code_params(body["client_id"], "http://127.0.0.1:53111/callback", scope="openid")
    refused = browser.client.get("/authorize", query_string=params)
    # Refused, and shown rather than redirected: the client registered itself (below).
    assert refused.status_code == 400
    [link] = re.findall(r'href="(http://127\.0\.0\.1:53111/callback\?[^"]*)"', refused.text)
    assert query_of(html.unescape(link))["error"] == "invalid_request"


def test_what_a_registration_cannot_ask_for_is_ignored(live):
    """Metadata outside RFC 7591 §2 (operator settings, a chosen id or secret) is not
    honoured: §2 says to ignore what the server does not take from clients."""
    make_resource(live.app)
    asked = {
        **WEB,
        "client_id": "chosen-id",
        "client_secret": "chosen-secret-0123456789",
        "skip_consent": True,
        "may_delegate": True,
        "allowed_audiences": ["https://api.example.com"],
        "logo_uri": "https://trips.example.com/logo.png",
    }
    answer = requests.post(live.endpoint("registration_endpoint"), json=asked, timeout=10)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["client_id"] != "chosen-id" and body["client_secret"] != asked["client_secret"]
    assert "logo_uri" not in body and "skip_consent" not in body
    [stored] = rows(live.app, Client, Client.client_id == body["client_id"])
    assert not stored.skip_consent and not stored.may_delegate
    assert stored.allowed_audiences == []


def test_the_consent_page_says_a_self_registered_client_is_unverified(live):
    """RFC 7591 §5: a name anyone could have chosen (here an operator client's) is marked
    as unverified, with the host the person will be sent back to; an operator-registered
    client's page has no such warning."""
    make_user(live.app, "alice")
    operator = make_client(live.app, "trips", name="Trip planner")
    answer = requests.post(live.endpoint("registration_endpoint"), json=WEB, timeout=10)
    copycat = answer.json()["client_id"]
    browser = Browser(live.app.test_client())
    browser.login("alice", DEFAULT_PASSWORD)
    pages = {}
    for client_id, redirect_uri in (
        (copycat, WEB["redirect_uris"][0]),
        (operator.client_id, operator.redirect_uri),
    ):
        params = code_params(client_id, redirect_uri, Pkce.new())
        consent = browser.client.get("/authorize", query_string=params)
        assert consent.status_code == 302, consent.get_data(as_text=True)
        pages[client_id] = browser.client.get(consent.headers["Location"]).get_data(as_text=True)
    assert "registered itself" in pages[copycat]
    assert "<strong>trips.example.com</strong>" in pages[copycat]
    assert "registered itself" not in pages[operator.client_id]


LOOPBACK = "http://127.0.0.1/cb"


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"redirect_uris": ["http://trips.example.com/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://trips.example.com/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["/callback"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["myapp:/callback"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://[::1/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://.../cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://-trips.example.com/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://[v1.evil]/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://trips.example.com:0/cb"]}, "invalid_redirect_uri"),
        ({"client_name": "no redirect"}, "invalid_redirect_uri"),
        ({"redirect_uris": [LOOPBACK], "grant_types": ["client_credentials"]}, None),
        ({"redirect_uris": [LOOPBACK], "grant_types": [TOKEN_EXCHANGE]}, None),
        ({"redirect_uris": [LOOPBACK], "grant_types": ["authorization_code", CIBA]}, None),
        ({"redirect_uris": [LOOPBACK], "grant_types": ["refresh_token"]}, None),
        ({"redirect_uris": [LOOPBACK], "grant_types": ["implicit"]}, None),
        ({"redirect_uris": [LOOPBACK], "response_types": ["token"]}, None),
        ({"redirect_uris": [LOOPBACK], "response_types": ["code", "id_token"]}, None),
        ({"redirect_uris": [LOOPBACK], "token_endpoint_auth_method": "private_key_jwt"}, None),
        ({"redirect_uris": [LOOPBACK], "scope": "openid admin:everything"}, None),
        ({"redirect_uris": [LOOPBACK], "scope": 'openid "quoted"'}, None),
        ({"redirect_uris": [LOOPBACK], "id_token_signed_response_alg": "none"}, None),
        ({"redirect_uris": [LOOPBACK], "id_token_signed_response_alg": "HS256"}, None),
        ({"redirect_uris": [LOOPBACK], "client_name": "Bank\u202eelppa"}, None),
        ({"redirect_uris": [LOOPBACK], "client_name": "nul\u0000name"}, None),
        ({"redirect_uris": [LOOPBACK], "client_name": ""}, None),
        ({"redirect_uris": [LOOPBACK], "client_name": "   "}, None),
        ({"redirect_uris": [LOOPBACK], "client_name": "lone \ud800 surrogate"}, None),
        ({"redirect_uris": [LOOPBACK], "client_name": "private \ue000 use"}, None),
        ({"redirect_uris": [LOOPBACK], "client_name": "x" * 201}, None),
        ({"redirect_uris": [LOOPBACK], "client_uri": "javascript:alert(1)"}, None),
        ({"redirect_uris": [LOOPBACK], "contacts": "ops@example.com"}, None),
        ({"redirect_uris": [LOOPBACK], "jwks": []}, None),
        ({"redirect_uris": [LOOPBACK], "jwks": {"keys": [{}]}}, None),
        ({"redirect_uris": [LOOPBACK], "jwks": {"keys": "x"}}, None),
        ({"redirect_uris": [LOOPBACK], "require_pushed_authorization_requests": "yes"}, None),
        ({"redirect_uris": LOOPBACK}, "invalid_redirect_uri"),
        ({"redirect_uris": [LOOPBACK, LOOPBACK]}, "invalid_redirect_uri"),
        (
            {"redirect_uris": [f"https://a.example.com/{n}" for n in range(11)]},
            "invalid_redirect_uri",
        ),
        ({"redirect_uris": ["https://a.example.com/\u00e9"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://evil.example\\@127.0.0.1/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://trusted.example@evil.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://a.example;report-uri/cb"]}, "invalid_redirect_uri"),
        (
            {"redirect_uris": [LOOPBACK], "post_logout_redirect_uris": ["http://a.example/"]},
            "invalid_redirect_uri",
        ),
        ({"redirect_uris": [LOOPBACK], "grant_types": {"authorization_code": 1}}, None),
        ([LOOPBACK], None),
        ("redirect_uris", None),
    ],
)
def test_metadata_that_cannot_be_registered_is_refused_and_nothing_written(live, document, error):
    """RFC 7591 §3.2.2: invalid_redirect_uri for a redirect URI that breaks RFC 6749 §3.1.2
    or RFC 8252 (or none for the code grant, §2), invalid_client_metadata for any other
    value this server will not register; 400, `no-store`, no client row, one refused
    audit row; never a 5xx."""
    clients = _count(live.app, Client)
    answer = live.app.test_client().post("/register", json=document)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    _assert_no_store(answer)
    body = answer.get_json()
    assert body["error"] == (error or "invalid_client_metadata")
    assert body["error_description"] and '"' not in body["error_description"]
    assert _count(live.app, Client) == clients
    [event] = audit_events(live.app, "client.registered")
    assert event.outcome == "refused" and event.details == {"error": body["error"]}


@pytest.mark.parametrize(
    ("send", "error"),
    [
        ({"data": "redirect_uris=https://a.example.com/cb"}, "invalid_request"),
        ({"json": WEB, "query_string": {"scope": "openid"}}, "invalid_request"),
        ({"data": b"{not json", "content_type": "application/json"}, "invalid_client_metadata"),
        ({"data": b"null", "content_type": "application/json"}, "invalid_client_metadata"),
        ({"data": b"", "content_type": "application/json"}, "invalid_client_metadata"),
        ({"data": b"\xff\xfe{}", "content_type": "application/json"}, "invalid_client_metadata"),
        (
            {
                "data": b'{"redirect_uris": ["http://127.0.0.1/cb"], "scope": "openid",'
                b' "scope": "openid admin:everything"}',
                "content_type": "application/json",
            },
            "invalid_client_metadata",
        ),
        ({"data": b"[" * 10_000, "content_type": "application/json"}, "invalid_client_metadata"),
        ({"data": b"[" * 100_000, "content_type": "application/json"}, "invalid_request"),
        (
            {"json": {**WEB, "client_uri": "https://a.example.com/" + "x" * 17_000}},
            "invalid_request",
        ),
    ],
    ids=[
        "form",
        "query",
        "not_json",
        "null",
        "empty",
        "not_utf8",
        "repeated_key",
        "deep",
        "deep_and_large",
        "too_large",
    ],
)
def test_a_body_that_is_not_one_json_object_is_refused(live, send, error):
    """§3.1: the metadata is a JSON object in an application/json body; a repeated key is
    refused rather than resolved (parsers disagree on which value wins)."""
    clients = _count(live.app, Client)
    answer = live.app.test_client().post("/register", **send)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.get_json()["error"] == error
    assert _count(live.app, Client) == clients


def test_registration_is_off_unless_enabled(client, app):
    """DESIGN: /register exists only when AUTHSERVER_REGISTRATION_ENABLED is set."""
    answer = client.post("/register", json=WEB)
    assert answer.status_code == 404
    assert answer.get_json()["error"]
    assert _count(app, Client) == 0 and _count(app, AuditEvent) == 0


def test_registrations_are_limited_per_address(migrated_database):
    """Open registration must not let one address fill the database: past the limit, 429
    with Retry-After and no client; every attempt counts, refused ones too; an IPv6 address
    counts for its /64; a flood of throttled attempts is one audit row."""
    app = build_test_app(
        migrated_database, registration_enabled=True, registration_rate_limit="2/hour"
    )
    try:
        reset_database(app)
        http = app.test_client()
        assert http.post("/register", json={"client_name": "no redirect"}).status_code == 400
        assert http.post("/register", json=WEB).status_code == 201
        for _ in range(3):
            throttled = http.post("/register", json=WEB)
            assert throttled.status_code == 429
            assert 1 <= int(throttled.headers["Retry-After"]) <= 3600
            assert throttled.get_json()["error"] == "invalid_request"
        assert _count(app, Client) == 1
        outcomes = [event.outcome for event in audit_events(app, "client.registered")]
        assert outcomes == ["refused", "success", "throttled"]  # one row for the flood
        # Another address of the same IPv6 /64 shares the count; another /64 does not.
        same = {"REMOTE_ADDR": "2001:db8:1:2::7"}
        other = {"REMOTE_ADDR": "2001:db8:1:3::7"}
        assert http.post("/register", json=WEB, environ_base=same).status_code == 201
        assert http.post("/register", json=WEB, environ_base=same).status_code == 201
        neighbour = {"REMOTE_ADDR": "2001:db8:1:2:ffff::1"}
        assert http.post("/register", json=WEB, environ_base=neighbour).status_code == 429
        assert http.post("/register", json=WEB, environ_base=other).status_code == 201
    finally:
        reset_database(app)
        app.extensions["authserver"].engine.dispose()


def test_registrations_are_limited_across_addresses(migrated_database):
    """Per-address limits alone let someone with many addresses register without end (an
    IPv6 /48 holds 65,536 /64s): all addresses together have a limit too, with 429 and
    Retry-After past it and nothing written."""
    app = build_test_app(
        migrated_database,
        registration_enabled=True,
        registration_rate_limit="5/hour",
        registration_global_rate_limit="3/hour",
    )
    try:
        reset_database(app)
        http = app.test_client()
        for n in range(3):
            address = {"REMOTE_ADDR": f"2001:db8:{n}::1"}
            assert http.post("/register", json=WEB, environ_base=address).status_code == 201
        elsewhere = {"REMOTE_ADDR": "198.51.100.7"}
        throttled = http.post("/register", json=WEB, environ_base=elsewhere)
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= 3600
        assert _count(app, Client) == 3
    finally:
        reset_database(app)
        app.extensions["authserver"].engine.dispose()


def test_a_failed_request_is_shown_not_redirected_to_a_self_registered_client(live):
    """RFC 9700 §4.11.2: anyone can register a client whose redirect URI is a phishing page
    and send people a request that fails on purpose (here an unknown scope). For such a
    client the server does not redirect on its own: the person sees the error, and a link
    back that they may follow. An operator-registered client is redirected as before."""
    answer = requests.post(live.endpoint("registration_endpoint"), json=WEB, timeout=10)
    copycat = answer.json()["client_id"]
    operator = make_client(live.app, "trips")
    http = live.app.test_client()
    shown = http.get(
        "/authorize",
        query_string=code_params(copycat, WEB["redirect_uris"][0], Pkce.new(), scope="openid x"),
    )
    assert shown.status_code == 400 and "Location" not in shown.headers
    assert "registered itself" in shown.text and "Go back to\n      trips.example.com" in shown.text
    [link] = re.findall(r'href="(https://trips\.example\.com/callback\?[^"]*)"', shown.text)
    assert query_of(html.unescape(link))["error"] == "invalid_scope"
    redirected = http.get(
        "/authorize",
        query_string=code_params(operator.client_id, operator.redirect_uri, scope="openid x"),
    )
    assert redirected.status_code == 302
    assert query_of(redirected.headers["Location"])["error"] == "invalid_scope"


def test_logout_sends_people_to_a_self_registered_client_only_with_an_id_token(live):
    """OIDC RP-Initiated Logout §3: without an id_token_hint, post-logout redirection only
    to a target the server has other reasons to trust; a self-registered client's URI is
    anyone's, so /logout would be an open redirect. With an ID token for that client, it
    redirects."""
    document = {**WEB, "post_logout_redirect_uris": ["https://evil.example/landing"]}
    answer = requests.post(live.endpoint("registration_endpoint"), json=document, timeout=10)
    assert answer.status_code == 201, answer.text
    client_id = answer.json()["client_id"]
    refused = live.app.test_client().get(
        "/logout",
        query_string={
            "client_id": client_id,
            "post_logout_redirect_uri": "https://evil.example/landing",
        },
    )
    assert refused.status_code == 400 and "Location" not in refused.headers
    assert "id_token_hint" in refused.text

    make_user(live.app, "alice")
    browser = Browser(live.app.test_client())
    browser.login("alice", DEFAULT_PASSWORD)
    registered = ClientInfo(client_id, answer.json()["client_secret"], WEB["redirect_uris"][0])
    id_token = tokens_for(browser, live.app.test_client(), registered, scope="openid")["id_token"]
    hinted = browser.client.get(
        "/logout",
        query_string={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": "https://evil.example/landing",
        },
    )
    assert hinted.status_code == 302
    assert hinted.headers["Location"] == "https://evil.example/landing"


def test_a_client_may_register_to_push_every_request(live):
    """RFC 9126 §6: `require_pushed_authorization_requests` is client metadata; a client
    that sets it gets its requests refused unless pushed, as an operator's would."""
    document = {
        "redirect_uris": ["https://pushed.example.com/cb"],
        "require_pushed_authorization_requests": True,
    }
    answer = requests.post(live.endpoint("registration_endpoint"), json=document, timeout=10)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["require_pushed_authorization_requests"] is True
    with live.app.extensions["authserver"].session_factory() as session:
        client = session.get(Client, body["client_id"])
        assert client is not None and client.require_pushed_authorization_requests
