"""The simulated person's approvals clicked in headless Chromium (Playwright).

Used when the tour is given a Chromium executable (`DEMO_TOUR_BROWSER`): the person
signs in on the approval page, waits for the card carrying the agent's code to
arrive (the page updates itself over server-sent events), reads it, and clicks
Approve (with their password) or Deny. Playwright is a development dependency; the
default tour uses plain HTTP forms and needs no browser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .pages import ApprovalCard

if TYPE_CHECKING:
    from .user import SimulatedUser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def decide_in_chromium(
    user: SimulatedUser, binding_message: str, decision: str, timeout: float
) -> ApprovalCard:
    from playwright.sync_api import sync_playwright

    wait_ms = int(timeout * 1000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=user.browser, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(wait_ms)
            user.say(f"opens {user.issuer}/approvals in Chromium and signs in")
            page.goto(f"{user.issuer}/approvals")
            page.get_by_label("Username or email").fill(user.account.username)
            page.get_by_label("Password").fill(user.account.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{user.issuer}/approvals")
            card_box = page.locator(".approval").filter(
                has=page.locator(".binding-message", has_text=binding_message)
            )
            card_box.wait_for(state="visible")
            card = ApprovalCard(
                request_id=(card_box.get_attribute("id") or "").removeprefix("req-"),
                binding_message=card_box.locator(".binding-message").inner_text().strip(),
                summaries=[s.strip() for s in card_box.locator(".summary").all_inner_texts()],
            )
            user.describe(card)
            if decision == "approve":
                user.say("enters her password and clicks Approve")
                card_box.get_by_label("Your password").fill(user.account.password)
                card_box.get_by_role("button", name="Approve").click()
            else:
                user.say("clicks Deny")
                card_box.get_by_role("button", name="Deny").click()
            notice = page.locator(".notice")
            notice.wait_for(state="visible")
            user.say(f"the page says: {notice.inner_text().strip()}")
            return card
        finally:
            browser.close()
