"""The loopback redirect of a native app (RFC 8252 §7.3), and the system browser.

`LoopbackReceiver` listens on the host, port and path of the client's registered
redirect URI (e.g. `http://127.0.0.1:8765/callback`), accepts the first request on
that path that carries the sign-in's `state` (others get 400: any local web page can
reach the port), answers it with a short page telling the user to return to the
terminal, and stops. The browser is opened only where one can show a page; the URL is
always printed.
"""

from __future__ import annotations

import hmac
import os
import socket
import sys
import threading
import webbrowser
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .errors import SdkError

DONE_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Signed in</title>"
    b"<p>You can close this window and return to the agent.</p>"
)


@dataclass(frozen=True)
class RedirectTarget:
    """Where the listener binds, read from the redirect URI."""

    host: str
    port: int
    path: str

    @classmethod
    def from_uri(cls, uri: str) -> RedirectTarget:
        parts = urlsplit(uri)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise SdkError("a loopback redirect must be http on 127.0.0.1, ::1 or localhost")
        return cls(parts.hostname, parts.port or 80, parts.path or "/")


class _IPv6Server(HTTPServer):
    address_family = socket.AF_INET6


class LoopbackReceiver:
    """A one-shot HTTP listener; `wait()` returns the full callback URL it received."""

    def __init__(self, target: RedirectTarget, state: str | None = None) -> None:
        self.target = target
        # With the sign-in's state, a request without it (another page poking the port) is
        # answered 400 and the listener keeps waiting, so it cannot cancel the sign-in.
        self._state = state
        self._received: str | None = None
        self._done = threading.Event()
        server_class = _IPv6Server if ":" in target.host else HTTPServer
        try:
            self._server = server_class((target.host, target.port), self._handler())
        except OSError as error:
            raise SdkError(f"cannot listen on {target.host}:{target.port}: {error}") from None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LoopbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=2)  # the loop notices within its 0.1 s poll
        self._server.server_close()

    def _serve(self) -> None:
        self._server.timeout = 0.1
        while not self._done.is_set():
            self._server.handle_request()

    def wait(self, timeout: float) -> str:
        if not self._done.wait(timeout) or self._received is None:
            raise SdkError("no sign-in callback arrived in time")
        return self._received

    def _expected(self, query: str) -> bool:
        if self._state is None:
            return True
        values = parse_qs(query, keep_blank_values=True).get("state", [])
        return len(values) == 1 and hmac.compare_digest(
            values[0].encode("utf-8", "surrogatepass"), self._state.encode()
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                if parts.path != receiver.target.path or receiver._done.is_set():
                    self.send_error(404)
                    return
                if not receiver._expected(parts.query):
                    self.send_error(400, "Not the sign-in this agent is waiting for")
                    return
                host = receiver.target.host
                shown = f"[{host}]" if ":" in host else host
                receiver._received = f"http://{shown}:{receiver.target.port}{self.path}"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(DONE_PAGE)
                receiver._done.set()

            def log_message(self, *_args: Any) -> None:
                """Silent: the request line carries the authorization code."""

        return Handler


def has_browser() -> bool:
    """Whether a graphical browser can open (never a text browser taking the terminal)."""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_system_browser(url: str) -> bool:
    """Open `url` in the system browser when there is one; False when it was not opened."""
    if not has_browser():
        return False
    try:
        return webbrowser.open(url, new=1)
    except webbrowser.Error:
        return False
