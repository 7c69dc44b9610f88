"""Browser-facing pages: framing, CSP, caching and escaping of everything reflected.

RFC 6749 §10.13 (clickjacking: the authorization server must prevent framing),
OWASP's guidance on CSP, RFC 6749 §5.1 (token responses are not cached), and
RFC 9700 §4.16 (clickjacking) / §4.11 (open redirection) for the consent form.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import Pkce, code_params, csrf_token
from tests.support.oauth import tokens_for
from tests.support.responses import assert_html_page

XSS = "<script>alert(1)</script>"
ATTRIBUTE_BREAKOUT = '"><script>alert(2)</script>'
POST_LOGOUT = "https://rp.example.com/logged-out"


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


@pytest.fixture
def rp(app):
    return make_client(app, "web-rp", post_logout_redirect_uris=[POST_LOGOUT])


def csp_directives(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_page_headers(response) -> None:
    """The headers every HTML page carries."""
    assert response.mimetype == "text/html"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers["Cache-Control"]
    csp = csp_directives(response)
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert csp["default-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    # With no 'unsafe-inline' an inline script or handler would not run: there must be none.
    page = response.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline <script> on the page"
    assert not re.search(r"\son[a-z]+\s*=", page), "inline event handler on the page"


def _login_page(app, alice, rp, browser):
    return browser.client.get("/login")


def _login_error_page(app, alice, rp, browser):
    page = browser.client.get("/login").get_data(as_text=True)
    form = {"username": "alice", "password": "wrong password", "csrf_token": csrf_token(page)}
    return browser.client.post("/login", data=form)


def _consent_page(app, alice, rp, browser):
    browser.login("alice", DEFAULT_PASSWORD)
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new())
    return browser.client.get("/consent?" + urlencode(params))


def _error_page(app, alice, rp, browser):
    return browser.client.get("/authorize?client_id=nobody&response_type=code")


def _not_found_page(app, alice, rp, browser):
    return browser.client.get("/no-such-page")


def _logout_confirm_page(app, alice, rp, browser):
    browser.login("alice", DEFAULT_PASSWORD)
    return browser.client.get("/logout")


def _logged_out_page(app, alice, rp, browser):
    browser.login("alice", DEFAULT_PASSWORD)
    page = browser.client.get("/logout").get_data(as_text=True)
    return browser.client.post("/logout/confirm", data={"csrf_token": csrf_token(page)})


def _home_anonymous(app, alice, rp, browser):
    return browser.client.get("/")


def _home_signed_in(app, alice, rp, browser):
    browser.login("alice", DEFAULT_PASSWORD)
    return browser.client.get("/")


PAGES = {
    "login": (_login_page, 200),
    "login_error": (_login_error_page, 401),
    "consent": (_consent_page, 200),
    "error": (_error_page, 400),
    "not_found": (_not_found_page, 404),
    "logout_confirm": (_logout_confirm_page, 200),
    "logged_out": (_logged_out_page, 200),
    "home_anonymous": (_home_anonymous, 200),
    "home_signed_in": (_home_signed_in, 200),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_sends_security_headers(app, alice, rp, browser, name):
    """RFC 6749 §10.13 / RFC 9700 §4.16: pages cannot be framed (X-Frame-Options DENY and CSP
    frame-ancestors 'none'); the CSP allows no inline script; nosniff; no-store, so a shared
    machine's back button or cache never shows a consent or sign-in page again."""
    fetch, status = PAGES[name]
    response = fetch(app, alice, rp, browser)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert_page_headers(response)


def test_token_responses_are_not_cached(app, client, browser, alice, rp):
    """RFC 6749 §5.1 and §5.2: token responses, success or error, carry Cache-Control
    no-store; so do introspection and userinfo answers (they carry personal data)."""
    browser.login("alice", DEFAULT_PASSWORD)
    tokens = tokens_for(browser, client, rp)
    refused = client.post(
        "/token", data={"grant_type": "authorization_code", "code": "nope"}, auth=rp.basic_auth
    )
    introspection = client.post(
        "/introspect", data={"token": tokens["access_token"]}, auth=rp.basic_auth
    )
    userinfo = client.get(
        "/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}
    )
    refused_userinfo = client.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 400
    assert introspection.status_code == userinfo.status_code == 200
    for response in (refused, introspection, userinfo, refused_userinfo):
        assert "no-store" in response.headers["Cache-Control"], response.headers
        assert response.mimetype == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_token_success_is_not_cached(app, client, browser, alice):
    """RFC 6749 §5.1: "Cache-Control: no-store" and "Pragma: no-cache" on issued tokens."""
    rp = make_client(app, "cc-rp", grant_types=["client_credentials"], redirect_uris=[])
    response = client.post("/token", data={"grant_type": "client_credentials"}, auth=rp.basic_auth)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_username_is_escaped_on_login_error(app, alice, browser):
    """The username typed is reflected into the failed sign-in page: HTML-escaped, never
    markup (OWASP XSS prevention rule 1/2: element content and attribute values)."""
    page = browser.client.get("/login").get_data(as_text=True)
    username = ATTRIBUTE_BREAKOUT + XSS
    form = {"username": username, "password": "whatever1", "csrf_token": csrf_token(page)}
    response = browser.client.post("/login", data=form)
    body = assert_html_page(response, 401)
    assert XSS not in body and "<script>alert(2)" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&#34;&gt;&lt;script&gt;" in body or "&quot;&gt;&lt;script&gt;" in body


