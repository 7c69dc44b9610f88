"""Forms whose answer redirects to a client, in a real browser (headless Chromium).

Every HTML page sends `form-action 'self'` (a form injected into a page could otherwise
post what it collects anywhere). Chromium holds every redirect that follows a form's
submission to that directive, so a form whose answer ends at a client must list the
client: otherwise the browser stops on our page, and the code (RFC 6749 §4.1.2) or the
return after sign-out (RP-Initiated Logout §3) never reaches the client. These are the
forms whose answer leaves the origin: sign-in when consent is already given, the sign-out
confirmation, and consent for a native app's private-use scheme (RFC 8252 §7.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.support.apps import reset_database
from tests.support.chromium import chromium_browser
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import Pkce, code_params
from tests.support.live import LiveServer, live_server

pytestmark = pytest.mark.browser

CLIENT_ORIGIN = "http://127.0.0.1:9"  # nothing listens: the browser's requests are answered below
CALLBACK = f"{CLIENT_ORIGIN}/callback"
SIGNED_OUT = f"{CLIENT_ORIGIN}/signed-out"
NATIVE_CALLBACK = "com.example.app:/callback"
WAIT_MS = 5000


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    yield from chromium_browser()


@pytest.fixture(scope="module")
def server(migrated_database: str) -> Iterator[LiveServer]:
    with live_server(migrated_database) as running:
        yield running


@pytest.fixture
def live(server: LiveServer) -> LiveServer:
    reset_database(server.app)
    make_user(server.app, "alice")
    return server


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile; the client's origin answers with a blank page, and every
    console message (a Content Security Policy refusal among them) is kept."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(message.text))
    page.route(f"{CLIENT_ORIGIN}/**", lambda route: route.fulfill(status=200, body="client"))
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Any) -> None:
    page.fill("#username", "alice")
    page.fill("#password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")


def csp_refusals(page: Any) -> list[str]:
    return [text for text in page.console_messages if "Content Security Policy" in text]


def test_sign_in_returns_to_a_client_that_needs_no_consent(live, page):
    """The sign-in form's POST redirects to /authorize, which answers with the code at once
    (a first-party client, or consent given before): the browser must reach the client."""
    make_client(live.app, "first-party", redirect_uris=[CALLBACK], skip_consent=True)
    params = code_params("first-party", CALLBACK, Pkce.new())
    page.goto(f"{live.url}/authorize?{urlencode(params)}")
    assert urlsplit(page.url).path == "/login"
    sign_in(page)
    page.wait_for_url(f"{CALLBACK}?**")
    answer = parse_qs(urlsplit(page.url).query)
    assert answer["state"] == [params["state"]] and answer["iss"] == [live.url]
    assert answer["code"][0]
    assert csp_refusals(page) == []


def test_a_failed_attempt_then_sign_in_still_returns_to_the_client(live, page):
    """The page re-rendered after a wrong password carries the same allowance."""
    make_client(live.app, "first-party", redirect_uris=[CALLBACK], skip_consent=True)
    params = code_params("first-party", CALLBACK, Pkce.new())
    page.goto(f"{live.url}/authorize?{urlencode(params)}")
    page.fill("#username", "alice")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Incorrect")
    sign_in(page)
    page.wait_for_url(f"{CALLBACK}?**")
    assert parse_qs(urlsplit(page.url).query)["code"][0]


def test_sign_in_page_allows_only_the_checked_client(live, page):
    """The allowance is the redirect URI /authorize validated for that very request: the
    sign-in page opened directly, or for another request, lists no client."""
    make_client(live.app, "first-party", redirect_uris=[CALLBACK], skip_consent=True)
    params = code_params("first-party", CALLBACK, Pkce.new())
    checked = page.goto(f"{live.url}/authorize?{urlencode(params)}")
    assert CLIENT_ORIGIN in checked.headers["content-security-policy"]
    other = {**params, "state": "another-request"}
    direct = page.goto(f"{live.url}/login?{urlencode({'next': '/authorize?' + urlencode(other)})}")
    assert CLIENT_ORIGIN not in direct.headers["content-security-policy"]
    plain = page.goto(f"{live.url}/login")
    assert "form-action 'self';" in plain.headers["content-security-policy"] + ";"


def test_sign_out_confirmation_returns_to_the_client(live, page):
    """RP-Initiated Logout §3: after the person confirms, the OP redirects to the registered
    post_logout_redirect_uri with `state`."""
    make_client(
        live.app, "first-party", redirect_uris=[CALLBACK], post_logout_redirect_uris=[SIGNED_OUT]
    )
    page.goto(f"{live.url}/login")
    sign_in(page)
    page.wait_for_url(f"{live.url}/")
    query = {"client_id": "first-party", "post_logout_redirect_uri": SIGNED_OUT, "state": "s1"}
    page.goto(f"{live.url}/logout?{urlencode(query)}")
    page.click("button[type=submit]")
    page.wait_for_url(f"{SIGNED_OUT}?state=s1")
    assert csp_refusals(page) == []


def test_consent_for_a_native_app_returns_to_its_private_use_scheme(live, page):
    """RFC 8252 §7.1: the code goes back through the app's own scheme. Chromium has no
    handler for it here, so it reports that it could not open the app: the redirect was
    allowed, and no Content Security Policy refusal stopped it first."""
    make_client(live.app, "native-app", auth_method="none", redirect_uris=[NATIVE_CALLBACK])
    page.goto(f"{live.url}/login")
    sign_in(page)
    params = code_params("native-app", NATIVE_CALLBACK, Pkce.new())
    consent = page.goto(f"{live.url}/authorize?{urlencode(params)}")
    assert "form-action 'self' com.example.app:" in consent.headers["content-security-policy"]
    page.click("button[value=approve]")
    page.wait_for_timeout(1000)
    assert csp_refusals(page) == []
