"""A client's notification endpoint on loopback: records every POST it receives.

CIBA ping and push callbacks (CIBA Core §10.2, §10.3) and approval webhooks are
delivered here. The receiver answers `status` (204 by default), or `fail_status` for
the first `fail_first` calls, or holds every request open while `hang` is set (until
`release()`), so tests can drive retries, timeouts and leases.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from requests.structures import CaseInsensitiveDict

HANG_LIMIT_SECONDS = 30.0


@dataclass(frozen=True)
class Delivery:
    """One request the receiver saw, in arrival order."""

    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class NotificationReceiver:
    """A threaded HTTP server on a free 127.0.0.1 port; use it as a context manager."""

    def __init__(
        self, *, status: int = 204, fail_first: int = 0, fail_status: int = 500, hang: bool = False
    ) -> None:
        self.status = status
        self.fail_first = fail_first
        self.fail_status = fail_status
        self._hang = threading.Event()
        if hang:
            self._hang.set()
        self.deliveries: list[Delivery] = []
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> NotificationReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self, *, status: int = 204, fail_first: int = 0) -> None:
        """Forget what arrived and answer `status` again (between tests)."""
        with self._arrived:
            self.deliveries.clear()
            self.status, self.fail_first = status, fail_first
        self.release()

    def hang(self) -> None:
        """Hold new requests open (no answer) until `release()`."""
        self._hang.set()

    def release(self) -> None:
        self._hang.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """The first `count` deliveries, waiting up to `timeout` seconds for them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} deliveries, got {len(self.deliveries)}")
                self._arrived.wait(left)
            return list(self.deliveries[:count])

    def _answer(self, delivery: Delivery) -> int:
        with self._arrived:
            self.deliveries.append(delivery)
            position = len(self.deliveries)
            self._arrived.notify_all()
        deadline = time.monotonic() + HANG_LIMIT_SECONDS
        while self._hang.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.fail_status if position <= self.fail_first else self.status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = CaseInsensitiveDict(dict(self.headers.items()))
                status = receiver._answer(Delivery("POST", self.path, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        return Handler
