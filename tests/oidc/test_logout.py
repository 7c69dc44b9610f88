"""RP-Initiated Logout (OpenID Connect RP-Initiated Logout 1.0) at /logout.

§2: `id_token_hint`, `post_logout_redirect_uri` (must be registered), `state`,
`client_id`; §3: redirect to the post-logout URI with `state`; §4: an OP must
not redirect to an unregistered URI, and should ask the user to confirm when the
request may not come from the RP of the signed-in user (a cross-site link alone
must not sign anyone out).
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlencode

import jwt
import pytest
from sqlalchemy import select, update

from authserver.db import transaction
from authserver.housekeeping import purge
from authserver.models import BrowserSession, now
from authserver.web import account
from tests.support.db import audit_events, count
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import Browser, csrf_token, hidden_fields, query_of
from tests.support.oauth import tokens_for
from tests.support.responses import assert_html_page, signed_in_user

POST_LOGOUT = "https://rp.example.com/logged-out"


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp", post_logout_redirect_uris=[POST_LOGOUT])


@pytest.fixture
def signed_in(browser, alice):
    assert browser.login("alice", DEFAULT_PASSWORD).status_code == 302
    return browser


@pytest.fixture
def id_token(signed_in, app, rp):
    return tokens_for(signed_in, app.test_client(), rp)["id_token"]


def logout(browser, method="GET", **params):
    if method == "GET":
        return browser.client.get("/logout?" + urlencode(params))
    return browser.client.post("/logout", data=params)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_valid_hint_signs_out_and_redirects_with_state(app, signed_in, alice, rp, id_token, method):
    """§2-§3: an ID token of the signed-in user plus a registered post_logout_redirect_uri:
    the session ends at once and the browser goes to that URI with `state`."""
    response = logout(
        signed_in,
        method,
        id_token_hint=id_token,
        post_logout_redirect_uri=POST_LOGOUT,
        state="af0ifjsldkj",
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.split("?")[0] == POST_LOGOUT
    assert query_of(location) == {"state": "af0ifjsldkj"}
    assert signed_in_user(signed_in.client) is None
    assert audit_events(app, "logout")[-1].user_id == alice.id


def test_redirect_without_state_has_no_query(app, signed_in, rp, id_token):
    """§3: `state` is echoed only when the RP sent one."""
    response = logout(signed_in, id_token_hint=id_token, post_logout_redirect_uri=POST_LOGOUT)
    assert response.headers["Location"] == POST_LOGOUT
    assert signed_in_user(signed_in.client) is None


def test_client_id_with_hint_must_match(app, signed_in, rp, id_token):
    """§2: "When both client_id and id_token_hint are present, the OP MUST verify that the
    Client Identifier matches the one used when issuing the ID Token."""
    other = make_client(app, "other-rp", post_logout_redirect_uris=["https://other.example/out"])
    response = logout(
        signed_in,
        id_token_hint=id_token,
        client_id=other.client_id,
        post_logout_redirect_uri="https://other.example/out",
    )
    assert_html_page(response, 400)
    assert "Location" not in response.headers
    assert signed_in_user(signed_in.client) is not None


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/logged-out",
        POST_LOGOUT + "/extra",
        POST_LOGOUT + "?x=1",
        "https://rp.example.com/callback",  # a redirect_uri, not a post-logout URI
    ],
)
def test_unregistered_post_logout_uri_shows_error(app, signed_in, rp, id_token, uri):
    """§2 / §4: the post_logout_redirect_uri must exactly match one registered for the
    client; otherwise an error page, no redirect, and the user stays signed in."""
    response = logout(signed_in, id_token_hint=id_token, post_logout_redirect_uri=uri)
    page = assert_html_page(response, 400)
    assert "Location" not in response.headers
    assert "not registered" in page
    assert signed_in_user(signed_in.client) is not None


def test_post_logout_uri_needs_a_client(app, signed_in, rp):
    """§2: without a hint or client_id the URI cannot be checked against any registration."""
    response = logout(signed_in, post_logout_redirect_uri=POST_LOGOUT)
    assert_html_page(response, 400)
    assert "Location" not in response.headers
    assert signed_in_user(signed_in.client) is not None


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    return ".".join([head, body, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])


def _foreign(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode({**claims, "iss": "https://evil.example"}, "k" * 32, algorithm="HS256")


@pytest.mark.parametrize("kind", ["garbage", "tampered", "foreign", "alg_none", "access_token"])
def test_invalid_hint_shows_error(app, signed_in, rp, id_token, kind):
    """§2: the hint must be an ID token this OP issued (valid signature with one of our keys,
    our issuer); an access token (typ at+jwt) is not an ID token. Otherwise: an error page,
    no redirect, still signed in."""
    claims = jwt.decode(id_token, options={"verify_signature": False})
    hint = {
        "garbage": "not-a-jwt",
        "tampered": _tampered(id_token),
        "foreign": _foreign(id_token),
        "alg_none": jwt.encode(claims, None, algorithm="none"),
        "access_token": tokens_for(signed_in, app.test_client(), rp)["access_token"],
    }[kind]
    response = logout(signed_in, id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT)
    page = assert_html_page(response, 400)
    assert "Location" not in response.headers
    assert "not a valid ID token" in page
    assert signed_in_user(signed_in.client) is not None


def test_no_hint_asks_for_confirmation(app, signed_in, alice, rp):
    """§4: a logout request that may not come from the user's RP (no hint: any site can link
    here) shows a confirmation page; the GET alone signs nobody out."""
    response = logout(signed_in, post_logout_redirect_uri=POST_LOGOUT, client_id=rp.client_id)
    page = assert_html_page(response, 200)
    assert "Sign out?" in page
    assert signed_in_user(signed_in.client) == alice.id
    fields = dict(hidden_fields(page))
    assert fields["post_logout_redirect_uri"] == POST_LOGOUT
    assert fields["client_id"] == rp.client_id


def test_confirmation_requires_csrf(app, signed_in, alice, rp):
    """The confirmation POST is CSRF-protected: without the page's token (a cross-site form)
    nothing happens; with it the user is signed out and sent to the registered URI."""
    page = logout(signed_in, post_logout_redirect_uri=POST_LOGOUT, client_id=rp.client_id)
    fields = dict(hidden_fields(page.get_data(as_text=True)))
    forged = {k: v for k, v in fields.items() if k != "csrf_token"}
    refused = signed_in.client.post("/logout/confirm", data=forged)
    assert_html_page(refused, 400)
    assert signed_in_user(signed_in.client) == alice.id
    confirmed = signed_in.client.post("/logout/confirm", data={**fields, "state": "s1"})
    assert confirmed.status_code == 302
    assert confirmed.headers["Location"] == POST_LOGOUT + "?state=s1"
    assert signed_in_user(signed_in.client) is None


def test_confirmation_without_redirect_shows_signed_out_page(app, signed_in):
    """A plain sign-out (the home page button) ends on the signed-out page."""
    token = csrf_token(signed_in.client.get("/").get_data(as_text=True))
    response = signed_in.client.post("/logout/confirm", data={"csrf_token": token})
    assert "You are signed out" in assert_html_page(response, 200)
    assert signed_in_user(signed_in.client) is None


def id_token_of_an_ended_session(app, browser, rp, username):
    """An ID token from a sign-in of `username` that has since been signed out."""
    browser.login(username, DEFAULT_PASSWORD)
    token = tokens_for(browser, app.test_client(), rp)["id_token"]
    browser.client.post(
        "/logout/confirm", data={"csrf_token": csrf_token(browser.client.get("/").text)}
    )
    return token


def test_hint_for_another_user_asks_for_confirmation(app, browser, alice, rp):
    """§4: an ID token of a different user than the one signed in does not sign the current
    user out silently; the user is asked."""
    make_user(app, "bob")
    bobs_token = id_token_of_an_ended_session(app, browser, rp, "bob")
    browser.login("alice", DEFAULT_PASSWORD)
    response = logout(browser, id_token_hint=bobs_token, post_logout_redirect_uri=POST_LOGOUT)
    assert "Sign out?" in assert_html_page(response, 200)
    assert signed_in_user(browser.client) == alice.id


def test_hint_from_an_earlier_session_asks_for_confirmation(app, browser, alice, rp, monkeypatch):
    """§2: the OP MUST ask when the ID token "does not belong to the current OP session":
    alice's ID token from a sign-in she has since ended is a link anyone could have kept;
    it signs nobody out silently. Confirming still returns to the client."""
    with monkeypatch.context() as patch:
        patch.setattr(account, "now", lambda: int(time.time()) - 600)
        earlier = id_token_of_an_ended_session(app, browser, rp, "alice")
    browser.login("alice", DEFAULT_PASSWORD)
    response = logout(browser, id_token_hint=earlier, post_logout_redirect_uri=POST_LOGOUT)
    assert "Sign out?" in assert_html_page(response, 200)
    assert signed_in_user(browser.client) == alice.id
    current = tokens_for(browser, app.test_client(), rp)["id_token"]
    response = logout(browser, id_token_hint=current, post_logout_redirect_uri=POST_LOGOUT)
    assert response.status_code == 302 and response.headers["Location"] == POST_LOGOUT
    assert signed_in_user(browser.client) is None


def test_expired_id_token_is_still_a_valid_hint(
    app, signed_in, alice, rp, runtime, monkeypatch, id_token
):
    """§2: "The OP SHOULD accept ID Tokens when the RP identified by the ID Token's aud claim
    ... has a current session or had a recent session" - an expired ID token is still a hint
    (here one of this session's sign-in, issued two hours ago)."""
    import authserver.tokens

    past = int(time.time()) - 7200
    monkeypatch.setattr(authserver.tokens, "now", lambda: past)
    expired = runtime.minter.id_token(
        client_id=rp.client_id,
        alg="RS256",
        subject=alice.id,
        auth_time=jwt.decode(id_token, options={"verify_signature": False})["auth_time"],
        nonce=None,
        access_token=None,
    )
    monkeypatch.undo()
    assert jwt.decode(expired, options={"verify_signature": False})["exp"] < time.time() - 3600
    response = logout(signed_in, id_token_hint=expired, post_logout_redirect_uri=POST_LOGOUT)
    assert response.status_code == 302 and response.headers["Location"] == POST_LOGOUT
    assert signed_in_user(signed_in.client) is None


def test_signed_out_user_with_hint_is_redirected(app, browser, alice, rp):
    """§3: with nobody signed in there is nothing to end; a valid request still returns the
    browser to the registered URI."""
    browser.login("alice", DEFAULT_PASSWORD)
    token = tokens_for(browser, app.test_client(), rp)["id_token"]
    browser.client.post(
        "/logout/confirm", data={"csrf_token": csrf_token(browser.client.get("/").text)}
    )
    response = logout(browser, id_token_hint=token, post_logout_redirect_uri=POST_LOGOUT, state="x")
    assert response.status_code == 302
    assert response.headers["Location"] == POST_LOGOUT + "?state=x"


def test_overlong_state_is_refused(app, signed_in, rp, id_token):
    """A state is echoed into the Location header: an oversized one is refused (a page),
    rather than producing a response header proxies would reject."""
    response = logout(
        signed_in, id_token_hint=id_token, post_logout_redirect_uri=POST_LOGOUT, state="a" * 3000
    )
    assert_html_page(response, 400)
    assert signed_in_user(signed_in.client) is not None


COOKIE = "authserver_session"


def is_signed_in(app, cookie_value: str) -> bool:
    """What a second browser holding a copy of the cookie sees on the home page."""
    other = app.test_client()
    other.set_cookie(COOKIE, cookie_value)
    return "Signed in as" in other.get("/").get_data(as_text=True)


def copied_cookie(browser) -> str:
    cookie = browser.client.get_cookie(COOKIE)
    assert cookie is not None
    return str(cookie.value)


def browser_session_count(app) -> int:
    return count(app, BrowserSession)


def test_copy_of_the_session_cookie_is_dead_after_sign_out(app, signed_in, alice, rp, id_token):
    """The cookie is signed, not stored: a copy taken while signed in (shared computer,
    backup, malware) must not outlive the sign-out. The session row goes with it."""
    copy = copied_cookie(signed_in)
    assert is_signed_in(app, copy)
    sessions = browser_session_count(app)
    response = logout(signed_in, id_token_hint=id_token, post_logout_redirect_uri=POST_LOGOUT)
    assert response.status_code == 302
    assert not is_signed_in(app, copy)
    assert browser_session_count(app) == sessions - 1
    replayed = app.test_client()
    replayed.set_cookie(COOKIE, copy)
    again = replayed.get(
        "/authorize?"
        + urlencode(
            {
                "client_id": rp.client_id,
                "response_type": "code",
                "redirect_uri": rp.redirect_uri,
                "scope": "openid",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
            }
        )
    )
    assert again.status_code == 302 and again.headers["Location"].startswith("/login")


def test_signing_in_again_ends_the_previous_session(app, signed_in, alice):
    """A second sign-in in the same browser replaces its session: the old cookie's copy
    stops working and only one session row remains for that browser."""
    first = copied_cookie(signed_in)
    sessions = browser_session_count(app)
    assert signed_in.login("alice", DEFAULT_PASSWORD).status_code == 302
    second = copied_cookie(signed_in)
    assert browser_session_count(app) == sessions
    assert not is_signed_in(app, first)
    assert is_signed_in(app, second)


def test_expired_browser_session_signs_nobody_in(app, signed_in):
    copy = copied_cookie(signed_in)
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(update(BrowserSession).values(expires_at=now() - 1))
    assert not is_signed_in(app, copy)


def test_cookie_without_a_session_id_signs_nobody_in(app, client, alice):
    """A validly signed cookie naming a user but no live session (made before browser
    sessions existed, or built with a leaked SECRET_KEY alone) is not a sign-in."""
    with client.session_transaction() as session:
        session["_user_id"] = alice.id
        session["_fresh"] = True
    assert signed_in_user(client) == alice.id  # the cookie does say alice
    assert "Signed in as" not in client.get("/").get_data(as_text=True)
    with client.session_transaction() as session:
        session["sid"] = "guessed-" + "0" * 40
    assert "Signed in as" not in client.get("/").get_data(as_text=True)


def test_housekeeping_purges_expired_browser_sessions_only(app, signed_in):
    """`vault purge` (housekeeping) deletes session rows past their expiry, not live ones."""
    runtime = app.extensions["authserver"]
    other = app.test_client()
    assert Browser(other).login("alice", DEFAULT_PASSWORD).status_code == 302
    expired = copied_cookie(signed_in)
    expired_hash = hashlib.sha256(session_id(signed_in).encode()).hexdigest()
    with transaction(runtime.session_factory) as session:
        rows = session.scalars(select(BrowserSession)).all()
        assert len(rows) == 2
        session.execute(
            update(BrowserSession)
            .where(BrowserSession.id_hash == expired_hash)
            .values(expires_at=now() - 1)
        )
    report = purge(runtime, unused_days=365)
    assert report["browser_sessions"] == 1
    assert browser_session_count(app) == 1
    assert not is_signed_in(app, expired)
    assert is_signed_in(app, copied_cookie(Browser(other)))


def session_id(browser) -> str:
    with browser.client.session_transaction() as session:
        return str(session["sid"])
