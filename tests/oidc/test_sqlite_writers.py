"""Writers of one process on the embedded SQLite file take turns (authserver.db.WriterTurn).

Under a threaded server (gunicorn gthread) several requests of one process write at once.
They queue on the process's turn and are woken when the writer before them commits, instead
of polling SQLite's lock with sleeps of up to 100 ms. Each test gives SQLite a busy timeout
of 0, so a write that ever met the file locked fails at once: whatever succeeds here waited
on the turn, not on SQLite's busy handler.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from authserver.db import make_engine, make_read_session_factory, make_session_factory, transaction

THREADS = 8
WRITES_PER_THREAD = 25


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.db'}", sqlite_busy_timeout_ms=0)
    with transaction(make_session_factory(engine)) as session:
        session.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        session.execute(text("INSERT INTO counter VALUES (1, 0)"))
    yield engine
    engine.dispose()


def _count(engine: Engine) -> int:
    with transaction(make_read_session_factory(engine)) as session:
        return int(session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one())


def _increment(engine: Engine, hold_s: float = 0.0) -> None:
    # Read, then write what was read: lost updates would show in the final count.
    with transaction(make_session_factory(engine)) as session:
        n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
        time.sleep(hold_s)
        session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})


def _in_thread(work: object) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()  # type: ignore[operator]
        except BaseException as error:  # reported by the test
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_threads_of_one_process_write_in_turn_without_meeting_the_lock(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer() -> None:
        for _ in range(WRITES_PER_THREAD):
            try:
                _increment(engine, hold_s=0.001)
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert _count(engine) == THREADS * WRITES_PER_THREAD


class _HeldWrite:
    """A write transaction in another thread, left open until `release`."""

    def __init__(self, engine: Engine, statement: str) -> None:
        self.holding = threading.Event()
        self._release = threading.Event()

        def write() -> None:
            with transaction(make_session_factory(engine)) as session:
                session.execute(text(statement))
                self.holding.set()
                self._release.wait(10)

        self.thread, self.errors = _in_thread(write)
        assert self.holding.wait(10)

    def release(self) -> None:
        self._release.set()
        self.thread.join(10)


def test_a_writer_waits_for_the_commit_before_it_then_goes_on(engine: Engine) -> None:
    first = _HeldWrite(engine, "UPDATE counter SET n = n + 1 WHERE id = 1")
    second, second_errors = _in_thread(lambda: _increment(engine))
    time.sleep(0.3)
    assert second.is_alive(), "the second writer must wait for the first one's commit"
    first.release()
    second.join(10)

    assert not second.is_alive()
    assert first.errors == [] and second_errors == []
    assert _count(engine) == 2


def test_reads_do_not_wait_for_a_writer(engine: Engine) -> None:
    writer = _HeldWrite(engine, "UPDATE counter SET n = 41 WHERE id = 1")
    try:
        started = time.monotonic()
        assert _count(engine) == 0  # the snapshot before the uncommitted write
        assert time.monotonic() - started < 1.0
    finally:
        writer.release()
    assert writer.errors == []
    assert _count(engine) == 41


def test_a_refused_begin_passes_the_turn_on(engine: Engine) -> None:
    # Another process's writer (a plain connection to the same file) holds the lock: this
    # process's BEGIN IMMEDIATE is refused (busy timeout 0), and its turn must not stay taken.
    # (BEGIN goes straight to the driver, so the driver's own exception comes out.)
    database = engine.url.database
    assert database is not None
    other_process = sqlite3.connect(database, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _increment(engine)
    finally:
        other_process.execute("COMMIT")
        other_process.close()

    thread, errors = _in_thread(lambda: _increment(engine))
    thread.join(5)
    assert not thread.is_alive(), "the refused writer kept the turn"
    assert errors == []
    assert _count(engine) == 1


def test_a_second_write_in_a_writing_thread_fails_at_once(engine: Engine) -> None:
    # Waiting for its own turn would hang the thread; it gets SQLite's answer at once.
    factory = make_session_factory(engine)
    with transaction(factory) as outer:
        outer.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _increment(engine)
        assert time.monotonic() - started < 1.0
    assert _count(engine) == 1

    thread, errors = _in_thread(lambda: _increment(engine))
    thread.join(5)
    assert not thread.is_alive() and errors == []
    assert _count(engine) == 2
