"""Database engine and sessions (SQLAlchemy 2).

One engine per application; one session per request, rolled back on error and
closed at teardown. SQLite runs in WAL mode with a busy timeout so several
worker processes can share the embedded file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15000
READ_ONLY_OPTION = "authserver_read_only"
POOL_RECYCLE_S = 1800
# PRAGMA synchronous under WAL (AUTHSERVER_SQLITE_SYNCHRONOUS). FULL syncs the WAL on every
# COMMIT: a committed token record or audit row survives a power loss. NORMAL syncs only at
# checkpoints: as safe against a crash of the process (or of every worker), but a power loss
# or kernel crash may roll back the last transactions; the database stays consistent.
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")


def _sqlite_configurator(synchronous: str, busy_timeout_ms: int) -> Any:
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"SQLite synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")

    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return configure


class WriterTurn:
    """Whose turn it is to write, among one process's connections to one SQLite file.

    SQLite admits one writer at a time. Left to itself, a thread whose BEGIN IMMEDIATE
    finds the file locked polls with sleeps that grow to 100 ms (the busy handler), so under
    a threaded server (gunicorn gthread, several requests in one process) a grant could wait
    hundreds of milliseconds for a lock that was free after one. Threads of one process
    queue here instead and are woken the moment the writer before them commits; other
    processes still meet the file lock and its busy handler.
    """

    def __init__(self, timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None
        self._timeout_s = timeout_s

    def take(self) -> bool:
        """Wait for the turn; False means go ahead without it (SQLite's lock still holds)."""
        if self._holder == threading.get_ident():
            # A second write transaction in a thread already writing waits on itself;
            # waiting here as well would only double the time until SQLite reports it.
            return False
        if not self._lock.acquire(timeout=self._timeout_s):
            return False
        self._holder = threading.get_ident()
        return True

    def give_back(self) -> None:
        self._holder = None
        self._lock.release()


def _turn_taking_connection(turn: WriterTurn) -> type[sqlite3.Connection]:
    class TurnTakingConnection(sqlite3.Connection):
        """A driver connection that holds `turn` from BEGIN IMMEDIATE to COMMIT or ROLLBACK."""

        holds_turn = False

        def begin(self, *, read_only: bool) -> None:
            if not read_only:
                self.holds_turn = turn.take()
            try:
                self.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
            except BaseException:
                self._end_turn()
                raise

        def _end_turn(self) -> None:
            if self.holds_turn:
                self.holds_turn = False
                turn.give_back()

        # The turn passes on after the driver call returns: COMMIT's fsync is the longest
        # part of a write, and the next writer's BEGIN IMMEDIATE would fail during it.
        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._end_turn()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._end_turn()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._end_turn()

    return TurnTakingConnection


def _begin_sqlite(connection: Any) -> None:
    # A read-then-write transaction that starts deferred fails with SQLITE_BUSY
    # when another writer commits first; BEGIN IMMEDIATE takes the write lock up
    # front so concurrent writers queue (on the process's WriterTurn, then on
    # busy_timeout) instead. Read-only sessions (see `make_read_session_factory`) start
    # deferred and never block.
    # Straight to the driver: BEGIN needs none of SQLAlchemy's statement machinery (its
    # events, result objects), which cost more than the BEGIN itself on every request.
    # The driver runs in autocommit mode (isolation_level=None), so this is the statement
    # that opens the transaction; SQLAlchemy's COMMIT and ROLLBACK end it as before.
    read_only = bool(connection.get_execution_options().get(READ_ONLY_OPTION))
    connection.connection.driver_connection.begin(read_only=read_only)


def _create_private_file(path: Path) -> None:
    """The SQLite file (and a folder made for it) readable by this user alone, whatever the
    umask: it holds password hashes, emails and the audit log. SQLite gives its -wal and
    -shm files the database file's permissions. An existing file is left as it is."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def make_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder when needed.

    ``sqlite_busy_timeout_ms`` is how long a write waits for another process's writer;
    writers of this process wait for each other on a WriterTurn.
    """
    parsed = make_url(url)
    # SQLAlchemy puts a failed statement's parameters (up to ten rows of a batch) in the
    # exception's text, which a 500's log line prints: other requests' addresses, user ids,
    # token ids and digests. The statement and the driver's message stay.
    private = {"hide_parameters": True}
    if parsed.get_backend_name() != "sqlite":
        # No pool_pre_ping: it cost a round trip to the database on every request (every
        # token request checks a connection out). Without it, a connection the server has
        # dropped (a restart, a failover) fails the one request that meets it, answered as
        # server_error with nothing written; SQLAlchemy then retires every connection of the
        # pool opened before the failure, so each worker loses one request, not one per
        # connection. pool_recycle keeps connections younger than common idle timeouts
        # (proxies, firewalls) that would otherwise cause the same one-request failure.
        return create_engine(
            url, pool_size=10, max_overflow=20, pool_recycle=POOL_RECYCLE_S, **private
        )
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        _create_private_file(Path(database))
    turn = WriterTurn(SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = create_engine(
        url,
        connect_args={
            "isolation_level": None,
            "timeout": sqlite_busy_timeout_ms / 1000,
            "factory": _turn_taking_connection(turn),
        },
        **private,
    )
    event.listen(
        engine, "connect", _sqlite_configurator(sqlite_synchronous, sqlite_busy_timeout_ms)
    )
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reads that may run beside a request's write transaction."""
    return sessionmaker(bind=engine.execution_options(**{READ_ONLY_OPTION: True}))


def make_short_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for short reads in which each statement may see the latest commit on its own.

    On PostgreSQL they run in autocommit: no BEGIN and ROLLBACK around the one or few
    SELECTs, two round trips fewer: 17 and 34 % of a token exchange's CPU in two
    in-process measurements (bench/README.md, "Group commit").
    On SQLite they are the deferred read transactions of `make_read_session_factory`.
    """
    if is_sqlite(engine):
        return make_read_session_factory(engine)
    options = {"isolation_level": "AUTOCOMMIT", READ_ONLY_OPTION: True}
    return sessionmaker(bind=engine.execution_options(**options))


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in its own transaction: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
