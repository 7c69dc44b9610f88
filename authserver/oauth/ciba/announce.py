"""Telling people a CIBA request awaits them: the audit row, and the configured notifiers.

The approval page shows every pending request by itself (live over SSE). Beyond it,
an operator may configure two notifiers, both written to the outbox in the request's
own transaction (so a rolled-back request announces nothing) and delivered with
retries by any process:

- an approval webhook (`AUTHSERVER_APPROVAL_WEBHOOK_URL`): a signed JSON POST for chat
  or push services;
- an approval email (`AUTHSERVER_SMTP_URL` and `AUTHSERVER_APPROVAL_EMAIL_FROM`) to the
  person's address, only when it is verified: an unverified address may be someone
  else's, and the email names the agent and the action.

Neither carries anything that approves: both point to the approval page, where the
person signs in and approving asks for the password again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ... import rar
from ...models import BackchannelRequest, User
from ...notify import enqueue

EMAIL_SUBJECT = "Approval requested by an agent"


def announce(server: Any, row: BackchannelRequest, user: User, client: Any) -> None:
    server.record(
        "ciba.requested",
        user_id=user.id,
        client_id=client.client_id,
        details={
            "request_id": row.id,
            "mode": row.delivery_mode,
            "scope": row.scope,
            "authorization_details": row.authorization_details,
            "binding_message": row.binding_message,
        },
    )
    settings = server.runtime.settings
    rendered = rar.render(server.db(), row.authorization_details or [])
    if settings.approval_webhook_url:
        _webhook(server, row, user, client, rendered)
    if settings.smtp_url and user.email and user.email_verified:
        _email(server, row, user, client, rendered)


def _webhook(
    server: Any, row: BackchannelRequest, user: User, client: Any, rendered: list[Any]
) -> None:
    settings = server.runtime.settings
    body = {
        "type": "approval.requested",
        "request_id": row.id,
        "user": {"id": user.id, "username": user.username},
        "client": {"id": client.client_id, "name": client.client_name},
        "binding_message": row.binding_message,
        "authorization_details": rendered,
        "expires_at": row.expires_at,
        "approve_url": f"{settings.issuer}/approvals",
    }
    enqueue(
        server.db(),
        server.runtime.keyring,
        kind="webhook",
        target_url=settings.approval_webhook_url,
        body=json.loads(json.dumps(body)),
        request_id=row.id,
        client_id=client.client_id,
        user_id=user.id,
    )


def email_text(
    issuer: str, client_name: str, binding_message: str | None, rendered: list[Any], expires_at: int
) -> str:
    """The email's plain-text body (no HTML: nothing a client chose can become markup)."""
    lines = [f"{client_name} asks for your approval.", ""]
    if binding_message:
        lines += [f"Binding message: {binding_message}", "(it must match what the agent shows)", ""]
    for entry in rendered:
        title = entry["title"]
        lines.append(f"{title}: {entry['summary']}" if entry["summary"] else title)
        lines += [f"  {label}: {value}" for label, value in entry["rendered"]]
        lines.append("")
    expiry = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += [
        f"Approve or deny it on your approval page: {issuer}/approvals",
        f"The request expires at {expiry}.",
        "",
        "This email approves nothing by itself. If you did not expect it, deny the request.",
    ]
    return "\n".join(lines) + "\n"


def _email(
    server: Any, row: BackchannelRequest, user: User, client: Any, rendered: list[Any]
) -> None:
    settings = server.runtime.settings
    text = email_text(
        settings.issuer, client.client_name, row.binding_message, rendered, row.expires_at
    )
    enqueue(
        server.db(),
        server.runtime.keyring,
        kind="email",
        target_url=f"mailto:{user.email}",
        body={"subject": EMAIL_SUBJECT, "text": text},
        request_id=row.id,
        client_id=client.client_id,
        user_id=user.id,
    )
