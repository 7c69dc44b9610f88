"""The tour's simulated person: a browser that signs in, consents, approves and connects.

Everything it does goes through the same pages a person uses: the authserver's
sign-in and consent pages, the approval page (CIBA's authentication device), and the
calendar provider's own sign-in and consent pages when connecting the account to the
token vault. It is labelled in every line it prints, so a learner never mistakes it
for the agent: the agent cannot approve anything itself.

Approvals go through plain HTTP forms by default; with `browser` set (a Chromium
executable), they are clicked in headless Chromium instead (`browser.py`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import requests

from demo_agent.sdk import mask

from .narrator import Narrator
from .pages import ApprovalCard, Form, approval_cards, forms

TIMEOUT = 10.0
MAX_HOPS = 20
# Query parameters that are credentials (the code in the redirect back to a client).
SECRET_QUERY = {"code", "code_verifier", "client_secret", "password"}


class TourError(RuntimeError):
    """The scenario did not go as the tour expected; the message says where."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _short(value: str, limit: int = 24) -> str:
    return value if len(value) <= limit else value[: limit - 8] + "..."


def shown_url(url: str) -> str:
    """A URL fit to print: credential parameters masked, long values shortened
    (the full request is in the agent's own line just above)."""
    parts = urlsplit(url)
    query = [
        f"{name}={mask(value) if name in SECRET_QUERY else _short(value)}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    path = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return f"{path}?{'&'.join(query)}" if query else path


def shown_form(form: list[tuple[str, str]]) -> str:
    masked = [
        f"{name}={mask(value) if name in ('password', 'csrf_token') else _short(value, 40)}"
        for name, value in form
    ]
    return "&".join(masked)


class SimulatedUser:
    """One person with an account at the authserver and one at the calendar provider."""

    def __init__(
        self,
        narrator: Narrator,
        issuer: str,
        account: Credentials,
        calendar_url: str,
        calendar_account: Credentials,
        browser: str | None = None,
    ) -> None:
        self.narrator = narrator
        self.issuer = issuer.rstrip("/")
        self.account = account
        self.label = f"simulated user {account.username}"
        self.browser = browser
        self.http = requests.Session()
        self._logins = {
            _origin(self.issuer): account,
            _origin(calendar_url): calendar_account,
        }

    def say(self, text: str) -> None:
        self.narrator.person(self.label, text)

    # -- following pages ---------------------------------------------------------------

    def _request(
        self, method: str, url: str, form: list[tuple[str, str]] | None = None
    ) -> requests.Response:
        response = self.http.request(method, url, data=form, allow_redirects=False, timeout=TIMEOUT)
        detail = ""
        if response.is_redirect:
            detail = f"redirect to {shown_url(urljoin(url, response.headers['Location']))}"
        self.narrator.page(self.label, method, shown_url(url), response.status_code, detail)
        if form:
            self.narrator.line(f"      form: {shown_form(form)}")
        return response

    def _owned(self, url: str) -> bool:
        """True for the servers whose pages this person fills in."""
        return _origin(url) in self._logins

    def walk(self, url: str, leave: Callable[[str], bool]) -> str:
        """Follow redirects and answer sign-in and consent pages until `leave(url)` holds
        for a redirect target (returned unvisited) or a page needs nothing (returned)."""
        response = self._request("GET", url)
        for _ in range(MAX_HOPS):
            if response.is_redirect:
                target = urljoin(response.url, response.headers["Location"])
                if leave(target):
                    return target
                response = self._request("GET", target)
                continue
            if response.status_code != 200:
                raise TourError(f"{shown_url(str(response.url))} answered {response.status_code}")
            form = self._form_to_answer(response.text)
            if form is None:
                return str(response.url)
            response = self._answer(response.url, form)
        raise TourError("too many pages in a row")

    def _form_to_answer(self, html: str) -> Form | None:
        for form in forms(html):
            if form.method == "post" and ("password" in form.names or "decision" in form.names):
                return form
        return None

    def _answer(self, page_url: str, form: Form) -> requests.Response:
        fields = list(form.fields.items())
        if "password" in form.names:
            login = self._logins[_origin(page_url)]
            self.say(f"types username {login.username!r} and password at {_origin(page_url)}")
            fields += [("username", login.username), ("password", login.password)]
        else:
            self.say(f"reads the consent page at {_origin(page_url)} and clicks Allow")
            fields.append(("decision", "approve"))
        return self._request("POST", urljoin(page_url, form.action), fields)

    # -- what the person does ----------------------------------------------------------

    def open_in_browser(self, url: str) -> bool:
        """The SDK's browser opener: sign in and consent, then land on the agent's
        loopback redirect (where the SDK's listener is waiting). Runs on its own thread,
        like a real browser beside the terminal."""

        def browse() -> None:
            try:
                target = self.walk(url, leave=lambda target: not self._owned(target))
                self.say("the browser returns to the agent's loopback address")
                self._request("GET", target)
            except Exception as error:  # noqa: BLE001 (reported; the SDK times out)
                # An HTTP library's message quotes the URL, code and all: name the failure only.
                reason = error if isinstance(error, TourError) else type(error).__name__
                self.say(f"could not finish signing in: {reason}")

        self.say("opens the sign-in link in her browser")
        threading.Thread(target=browse, daemon=True).start()
        return True

    def connect(self, connect_uri: str) -> None:
        """Open the vault's connect link: the provider's sign-in and consent, then back."""
        self.say("opens the connect link the agent printed")
        landed = self.walk(connect_uri, leave=lambda target: False)
        if not landed.startswith(self.issuer + "/account/connections"):
            raise TourError(f"connecting ended at {shown_url(landed)}, not the connections page")
        self.say("sees the calendar listed under connected accounts")

    def decide(self, binding_message: str, decision: str, timeout: float = 60.0) -> ApprovalCard:
        """Find the request showing `binding_message` on the approval page and decide it."""
        if self.browser:
            from .browser import decide_in_chromium

            return decide_in_chromium(self, binding_message, decision, timeout)
        card = self._wait_for_card(binding_message, timeout)
        if card.form is None:
            raise TourError("the approval card has no form")
        self.describe(card)
        fields = [*card.form.fields.items(), ("decision", decision)]
        if decision == "approve":
            fields.append(("password", self.account.password))
            self.say("enters her password and clicks Approve")
        else:
            self.say("clicks Deny")
        response = self._request("POST", urljoin(self.issuer + "/", card.form.action), fields)
        if response.status_code not in (200, 302, 303):
            raise TourError(f"the decision was refused ({response.status_code})")
        return card

    def describe(self, card: ApprovalCard) -> None:
        self.say(f"sees a request on the approval page: {'; '.join(card.summaries)}")
        self.say(f"the page shows the code {card.binding_message!r}, the same as the agent's")

    def _wait_for_card(self, binding_message: str, timeout: float) -> ApprovalCard:
        self.say(f"opens {self.issuer}/approvals")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.http.get(self.issuer + "/approvals", timeout=TIMEOUT)
            if urlsplit(response.url).path == "/login":
                self.walk(self.issuer + "/approvals", leave=lambda target: False)
                continue
            for card in approval_cards(response.text):
                if card.binding_message == binding_message:
                    self.narrator.page(self.label, "GET", self.issuer + "/approvals", 200)
                    return card
            time.sleep(0.3)
        raise TourError(f"no request showing {binding_message} reached the approval page")
