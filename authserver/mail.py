"""Sending one plain-text email over SMTP (the approval-email notifier's transport).

`AUTHSERVER_SMTP_URL` names the relay: `smtps://host:465` (TLS from the first byte) or
`smtp://host:587` (STARTTLS, required: a relay that does not offer it is not used,
because the message names the person, the agent and the action awaiting approval).
Only a relay on loopback (`127.0.0.1`, `::1`, `localhost`: a local MTA) may be spoken
to in clear. Certificates are verified with the system's trust store.

The message is built by the standard library's `email` package, which encodes headers
and refuses line breaks in them; the subject is fixed text, and everything a client
chose (agent name, binding message, details) goes only into the body.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


class MailError(Exception):
    """The message was not accepted by the relay; the text says why (no secrets in it)."""


@dataclass(frozen=True)
class Relay:
    scheme: str
    host: str
    port: int
    username: str
    password: str
    sender: str

    @property
    def on_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


def parse_smtp_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `smtp://host[:port]` or `smtps://host[:port]`, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be smtp://host[:port] or smtps://host[:port]")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ValueError("carries only scheme, host and port (credentials have their own settings)")
    return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]


def build_message(sender: str, recipient: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(text)
    return message


def send(relay: Relay, message: EmailMessage, timeout: float) -> None:
    """Deliver `message` to the relay, or raise MailError."""
    context = ssl.create_default_context()
    try:
        if relay.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                relay.host, relay.port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
        with client:
            if relay.scheme == "smtp" and not relay.on_loopback:
                client.ehlo()
                if not client.has_extn("starttls"):
                    raise MailError("the relay does not offer STARTTLS")
                client.starttls(context=context)
                client.ehlo()
            if relay.username:
                client.login(relay.username, relay.password)
            client.send_message(message)
    except MailError:
        raise
    except smtplib.SMTPException as error:
        raise MailError(type(error).__name__) from None
    except (OSError, ssl.SSLError) as error:
        raise MailError(type(error).__name__) from None
