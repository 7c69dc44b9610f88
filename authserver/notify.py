"""Outbound notifications (HTTP callbacks and emails), delivered at least once from any process.

A notification is a row (the outbox) written in the same transaction as the
decision it announces, its payload sealed by the vault (push deliveries carry
tokens). Each process runs a dispatcher that claims due rows with a lease, so two
processes never send the same attempt, and retries failures with exponential
backoff. Every attempt's outcome is an audit event, naming only the target's origin
(a webhook URL's path is often its secret). Redirects are not followed, and an HTTP
send is over at its status line or its deadline, whichever comes first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vault import KeyRing, associated_data, seal, unseal
from vault.deadline import Deadline, WatchedAdapter

from . import audit, mail
from .models import Notification, now

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (1, 2, 4, 8, 16, 32)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
LEASE_SECONDS = 30.0
CLAIM_BATCH = 20
SIGNATURE_HEADER = "X-Authserver-Signature"


def _aad(kind: str, target_url: str, request_id: str | None) -> bytes:
    return associated_data("notification", kind, target_url, request_id or "")


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: receivers check it and the age."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def enqueue(
    session: Session,
    keyring: KeyRing,
    *,
    kind: str,
    target_url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    client_id: str | None = None,
    user_id: str | None = None,
) -> Notification:
    payload = json.dumps({"headers": headers or {}, "body": body}).encode("utf-8")
    row = Notification(
        kind=kind,
        target_url=target_url,
        request_id=request_id,
        client_id=client_id,
        user_id=user_id,
        next_attempt_at=time.time(),
        payload_sealed=seal(keyring, payload, _aad(kind, target_url, request_id)),
    )
    session.add(row)
    return row


def _origin(target_url: str) -> str:
    """The part of a target the audit records: scheme://host[:port], never the user info,
    path or query (a Slack-style webhook URL's path is its secret); for email, the domain."""
    parts = urlsplit(target_url)
    if parts.scheme == "mailto":
        return "mailto:@" + parts.path.rpartition("@")[2]
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    permanent: bool = False  # a failure no retry can fix


def _outcome_name(outcome: Outcome, row: Notification) -> str:
    if outcome.ok:
        return "success"
    return "failed" if row.status == "failed" else "retry"


class Dispatcher:
    def __init__(
        self,
        factory: sessionmaker[Session],
        read_factory: sessionmaker[Session],
        keyring: KeyRing,
        audit_key: bytes,
        webhook_secret: str,
        timeout: float,
        interval: float,
        relay: mail.Relay | None = None,
    ) -> None:
        self._factory = factory
        self._read_factory = read_factory
        self._keyring = keyring
        self._audit_key = audit_key
        self._webhook_secret = webhook_secret
        self._timeout = timeout
        # A send may use its whole connect timeout and then its whole read timeout (those
        # keep their own names in last_error); anything slower is an endpoint dribbling its
        # answer. Capped well inside the lease, so the outcome is recorded while the row is
        # still ours: past the lease another process may claim the row and send it again.
        self._deadline = min(2 * timeout, LEASE_SECONDS / 3)
        self._interval = interval
        self._relay = relay
        self._http = requests.Session()
        for scheme in ("http://", "https://"):
            self._http.mount(scheme, WatchedAdapter())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._lock = threading.Lock()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """End the background loop after its current round and wait for it (shutdown, tests)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def ensure_started(self) -> None:
        if self._started or self._interval <= 0:
            return
        with self._lock:
            if not self._started:
                self._thread = threading.Thread(
                    target=self._loop, name="notifications", daemon=True
                )
                self._thread.start()
                self._started = True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                while self.run_once():
                    pass
            except Exception:  # the next round retries; rows stay in the outbox
                log.exception("notification dispatch failed")

    def _due_ids(self, moment: float) -> list[int]:
        # A read first: on SQLite a write transaction would take the database lock every round.
        with self._read_factory() as session:
            return list(
                session.scalars(
                    select(Notification.id)
                    .where(
                        Notification.status == "pending",
                        Notification.next_attempt_at <= moment,
                        or_(Notification.lease_until.is_(None), Notification.lease_until < moment),
                    )
                    .order_by(Notification.next_attempt_at)
                    .limit(CLAIM_BATCH)
                )
            )

    def _claim(self) -> list[Notification]:
        """Lease due rows; the conditional update makes each lease exclusive across processes."""
        moment = time.time()
        due = self._due_ids(moment)
        if not due:
            return []
        with self._factory.begin() as session:
            claimed = []
            for row_id in due:
                taken = session.execute(
                    update(Notification)
                    .where(
                        Notification.id == row_id,
                        Notification.status == "pending",
                        # Re-checked: another process may have made this attempt since the read.
                        Notification.next_attempt_at <= moment,
                        or_(Notification.lease_until.is_(None), Notification.lease_until < moment),
                    )
                    .values(lease_until=moment + LEASE_SECONDS)
                )
                if taken.rowcount == 1:
                    claimed.append(session.get(Notification, row_id))
            return [row for row in claimed if row is not None]

    def run_once(self) -> int:
        """Send every due notification once; returns how many were attempted."""
        claimed = self._claim()
        for index, row in enumerate(claimed):
            # The batch's leases were taken together and its rows are sent one by one: a
            # row whose lease might lapse before its send is recorded is handed back (with
            # the rest) instead, to be claimed again at once, here or by another process.
            if (row.lease_until or 0) - time.time() < 2 * self._deadline:
                self._release(claimed[index:])
                return index
            self._record(row.id, self._send(row))
        return len(claimed)

    def _release(self, rows: list[Notification]) -> None:
        """Give up leases this dispatcher took (and still holds) without sending."""
        with self._factory.begin() as session:
            session.execute(
                update(Notification)
                .where(
                    Notification.id.in_([row.id for row in rows]),
                    Notification.lease_until == rows[0].lease_until,
                )
                .values(lease_until=None)
            )

    def _send(self, row: Notification) -> Outcome:
        try:
            payload = json.loads(
                unseal(
                    self._keyring,
                    row.payload_sealed,
                    _aad(row.kind, row.target_url, row.request_id),
                )
            )
        except Exception:
            return Outcome(False, "payload could not be opened")
        if row.kind == "email":
            return self._send_email(row.target_url, payload["body"])
        return self._send_http(row, payload)

    def _send_email(self, target: str, body: dict[str, str]) -> Outcome:
        if self._relay is None:
            return Outcome(False, "no SMTP relay configured")
        recipient = target.removeprefix("mailto:")
        try:
            message = mail.build_message(
                self._relay.sender, recipient, body["subject"], body["text"]
            )
        except ValueError:  # an address no header may carry; retrying cannot help
            return Outcome(False, "invalid address", permanent=True)
        try:
            mail.send(self._relay, message, self._timeout)
        except mail.MailError as error:
            return Outcome(False, str(error))
        return Outcome(True, "accepted by the relay")

    def _send_http(self, row: Notification, payload: dict[str, Any]) -> Outcome:
        body = json.dumps(payload["body"]).encode("utf-8")
        headers = {"Content-Type": "application/json", **payload["headers"]}
        if row.kind == "webhook" and self._webhook_secret:
            headers[SIGNATURE_HEADER] = sign_webhook(self._webhook_secret, body, now())
        with Deadline(self._deadline) as deadline:
            try:
                # Streamed: only the status line and headers are read, never the body.
                response = self._http.post(
                    row.target_url,
                    data=body,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as error:
                late = deadline.finish()
                return Outcome(False, "Timeout" if late else type(error).__name__)
            with response:  # closes the connection, the unread body with it
                if deadline.finish():
                    return Outcome(False, "Timeout")
                status = response.status_code
        return Outcome(200 <= status < 300, f"HTTP {status}")

    def _record(self, row_id: int, outcome: Outcome) -> None:
        with self._factory.begin() as session:
            row = session.get(Notification, row_id)
            if row is None:
                return
            row.attempts += 1
            row.lease_until = None
            if outcome.ok:
                row.status, row.sent_at = "sent", now()
            elif row.attempts >= MAX_ATTEMPTS or outcome.permanent:
                row.status = "failed"
            else:
                row.next_attempt_at = time.time() + BACKOFF_SECONDS[row.attempts - 1]
            row.last_error = None if outcome.ok else outcome.detail
            entry = audit.AuditEntry(
                event="notification." + row.kind,
                outcome="success"
                if outcome.ok
                else ("failed" if row.status == "failed" else "retry"),
                user_id=row.user_id,
                client_id=row.client_id,
                details={
                    "request_id": row.request_id,
                    "attempt": row.attempts,
                    "result": outcome.detail,
                    "target": _origin(row.target_url),
                },
            )
            session.add(audit.make_row(self._audit_key, entry))
