"""Database engine and sessions (SQLAlchemy 2).

One engine per application; one session per request, rolled back on error and
closed at teardown. SQLite runs in WAL mode with a busy timeout so several
worker processes can share the embedded file.
"""

from __future__ import annotations

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


def _sqlite_configurator(synchronous: str) -> Any:
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"SQLite synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")

    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return configure


def _begin_sqlite(connection: Any) -> None:
    # A read-then-write transaction that starts deferred fails with SQLITE_BUSY
    # when another writer commits first; BEGIN IMMEDIATE takes the write lock up
    # front so concurrent writers queue on busy_timeout instead. Read-only
    # sessions (see `make_read_session_factory`) start deferred and never block.
    # Straight to the driver: BEGIN needs none of SQLAlchemy's statement machinery (its
    # events, result objects), which cost more than the BEGIN itself on every request.
    # The driver runs in autocommit mode (isolation_level=None), so this is the statement
    # that opens the transaction; SQLAlchemy's COMMIT and ROLLBACK end it as before.
    statement = (
        "BEGIN" if connection.get_execution_options().get(READ_ONLY_OPTION) else "BEGIN IMMEDIATE"
    )
    connection.connection.driver_connection.execute(statement)


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine for ``url``; creates the SQLite file's folder when needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No pool_pre_ping: it cost a round trip to the database on every request (every
        # token request checks a connection out). Without it, a connection the server has
        # dropped (a restart, a failover) fails the one request that meets it, answered as
        # server_error with nothing written; SQLAlchemy then retires every connection of the
        # pool opened before the failure, so each worker loses one request, not one per
        # connection. pool_recycle keeps connections younger than common idle timeouts
        # (proxies, firewalls) that would otherwise cause the same one-request failure.
        return create_engine(url, pool_size=10, max_overflow=20, pool_recycle=POOL_RECYCLE_S)
    database = parsed.database or ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"isolation_level": None, "timeout": 15})
    event.listen(engine, "connect", _sqlite_configurator(sqlite_synchronous))
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reads that may run beside a request's write transaction."""
    return sessionmaker(bind=engine.execution_options(**{READ_ONLY_OPTION: True}))


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
