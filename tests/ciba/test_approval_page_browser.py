"""The approval page (the CIBA authentication device, CIBA Core §1 and §8) in a real browser.

Headless Chromium from Debian, driven by Playwright, against the authserver on a
loopback port. A person signs in through /login, watches a request arrive over
server-sent events without reloading, reads the trade rendered for people (RFC 9396
§2, DESIGN "CIBA with rich authorization requests"), compares the binding message
(CIBA Core §7.1) and approves with their password or denies; the agent's poll then
gets the tokens or `access_denied` (CIBA Core §11). The page must fit a phone and
show hostile text as text. Screenshots land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from authserver.admin import CIBA
from tests.support.apps import reset_database
from tests.support.chromium import chromium_browser
from tests.support.factories import DEFAULT_PASSWORD, make_user
from tests.support.live import LiveServer
from tests.support.sse import live_approval_server

from .conftest import TRADE, make_ciba_client, register_broker

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 5000
SUMMARY = "buy 10 NET at no more than 120.00 USD"
FIELDS = [
    ("Action", "buy"),
    ("Symbol", "NET"),
    ("Shares (at most)", "10"),
    ("Price limit", "120.00"),
    ("Currency", "USD"),
]
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    yield from chromium_browser()


@pytest.fixture(scope="module")
def server(migrated_database: str) -> Iterator[LiveServer]:
    with live_approval_server(migrated_database, approval_stream_poll_interval=0.05) as running:
        yield running


@pytest.fixture
def live(server: LiveServer) -> LiveServer:
    reset_database(server.app)
    register_broker(server.app)
    make_user(server.app, "alice")
    return server


@pytest.fixture
def agent(live: LiveServer) -> Any:
    return make_ciba_client(live.app)


class Watched:
    """A page plus what it did that it must not: dialogs, CSP violations, script errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.problems: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        # Failed loads are judged by their response below (the browser's favicon probe is fine).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a dialog fired: {self.dialogs}"
        assert self.problems == [], self.problems


@pytest.fixture
def context_options() -> dict[str, Any]:
    return {"viewport": {"width": 1024, "height": 800}}


@pytest.fixture
def watched(chromium: Any, context_options: dict[str, Any]) -> Iterator[Watched]:
    context = chromium.new_context(**context_options)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield Watched(page)
    context.close()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"approval-page-{name}.png"), full_page=True)


def sign_in(live: LiveServer, watched: Watched) -> Any:
    """Through the login page, as a person: /approvals sends them to /login and back."""
    page = watched.page
    page.goto(f"{live.url}/approvals")
    assert "/login" in page.url
    page.get_by_label("Username or email").fill("alice")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.url}/approvals")
    return page


def wait_live(page: Any) -> None:
    """The stream is open (the page says so) before anything is asked."""
    page.wait_for_selector("#live-state:not([hidden]):has-text('Live:')")