def test_client_name_is_escaped_on_consent(app, browser, alice):
    """A client registers its own display name: the consent page shows it as text, so a
    malicious client cannot script the page where the user grants access."""
    evil = make_client(app, "evil-rp", name=f"Evil {XSS} & {ATTRIBUTE_BREAKOUT}")
    browser.login("alice", DEFAULT_PASSWORD)
    params = code_params(evil.client_id, evil.redirect_uri, Pkce.new())
    response = browser.client.get("/consent?" + urlencode(params))
    body = assert_html_page(response, 200)
    assert_page_headers(response)
    assert XSS not in body and "<script>alert(2)" not in body
    assert "Evil &lt;script&gt;alert(1)&lt;/script&gt; &amp;" in body


def test_request_values_are_escaped_in_consent_form(app, browser, alice, rp):
    """Authorization request values are carried through the consent form as hidden fields:
    an attribute break-out in `nonce` stays inside the value attribute."""
    browser.login("alice", DEFAULT_PASSWORD)
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new(), nonce=ATTRIBUTE_BREAKOUT)
    response = browser.client.get("/consent?" + urlencode(params))
    body = assert_html_page(response, 200)
    assert ATTRIBUTE_BREAKOUT not in body
    assert 'name="nonce" value="&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in body


def test_error_description_is_escaped(app, browser, alice, rp):
    """RFC 6749 §4.1.2.1: an unregistered redirect_uri is reported on a page (never a
    redirect), and the page shows any reflected input escaped."""
    browser.login("alice", DEFAULT_PASSWORD)
    params = code_params(rp.client_id, "https://evil.example/cb?x=" + XSS, Pkce.new())
    response = browser.client.get("/authorize?" + urlencode(params))
    body = assert_html_page(response, 400)
    assert "Location" not in response.headers
    assert XSS not in body


def test_logout_parameters_are_escaped_on_confirmation(app, browser, alice, rp):
    """RP-Initiated Logout §2-3: logout parameters are carried through the confirmation
    form; reflected values stay escaped inside their value attributes."""
    browser.login("alice", DEFAULT_PASSWORD)
    query = urlencode({"state": ATTRIBUTE_BREAKOUT, "client_id": rp.client_id + XSS})
    response = browser.client.get("/logout?" + query)
    body = assert_html_page(response, 200)
    assert_page_headers(response)
    assert ATTRIBUTE_BREAKOUT not in body and XSS not in body
    assert 'name="state" value="&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in body


def test_logout_error_is_escaped(app, browser, alice, rp):
    """A refused logout (unregistered post_logout_redirect_uri) is an escaped error page."""
    browser.login("alice", DEFAULT_PASSWORD)
    tokens = tokens_for(browser, app.test_client(), rp)
    query = urlencode(
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://x/" + XSS}
    )
    response = browser.client.get("/logout?" + query)
    body = assert_html_page(response, 400)
    assert_page_headers(response)
    assert XSS not in body and "Location" not in response.headers


def test_consent_form_action_allows_only_the_client_origin(app, browser, alice, rp):
    """RFC 9700 §4.11: the consent form's POST is answered by a redirect to the client;
    browsers apply CSP form-action to that redirect, so exactly the client's redirect origin
    is allowed beside 'self' (and nothing else, so injected forms cannot post elsewhere)."""
    browser.login("alice", DEFAULT_PASSWORD)
    params = code_params(rp.client_id, rp.redirect_uri, Pkce.new())
    response = browser.client.get("/consent?" + urlencode(params))
    assert response.status_code == 200
    assert csp_directives(response)["form-action"] == ["'self'", "https://rp.example.com"]


def test_consent_form_action_follows_a_loopback_port(app, browser, alice):
    """RFC 8252 §7.3: a native client's loopback redirect may use any port; form-action
    allows exactly the origin of the redirect URI in this request."""
    native = make_client(
        app, "native", auth_method="none", redirect_uris=["http://127.0.0.1/callback"]
    )
    browser.login("alice", DEFAULT_PASSWORD)
    params = code_params(native.client_id, "http://127.0.0.1:51234/callback", Pkce.new())
    response = browser.client.get("/consent?" + urlencode(params))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert csp_directives(response)["form-action"] == ["'self'", "http://127.0.0.1:51234"]


@pytest.mark.parametrize("name", ["login", "logout_confirm", "home_signed_in", "error"])
def test_other_pages_post_only_to_self(app, alice, rp, browser, name):
    """Pages other than consent never widen form-action beyond 'self'."""
    fetch, _ = PAGES[name]
    response = fetch(app, alice, rp, browser)
    assert csp_directives(response)["form-action"] == ["'self'"]


def test_form_action_never_takes_a_source_that_would_start_a_directive(app):
    """A redirect URI whose host part holds `;` would end the form-action source list and
    start a directive of its own (here `sandbox`): such an origin is left out, a plain one
    is kept. (Registration refuses such URIs too; this is the page's own guard.)"""
    from flask import Response

    from authserver.web.security import _security_headers, allow_form_redirect_to

    with app.test_request_context("/consent"):
        allow_form_redirect_to("https://a.example;sandbox/cb")
        allow_form_redirect_to("https://ok.example/cb")
        response = _security_headers(Response("page", mimetype="text/html"))
    assert csp_directives(response)["form-action"] == ["'self'", "https://ok.example"]
    assert "sandbox" not in response.headers["Content-Security-Policy"]


def test_consent_names_the_app_a_private_use_scheme_opens(app, browser, alice):
    """RFC 8252 §7.1: a native app's private-use scheme has no host to show; the consent
    page says which scheme's app the person goes back to (not an empty name)."""
    native = make_client(
        app, "native-app", auth_method="none", redirect_uris=["com.example.app:/callback"]
    )
    browser.login("alice", DEFAULT_PASSWORD)
    params = code_params(native.client_id, "com.example.app:/callback", Pkce.new())
    page = browser.client.get("/consent?" + urlencode(params)).get_data(as_text=True)
    assert "<strong>the app registered for com.example.app: links</strong>" in page
