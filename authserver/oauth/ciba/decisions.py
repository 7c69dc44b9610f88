"""What the user decided on the approval page (CIBA Core §8, §10).

A request is decided once: the update only applies to a pending, unexpired
request of the deciding user, so a second decision, another user's or a late one
changes nothing. Approval creates the grant; ping clients are told at once, push
clients receive the tokens (or the denial), both through the notification outbox.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ...models import APPROVED, DENIED, PENDING, REDEEMED, BackchannelRequest, Client, Grant, now
from ...notify import enqueue
from ...runtime import Runtime
from .issuance import issue_for_request
from .sealing import open_callback


class DecisionRefused(Exception):
    """The request is not this user's, is already decided, or has expired."""


def pending_for(session: Session, request_id: str, user_id: str) -> BackchannelRequest:
    row = session.get(BackchannelRequest, request_id)
    if row is None or row.user_id != user_id:
        raise DecisionRefused("not found")
    if row.status != PENDING:
        raise DecisionRefused("already decided")
    if row.expires_at <= now():
        raise DecisionRefused("expired")
    return row


def decide(
    session: Session, runtime: Runtime, request_id: str, user_id: str, approve: bool
) -> BackchannelRequest:
    moment = now()
    claimed = session.execute(
        update(BackchannelRequest)
        .where(
            BackchannelRequest.id == request_id,
            BackchannelRequest.user_id == user_id,
            BackchannelRequest.status == PENDING,
            BackchannelRequest.expires_at > moment,
        )
        .values(
            status=APPROVED if approve else DENIED,
            decided_at=moment,
            changed_at_ms=int(time.time() * 1000),
        )
    )
    if claimed.rowcount != 1:
        pending_for(session, request_id, user_id)  # raises with the reason
        raise DecisionRefused("already decided")
    row = session.get(BackchannelRequest, request_id, populate_existing=True)
    assert row is not None  # noqa: S101 (the update above just matched it)
    if approve:
        row.grant_id = _grant_for(session, runtime, row).id
    _notify_client(session, runtime, row)
    return row


def _grant_for(session: Session, runtime: Runtime, row: BackchannelRequest) -> Grant:
    grant = Grant(
        user_id=row.user_id,
        client_id=row.client_id,
        scope=row.scope,
        resources=row.resources,
        authorization_details=row.authorization_details,
        auth_time=now(),
        expires_at=row.expires_at + runtime.settings.delegated_token_ttl,
    )
    session.add(grant)
    session.flush()
    return grant


def _notify_client(session: Session, runtime: Runtime, row: BackchannelRequest) -> None:
    client = session.get(Client, row.client_id)
    if row.delivery_mode == "poll" or client is None or row.callback_sealed is None:
        return
    endpoint = client.backchannel_client_notification_endpoint
    if not endpoint:
        return
    auth_req_id, token = open_callback(runtime.keyring, row)
    body: dict[str, Any] = {"auth_req_id": auth_req_id}
    if row.delivery_mode == "push":
        body.update(_push_body(session, runtime, row, client, auth_req_id))
    enqueue(
        session,
        runtime.keyring,
        kind=f"ciba_{row.delivery_mode}",
        target_url=endpoint,
        body=body,
        headers={"Authorization": f"Bearer {token}"},
        request_id=row.id,
        client_id=row.client_id,
        user_id=row.user_id,
    )


def _push_body(
    session: Session, runtime: Runtime, row: BackchannelRequest, client: Client, auth_req_id: str
) -> dict[str, Any]:
    """CIBA §10.3.1: tokens on approval (the request is then redeemed), an error on denial."""
    if row.status == DENIED:
        return {"error": "access_denied", "error_description": "The user denied the request."}
    row.status = REDEEMED
    return issue_for_request(session, runtime, row, client, auth_req_id)
