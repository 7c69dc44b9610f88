"""A small receiver for CIBA ping callbacks (CIBA Core §10.2).

A ping-mode client registers `backchannel_client_notification_endpoint`; when the
user decides, the server POSTs `{"auth_req_id": ...}` there with
`Authorization: Bearer <client_notification_token>` (the token the client chose in
its request, §7.1). The receiver accepts a ping only when both the bearer token and
the `auth_req_id` match a request it is waiting for, then wakes that waiter.
"""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .errors import SdkError

MAX_BODY = 4096


class PingReceiver:
    """Listens on the host, port and path of the registered notification endpoint."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        if not parts.hostname or parts.port is None:
            raise SdkError("the notification endpoint needs an explicit host and port")
        self.path = parts.path or "/"
        self._waiting: dict[str, tuple[str, threading.Event]] = {}
        self._lock = threading.Lock()
        try:
            self._server = ThreadingHTTPServer((parts.hostname, parts.port), self._handler())
        except OSError as error:
            raise SdkError(f"cannot listen for pings on {parts.netloc}: {error}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def expect(self, notification_token: str, auth_req_id: str) -> None:
        """Wait for a ping carrying this bearer token and this auth_req_id."""
        with self._lock:
            self._waiting[notification_token] = (auth_req_id, threading.Event())

    def wait(self, notification_token: str, timeout: float) -> bool:
        """True when the ping arrived (now or earlier), False after `timeout` seconds."""
        with self._lock:
            entry = self._waiting.get(notification_token)
        return entry is not None and entry[1].wait(max(timeout, 0.0))

    def forget(self, notification_token: str) -> None:
        with self._lock:
            self._waiting.pop(notification_token, None)

    def accept(self, bearer: str, body: Any) -> bool:
        """Match a ping against the waiters (constant-time comparisons)."""
        if not isinstance(body, dict) or not isinstance(body.get("auth_req_id"), str):
            return False
        with self._lock:
            entries = list(self._waiting.items())
        for token, (auth_req_id, event) in entries:
            if _same(token, bearer) and _same(auth_req_id, body["auth_req_id"]):
                event.set()
                return True
        return False

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                scheme, _, bearer = self.headers.get("Authorization", "").partition(" ")
                if urlsplit(self.path).path != receiver.path:
                    self.send_error(404)
                    return
                length = _content_length(self.headers.get("Content-Length"))
                if length is None:
                    self.send_error(400)  # unreadable, negative or too large: nothing is read
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    body = None
                ok = scheme.lower() == "bearer" and receiver.accept(bearer.strip(), body)
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                """Silent: a ping carries a bearer token and an auth_req_id."""

        return Handler


def _same(expected: str, presented: str) -> bool:
    """Constant-time, for any characters: compare_digest raises TypeError on non-ASCII str."""
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), presented.encode("utf-8", "surrogatepass")
    )


def _content_length(value: str | None) -> int | None:
    """The body's length when it is a plain number up to MAX_BODY, else None."""
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit():
        return None
    length = int(value)
    return length if length <= MAX_BODY else None
