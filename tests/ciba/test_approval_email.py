"""Approval emails: DESIGN "CIBA" lists pluggable notifiers (webhook; email).

A new CIBA request is emailed to the person's verified address through the configured
SMTP relay, from the outbox (sealed, retried, audited like every notification). The
email is plain text, names the agent, the binding message and the details rendered for
people, and points to the approval page; it carries no `auth_req_id`, no notification
token and nothing that approves. Off loopback the relay must offer STARTTLS or it is
not used. Real SMTP on loopback (aiosmtpd).
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from authserver.db import transaction
from authserver.models import BackchannelRequest, Notification, User
from authserver.settings import Settings, SettingsError, check_settings
from tests.support.apps import build_test_app
from tests.support.apps import test_settings as settings_for
from tests.support.db import audit_events, rows
from tests.support.live import free_port

from .conftest import bc_authorize, make_ciba_client

SENDER = "approvals@auth.example.com"
NOTIFICATION_TOKEN = "c0ffee00-1111-4222-8333-444455556666"


class Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        self.arrived.set()
        return "250 OK"


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture(scope="module")
def mail_app(migrated_database, relay):
    controller, _ = relay
    app = build_test_app(
        migrated_database,
        smtp_url=f"smtp://127.0.0.1:{controller.port}",
        approval_email_from=SENDER,
    )
    yield app
    app.extensions["authserver"].engine.dispose()


@pytest.fixture
def inbox(relay) -> Inbox:
    _, received = relay
    received.messages.clear()
    received.arrived.clear()
    return received


def outcomes(app) -> list[str]:
    return [event.outcome for event in audit_events(app, "notification.email")]


def test_new_request_is_emailed_to_the_verified_address(app, mail_app, inbox, alice, broker):
    agent = make_ciba_client(app, "agent-ping", "ping", "http://127.0.0.1:9/cb")
    started = bc_authorize(
        mail_app.test_client(),
        agent,
        binding_message="ORDER-7 <b>now</b>",
        client_notification_token=NOTIFICATION_TOKEN,
    )
    assert started.status_code == 200, started.json
    auth_req_id = started.json["auth_req_id"]
    [row] = [row for row in rows(app, Notification) if row.kind == "email"]
    assert row.target_url == "mailto:alice@example.com"
    assert b"ORDER-7" not in row.payload_sealed, "the outbox holds the email sealed"

    assert mail_app.extensions["authserver"].dispatcher.run_once() == 1
    assert inbox.arrived.wait(5)
    [(sender, recipients, message)] = inbox.messages
    assert sender == SENDER and recipients == ["alice@example.com"]
    assert message["Subject"] == "Approval requested by an agent"
    assert message.get_content_type() == "text/plain"
    text = message.get_content()
    assert "Client agent-ping asks for your approval." in text
    assert "Binding message: ORDER-7 <b>now</b>" in text  # text, never markup
    assert "Trade: buy 10 NET at no more than 120.00 USD" in text
    assert "  Shares (at most): 10" in text
    assert "/approvals" in text and "approves nothing by itself" in text
    assert auth_req_id not in text and NOTIFICATION_TOKEN not in text
    [request] = rows(app, BackchannelRequest)
    assert request.id not in message.as_string()  # not needed by the person, not sent
    assert outcomes(app) == ["success"]


def test_no_email_to_an_unverified_address(app, mail_app, inbox, alice, broker):
    """An unverified address may be someone else's: the email names the agent and the trade."""
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(update(User).where(User.id == alice.id).values(email_verified=False))
    agent = make_ciba_client(app, "agent-poll", "poll")
    assert bc_authorize(mail_app.test_client(), agent).status_code == 200
    assert [row for row in rows(app, Notification) if row.kind == "email"] == []


def test_no_email_without_a_relay(app, client, alice, agent):
    """The control case: without AUTHSERVER_SMTP_URL nothing is queued."""
    assert bc_authorize(client, agent).status_code == 200
    assert rows(app, Notification) == []


def test_relay_without_starttls_is_not_used_off_loopback(app, migrated_database, alice, broker):
    """The message names a person and a trade: off loopback it goes over TLS or not at all.
    A relay at 127.0.0.2 (not in the loopback allow-list) offering no STARTTLS gets nothing;
    the attempt is audited as a retry with the reason."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.2", port=free_port())
    controller.start()
    plain = build_test_app(
        migrated_database,
        smtp_url=f"smtp://127.0.0.2:{controller.port}",
        approval_email_from=SENDER,
    )
    try:
        agent = make_ciba_client(app, "agent-poll", "poll")
        assert bc_authorize(plain.test_client(), agent).status_code == 200
        assert plain.extensions["authserver"].dispatcher.run_once() == 1
    finally:
        plain.extensions["authserver"].engine.dispose()
        controller.stop()
    assert inbox.messages == []
    [row] = rows(app, Notification)
    assert row.status == "pending" and row.last_error == "the relay does not offer STARTTLS"
    assert outcomes(app) == ["retry"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"smtp_url": "http://mail.example.com"}, "SMTP_URL must be smtp"),
        ({"smtp_url": "smtp://"}, "SMTP_URL must be smtp"),
        ({"smtp_url": "smtp://user:pw@mail.example.com"}, "SMTP_URL carries only"),
        ({"approval_email_from": ""}, "APPROVAL_EMAIL_FROM"),
        ({"approval_email_from": "approvals"}, "APPROVAL_EMAIL_FROM"),
        ({"smtp_username": "mailer"}, "SMTP_USERNAME needs"),
    ],
    ids=["not_smtp", "no_host", "credentials_in_url", "no_sender", "sender_not_address", "no_pw"],
)
def test_unusable_mail_settings_stop_startup(migrated_database, overrides, message):
    """A mail setting that cannot work is refused at startup, not at the first approval."""
    settings = Settings(
        **settings_for(
            migrated_database,
            **{"smtp_url": "smtps://mail.example.com", "approval_email_from": SENDER, **overrides},
        )
    )
    with pytest.raises(SettingsError, match=message):
        check_settings(settings)


def test_an_address_no_header_can_carry_fails_at_once(app, mail_app, inbox, alice, broker):
    """Addresses are checked when users are created; one that reached the database some
    other way (an older import) and cannot be a header fails its email once, audited, and is
    not retried: no retry can fix it, and no header is ever built from it."""
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(
            update(User)
            .where(User.id == alice.id)
            .values(email="alice@example.com\r\nBcc: eve@example.com")
        )
    agent = make_ciba_client(app, "agent-poll", "poll")
    assert bc_authorize(mail_app.test_client(), agent).status_code == 200
    assert mail_app.extensions["authserver"].dispatcher.run_once() == 1
    assert inbox.messages == []
    [row] = rows(app, Notification)
    assert row.status == "failed" and row.last_error == "invalid address"
    assert outcomes(app) == ["failed"]
