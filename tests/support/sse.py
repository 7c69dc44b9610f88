"""A server-sent events reader over `requests` (stream=True), for tests of /approvals/stream.

A thread reads the body as it arrives (urllib3's `read1`, so an event is seen the
moment its bytes are, not when a buffer fills) and parses the text/event-stream
format (HTML Living Standard §9.2.6) into `Event`s on a queue.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from authserver.web import approvals
from tests.support.live import LiveServer, live_server

# Server-side, a stream learns that its browser went away only when a write fails, so
# live servers for stream tests send heartbeats often and wait for streams to end before
# they stop (no stream thread then outlives its server and its database connections).
TEST_HEARTBEAT_SECONDS = 0.1
SETTLE_SECONDS = 0.6


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None
    received_at: float  # time.perf_counter()

    def json(self) -> Any:
        return json.loads(self.data)


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The response's socket (http.client drops its connection's reference on Connection: close,
    so it is found through the response's file: urllib3 -> http.client -> SocketIO)."""
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    found = getattr(getattr(fp, "raw", None), "_sock", None)
    return found if isinstance(found, socket.socket) else None


class EventStream:
    """`with EventStream(session, url) as stream:` then `stream.next(timeout)`."""

    def __init__(self, http: requests.Session, url: str, **kwargs: Any) -> None:
        self.response = http.get(url, stream=True, timeout=(5, 30), **kwargs)
        self.events: queue.Queue[Event] = queue.Queue()
        self._socket = _socket_of(self.response)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> EventStream:
        assert self.response.status_code == 200, self.response.status_code
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        # Shut the socket down first: it wakes the reader blocked in recv (close alone waits
        # for the reader's buffer lock, i.e. for the server's next heartbeat).
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self._thread.join(timeout=5)

    def _read(self) -> None:
        buffer = b""
        fields: dict[str, str] = {}
        try:
            while True:
                chunk = self.response.raw.read1(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    self._line(raw.decode("utf-8").rstrip("\r"), fields)
        except Exception:  # closed by __exit__ (or by the server): the reader just ends
            return

    def _line(self, line: str, fields: dict[str, str]) -> None:
        if line == "":
            if "data" in fields:
                self.events.put(
                    Event(
                        fields.get("event", "message"),
                        fields["data"],
                        fields.get("id"),
                        time.perf_counter(),
                    )
                )
            fields.clear()
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data" and "data" in fields:
            fields["data"] += "\n" + value
        elif name in ("event", "data", "id"):
            fields[name] = value

    def next(self, timeout: float = 5.0) -> Event:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None

    def quiet_for(self, seconds: float) -> list[Event]:
        """Every event that arrives within `seconds` (an empty list when the stream is quiet)."""
        deadline = time.monotonic() + seconds
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(self.events.get(timeout=left))
            except queue.Empty:
                break
        return seen


@contextmanager
def live_approval_server(database_url: str, **overrides: Any) -> Iterator[LiveServer]:
    """`live_server` whose approval streams notice a closed connection within a heartbeat."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(approvals, "HEARTBEAT_SECONDS", TEST_HEARTBEAT_SECONDS)
        with live_server(database_url, **overrides) as running:
            try:
                yield running
            finally:
                time.sleep(SETTLE_SECONDS)
