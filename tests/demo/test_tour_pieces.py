"""The tour's own pieces: what it prints must never carry a credential, and the simulated
person must read the approval page the way a person does (by the code shown)."""

from __future__ import annotations

import time

import pytest
import requests

from demo_agent.sdk import Redactor
from demo_agent.sdk.masking import fingerprint
from demo_agent.tour.narrator import Narrator
from demo_agent.tour.pages import approval_cards, forms
from demo_agent.tour.user import Credentials, SimulatedUser, TourError, shown_form, shown_url

CARD = """
<article class="approval" id="req-abc-1">
  <h2><span class="agent-name">Demo Agent</span></h2>
  <div class="binding"><p class="binding-message" aria-labelledby="x">NET-1234</p></div>
  <div class="approval-detail"><p class="summary">buy 10 NET at no more than 120.00 USD</p></div>
  <form method="post" action="/approvals/abc-1" class="decide-form">
    <input type="hidden" name="csrf_token" value="csrf-value">
    <input name="password" type="password">
    <button type="submit" name="decision" value="approve">Approve</button>
  </form>
</article>
<article class="approval" id="req-abc-2">
  <p class="binding-message">&lt;b&gt;NET-9999&lt;/b&gt;</p>
  <form method="post" action="/approvals/abc-2">
    <input type="hidden" name="csrf_token" value="c2">
  </form>
</article>
"""


def test_cards_are_read_with_their_code_summary_and_form():
    first, second = approval_cards(CARD)
    assert (first.request_id, first.binding_message) == ("abc-1", "NET-1234")
    assert first.summaries == ["buy 10 NET at no more than 120.00 USD"]
    assert first.form is not None and first.form.action == "/approvals/abc-1"
    assert first.form.fields == {"csrf_token": "csrf-value"}
    assert {"password", "decision"} <= first.form.names
    # Escaped markup is text: the code a person would read, not a tag.
    assert second.binding_message == "<b>NET-9999</b>"


def test_forms_outside_cards_are_found():
    page = '<form method="post" action="/login"><input type="hidden" name="next" value="/x">'
    page += '<input name="username"><input name="password" type="password"></form>'
    (login,) = forms(page)
    assert login.method == "post" and {"username", "password"} <= login.names


def test_printed_urls_and_forms_mask_codes_and_passwords():
    code = "SplxlOBeZQQYbYS6WxSbIA-very-secret-code"
    url = shown_url(f"http://127.0.0.1:8765/callback?code={code}&state=abc&iss=http://x")
    assert code not in url and f"sha256:{fingerprint(code)}" in url
    assert "state=abc" in url
    form = shown_form([("csrf_token", "csrf-secret-value"), ("password", "hunter2-pass")])
    assert "hunter2-pass" not in form and "csrf-secret-value" not in form


def test_the_narrator_scrubs_known_secrets_and_any_jwt():
    printed: list[str] = []
    redactor = Redactor()
    redactor.add("refresh-token-value-0123456789")
    narrator = Narrator(redactor, printed.append)
    jwt_like = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
    narrator.line(f"leak? refresh-token-value-0123456789 and {jwt_like}")
    assert "refresh-token-value-0123456789" not in printed[0]
    assert jwt_like not in printed[0] and printed[0].count("<redacted sha256:") == 2


class _Answers:
    """Stands in for the simulated person's HTTP session: one canned answer per URL."""

    def __init__(self, status: int, url: str) -> None:
        self.status, self.url = status, url

    def request(self, method, url, **_kwargs):
        response = requests.Response()
        response.status_code, response.url = self.status, self.url
        response._content = b"<p>error</p>"
        return response


def _simulated_user(printed: list[str]) -> SimulatedUser:
    return SimulatedUser(
        Narrator(Redactor(), printed.append),
        "http://127.0.0.1:8000",
        Credentials("alice", "pw"),
        "http://127.0.0.1:8002",
        Credentials("alice", "pw"),
    )


def test_a_failing_page_is_reported_without_its_code():
    """STYLE: never print a code. When the page an authorization response lands on fails
    (here the vault's callback, with the upstream provider's code in its query), the tour's
    error names the URL with its code masked, as its other lines do."""
    code = "upstream-authorization-code-0123456789"
    landing = f"http://127.0.0.1:8000/connections/calendar/callback?code={code}&state=s1"
    printed: list[str] = []
    user = _simulated_user(printed)
    user.http = _Answers(400, landing)
    with pytest.raises(TourError) as raised:
        user.walk(landing, leave=lambda target: False)
    assert code not in str(raised.value) and f"sha256:{fingerprint(code)}" in str(raised.value)
    assert not any(code in line for line in printed)


def test_a_failed_sign_in_is_reported_without_the_code_in_the_url():
    """The loopback redirect carries the authorization code; if the browser cannot deliver
    it (the agent stopped listening), the person's line says so without printing the code
    that an HTTP library's error message quotes."""
    code = "loopback-authorization-code-0123456789"
    printed: list[str] = []
    user = _simulated_user(printed)
    callback = f"http://127.0.0.1:9/callback?code={code}&state=s1"
    user.walk = lambda url, leave: callback  # signed in and consented already
    user.open_in_browser("http://127.0.0.1:8000/authorize?client_id=demo-agent")
    for _ in range(100):
        if any("could not finish" in line for line in printed):
            break
        time.sleep(0.05)
    assert any("could not finish" in line for line in printed)
    assert not any(code in line for line in printed)


def test_a_failing_person_stops_the_step_at_once():
    """The agent waits for an approval that a person whose browser did not start will
    never give: the step stops at the person's failure, not when the request expires."""
    from threading import Event

    from demo_agent.tour.script import run_beside

    never = Event()

    def person() -> None:
        raise RuntimeError("the browser did not start")

    started = time.monotonic()
    with pytest.raises(TourError, match="the browser did not start"):
        run_beside(lambda: never.wait(30), person, 30)
    assert time.monotonic() - started < 5


def test_run_beside_returns_the_agents_answer_and_raises_its_errors():
    from demo_agent.tour.script import run_beside

    acted: list[str] = []
    assert run_beside(lambda: True, lambda: acted.append("approved"), 5) is True
    assert acted == ["approved"]

    def broken() -> bool:
        raise ValueError("planner broke")

    with pytest.raises(ValueError, match="planner broke"):
        run_beside(broken, lambda: None, 5)
