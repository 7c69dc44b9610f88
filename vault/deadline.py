"""An overall time limit for one outgoing HTTP request made with `requests`.

requests' `timeout` bounds the connect and each socket read, not the request: an
endpoint that sends its answer a byte at a time holds the caller for as long as it
pleases. A `Session` with `WatchedAdapter` mounted registers every socket it opens
with the `Deadline` active on the calling thread, which shuts them down when time is
up (the blocked read then fails at once, as a connection error).

It lives in the vault because the vault's upstream calls need it and the vault imports
nothing from the authserver; the notification dispatcher uses it too.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family


class Deadline:
    """The overall time limit of one HTTP send, enforced by shutting its sockets down.

    An endpoint that sends its headers a byte at a time would otherwise hold the caller
    (a notification dispatcher, a vault refresh holding the account's lease) for as long
    as it pleased.
    """

    _active = threading.local()  # the deadline of the send running on this thread

    def __init__(self, seconds: float) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._expired = self._finished = False
        self._ends = time.monotonic() + seconds
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._outer: Deadline | None = None

    def __enter__(self) -> Deadline:
        self._outer = getattr(Deadline._active, "deadline", None)
        Deadline._active.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()
        Deadline._active.deadline = self._outer
        with self._lock:
            self._finished = True
            for twin in self._sockets:
                twin.close()

    @classmethod
    def current(cls) -> Deadline | None:
        deadline: Deadline | None = getattr(cls._active, "deadline", None)
        return deadline

    def remaining(self) -> float:
        """Seconds left, 0 once passed."""
        return max(0.0, self._ends - time.monotonic())

    @classmethod
    def watch(cls, sock: socket.socket) -> None:
        deadline = getattr(cls._active, "deadline", None)
        if deadline is not None:
            # A duplicate of the socket: TLS wraps it into a new object, detaching this one,
            # and shutting down either descriptor ends the one connection they share.
            twin = sock.dup()
            with deadline._lock:
                deadline._sockets.append(twin)
                if deadline._expired:
                    _shut(twin)

    def finish(self) -> bool:
        """Stop the clock; True if the deadline passed first (the answer may be cut short)."""
        with self._lock:
            self._finished = True
            return self._expired

    def _expire(self) -> None:
        with self._lock:
            if not self._finished:
                self._expired = True
                for sock in self._sockets:
                    _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:  # wakes a read blocked in another thread; close() alone would not
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # the connection is already gone
        pass


def _resolve(host: str, port: int, seconds: float) -> list[Any]:
    """`getaddrinfo` that gives up after `seconds`.

    A name lookup blocks in the C library and nothing interrupts it: it runs on a helper
    thread, which is left to finish on its own (within the resolver's own timeouts) when
    the caller stops waiting. Raises TimeoutError, or the lookup's own error.
    """
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = socket.getaddrinfo(
                host, port, allowed_gai_family(), socket.SOCK_STREAM
            )
        except OSError as error:
            outcome["error"] = error

    worker = threading.Thread(target=lookup, name="deadline-name-lookup", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"looking up {host} took longer than {seconds:.1f} s")
    if "error" in outcome:
        raise outcome["error"]
    addresses: list[Any] = outcome["addresses"]
    return addresses


class _Watched(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        # Until the socket exists the timer has nothing to shut down. So under a deadline the
        # name lookup and each connect get no more than the time left: the name is looked up
        # here with that limit, then each of its addresses is tried with what remains (urllib3
        # alone would give every address the whole connect timeout again).
        deadline = Deadline.current()
        if deadline is None:
            return super()._new_conn()
        name = self._dns_host
        try:
            addresses = _resolve(name.strip("[]"), self.port, deadline.remaining())
        except TimeoutError as error:
            raise ConnectTimeoutError(self, "the deadline passed during the name lookup") from error
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        connect = self.timeout if isinstance(self.timeout, int | float) else None
        failure: Exception = ConnectTimeoutError(self, "the deadline passed before connecting")
        try:
            for *_, address in addresses:
                left = deadline.remaining()
                if left <= 0:
                    break
                self.timeout = left if connect is None else min(connect, left)
                self._dns_host = address[0]  # this address only: the name is looked up already
                try:
                    sock = super()._new_conn()
                except (ConnectTimeoutError, NewConnectionError) as error:
                    failure = error
                    continue
                Deadline.watch(sock)
                if deadline.remaining() <= 0:
                    sock.close()
                    raise ConnectTimeoutError(self, "the call's deadline passed while connecting")
                return sock
        finally:
            self._dns_host = name  # `host` (TLS server name, Host header) reads it
        raise failure


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _Watched


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections put every socket under the send's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