def bc_authorize(live: LiveServer, agent: Any, **params: str) -> dict[str, Any]:
    data = {
        "scope": "openid portfolio:read",
        "login_hint": "alice",
        "binding_message": "ORDER-7",
        "authorization_details": json.dumps([TRADE]),
        **params,
    }
    response = requests.post(
        f"{live.url}/bc-authorize", data=data, auth=agent.basic_auth, timeout=10
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def poll(live: LiveServer, agent: Any, auth_req_id: str) -> requests.Response:
    return requests.post(
        f"{live.url}/token",
        data={"grant_type": CIBA, "auth_req_id": auth_req_id},
        auth=agent.basic_auth,
        timeout=10,
    )


def visible_fields(card: Any) -> list[tuple[str, str]]:
    pairs = []
    for field in card.locator(".fields .field").all():
        label, value = field.locator("dt"), field.locator("dd")
        assert label.is_visible() and value.is_visible()
        pairs.append((label.inner_text().strip(), value.inner_text().strip()))
    return pairs


def test_live_arrival_then_approve(live, agent, watched):
    """CIBA §8: the request reaches the signed-in user's device live (SSE, no reload); the
    trade is readable (RFC 9396 §2 rendered for people); approving with the password lets
    the agent's poll (CIBA §11) redeem tokens carrying exactly the approved detail."""
    page = sign_in(live, watched)
    assert page.locator(".approval").count() == 0
    assert page.locator("#empty").is_visible()
    wait_live(page)
    page.evaluate("window.notReloaded = true")
    screenshot(page, "empty")

    body = bc_authorize(live, agent)
    card = page.wait_for_selector(".approval", timeout=WAIT_MS)
    assert card is not None
    assert page.evaluate("window.notReloaded") is True, "the card came by reloading the page"
    card = page.locator(".approval")
    assert card.locator(".agent-name").inner_text() == "Client agent"
    assert card.locator(".binding-message").inner_text() == "ORDER-7"
    assert card.locator(".summary").inner_text().lower() == SUMMARY.lower()
    assert card.locator(".summary").text_content() == SUMMARY
    assert visible_fields(card) == FIELDS
    access = card.locator(".facts .field", has_text="Access")
    assert "portfolio:read" in access.inner_text() and "Broker" in access.inner_text()
    assert re.fullmatch(r"in [45] min \d+ s", card.locator(".expires").inner_text())
    assert not page.locator("#empty").is_visible()
    assert page.title().startswith("(1) ")
    assert "New request from Client agent" in page.locator("#announcer").text_content()
    screenshot(page, "request-arrived")

    assert poll(live, agent, body["auth_req_id"]).json()["error"] == "authorization_pending"
    card.get_by_label("Your password").fill(DEFAULT_PASSWORD)
    with page.expect_navigation():
        card.get_by_role("button", name="Approve").click()
    notice = page.locator(".notice")
    assert notice.inner_text() == f"Approved: Client agent can go ahead ({SUMMARY})."
    assert page.locator(".approval").count() == 0
    screenshot(page, "approved")

    tokens = poll(live, agent, body["auth_req_id"])
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["authorization_details"] == [TRADE]
    watched.assert_clean()


def test_deny_without_password(live, agent, watched):
    """CIBA §11: denying needs no password, says so, and the agent's poll gets access_denied;
    an empty password on Approve is caught in the page and nothing is decided."""
    body = bc_authorize(live, agent, binding_message="SELL-CHECK 42")
    page = sign_in(live, watched)
    card = page.locator(".approval")
    assert card.count() == 1  # rendered by the server, no stream needed
    assert card.locator(".binding-message").inner_text() == "SELL-CHECK 42"

    card.get_by_role("button", name="Approve").click()
    assert card.locator(".hint").inner_text() == "Enter your password to approve."
    assert page.evaluate("document.activeElement.name") == "password"
    assert poll(live, agent, body["auth_req_id"]).json()["error"] == "authorization_pending"
    screenshot(page, "approve-needs-password")

    with page.expect_navigation():
        card.get_by_role("button", name="Deny").click()
    assert page.locator(".notice").inner_text() == (
        f"Denied: Client agent was told no ({SUMMARY})."
    )
    assert page.locator(".approval").count() == 0
    screenshot(page, "denied")
    denied = poll(live, agent, body["auth_req_id"])
    assert denied.status_code == 400 and denied.json()["error"] == "access_denied"
    watched.assert_clean()


@pytest.mark.parametrize(
    "context_options",
    [
        {
            "viewport": {"width": 375, "height": 812},
            "device_scale_factor": 2,
            "is_mobile": True,
            "has_touch": True,
        }
    ],
)
def test_phone_viewport_fits(live, agent, watched):
    """A phone-sized screen (375 px): the cards fit the width, no horizontal scrolling, and the
    decision buttons are large tap targets (at least 44 px high, WCAG 2.5.5)."""
    page = sign_in(live, watched)
    wait_live(page)
    bc_authorize(live, agent, binding_message="ORDER-7 for the NET position, check the amount")
    page.wait_for_selector(".approval")
    long_word = "X" * 128  # the longest binding message, with nowhere to break
    bc_authorize(live, agent, binding_message=long_word)
    page.wait_for_selector(f".binding-message:has-text('{long_word}')")
    assert page.locator(".approval").count() == 2
    page.wait_for_timeout(1700)  # let the arrival highlight finish before the screenshot
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    for box in [card.bounding_box() for card in page.locator(".approval").all()]:
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    for button in page.locator(".approval .decision button").all():
        box = button.bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] >= 100
    screenshot(page, "phone-375")
    watched.assert_clean()


def test_hostile_binding_message_is_text(live, agent, watched):
    """CIBA §7.1 binding_message is shown to the user: as text, escaped, both when the
    server renders the page and when the card arrives over the stream; no script runs."""
    bc_authorize(live, agent, binding_message=HOSTILE)
    page = sign_in(live, watched)
    wait_live(page)
    bc_authorize(live, agent, binding_message=HOSTILE + " 2")
    page.wait_for_selector(".approval >> nth=1")
    messages = page.locator(".binding-message").all_inner_texts()
    assert sorted(messages) == [HOSTILE, HOSTILE + " 2"]
    assert page.locator(".approval img").count() == 0
    page.wait_for_timeout(500)  # an onerror handler would have fired by now
    screenshot(page, "hostile-binding-message")
    watched.assert_clean()


@pytest.mark.parametrize("context_options", [{"java_script_enabled": False}])
def test_works_without_javascript(live, agent, watched):
    """Without JavaScript every pending request is still a plain HTML form (DESIGN
    "approvals"): approving with the password redirects to the notice, and the agent's
    poll then redeems its tokens (CIBA §11); the page says how to see new requests."""
    body = bc_authorize(live, agent)
    page = sign_in(live, watched)
    hint = page.locator("noscript p")
    assert hint.is_visible()
    assert hint.inner_text() == "New requests show up when you reload this page."
    assert not page.locator("#live-state").is_visible()
    card = page.locator(".approval")
    card.get_by_label("Your password").fill(DEFAULT_PASSWORD)
    with page.expect_navigation():
        card.get_by_role("button", name="Approve").click()
    assert page.locator(".notice").inner_text() == (
        f"Approved: Client agent can go ahead ({SUMMARY})."
    )
    screenshot(page, "approved-without-javascript")
    assert poll(live, agent, body["auth_req_id"]).status_code == 200
    watched.assert_clean()
