"""Group commit: the inserts of requests that reach their COMMIT together, in one transaction.

Why: a client-credentials grant or a token exchange writes two rows (the access token's
record and its audit row) and reads nothing in that transaction. Committing them durably
costs far more than writing them: on SQLite with `synchronous=FULL` the COMMIT's sync of
the WAL is most of a grant's database time, and on PostgreSQL every transaction costs
round trips and a WAL flush. Requests that commit at the same time now share one
transaction and one sync.

Nothing is weakened: `insert` returns only once its rows are committed (or raises), so a
token is still handed out only after its record and audit row are durable, and the rows of
one request still commit together or not at all.

No thread of its own (leader and followers, as in a database's group commit): the first
request to arrive commits everything queued so far while the others wait; when it is done,
one of those still waiting commits what queued up meanwhile. A single request pays only a
lock; under load, a batch is what arrived during the previous commit. No Flask here.

A batch's INSERTs are compiled by SQLAlchemy once per statement and set of columns, then
sent with `exec_driver_sql` (`_DriverInsert`): per batch, SQLAlchemy's work per statement
(cache lookup, parameter processing) cost more than the rows. On PostgreSQL the batch goes
in one psycopg pipeline, its INSERTs and COMMIT sent together rather than a round trip each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.dml import Insert

log = logging.getLogger(__name__)

# Rows of one batch: bounded so that one transaction stays short (the write lock on SQLite,
# the WAL record on PostgreSQL) whatever the load.
MAX_BATCH_REQUESTS = 64

Write = tuple[Insert, dict[str, Any]]
# Errors that one request's rows cause (a duplicate key, a value too long): a batch that
# meets one is retried request by request, so that only that request fails. Any other
# error (the database locked past its timeout, a lost connection) would fail each retry as
# well, after as long again: the whole batch gets it at once.
ROW_ERRORS = (IntegrityError, DataError)


class GroupCommitFailed(Exception):
    """The transaction that carried this request's rows with others' failed (the database's
    error is the `__cause__`) or was interrupted; none of its rows were committed."""


@dataclass
class _Request:
    writes: Sequence[Write]
    settled: bool = False
    error: BaseException | None = None
    batch_size: int = 0


class GroupCommit:
    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH_REQUESTS) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._inserts = _DriverInserts(engine)
        self._changed = threading.Condition(threading.Lock())
        self._queue: list[_Request] = []
        self._committing = False
        self.transactions = 0  # committed so far (read by the tests)

    def insert(self, writes: Sequence[Write]) -> int:
        """Commit `writes` (in this order, all or none); returns the batch's size in requests.

        Raises when these rows were not committed: the database's error when they were
        committed alone, else `GroupCommitFailed` with that error as its cause.
        """
        mine = _Request(writes)
        with self._changed:
            self._queue.append(mine)
        while True:
            with self._changed:
                while self._committing and not mine.settled:
                    self._changed.wait()
                if mine.settled:
                    break
                # This request leads: it commits what is queued, its own rows among them
                # unless more than a batch queued ahead of it (then it leads again).
                self._committing = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            try:
                self._commit(batch)
            finally:
                with self._changed:
                    # Interrupted (an exception that escaped `_commit`): every request it
                    # took is answered, or its thread would wait for ever.
                    for request in batch:
                        if not request.settled:
                            request.settled = True
                            request.error = GroupCommitFailed("the commit was interrupted")
                    self._committing = False
                    self._changed.notify_all()
        return self._outcome(mine)

    def waiting(self) -> int:
        """Requests queued that no commit has taken yet."""
        with self._changed:
            return len(self._queue)

    @staticmethod
    def _outcome(request: _Request) -> int:
        error = request.error
        if error is None:
            return request.batch_size
        if request.batch_size == 1:
            raise error  # its own transaction: its own error
        # One exception object raised in several threads would mix their tracebacks.
        raise GroupCommitFailed("a group commit failed") from error

    def _commit(self, batch: list[_Request]) -> None:
        try:
            self._write(batch)
        except BaseException as error:  # noqa: BLE001 (each request gets its own outcome)
            if len(batch) == 1 or not isinstance(error, ROW_ERRORS):
                self._settle(batch, error)
                return
            # One request's rows must not fail the others' requests: each one again, alone,
            # so each gets its own answer. The driver's first line names the constraint; the
            # statement's parameters (row values) are not logged.
            cause = str(getattr(error, "orig", error)).splitlines()[:1]
            log.warning(
                "a batch of %d requests failed to commit (%s: %s); retrying each",
                len(batch),
                type(error).__name__,
                cause[0][:200] if cause else "",
            )
            for request in batch:
                self._commit([request])
            return
        self._settle(batch, None)

    def _write(self, batch: list[_Request]) -> None:
        groups = [
            (self._inserts.compiled(statement, rows[0]), statement, rows)
            for statement, rows in grouped(w for request in batch for w in request.writes)
        ]
        # SQLAlchemy's own execute reads results as it goes (a RETURNING it adds), which a
        # pipeline has not received yet: a batch with such a statement is not pipelined.
        pipelined = all(compiled is not None for compiled, _, _ in groups)
        with self._engine.connect() as connection:
            transaction = connection.begin()
            try:
                with _pipeline(connection, pipelined):
                    for compiled, statement, rows in groups:
                        if compiled is None:
                            connection.execute(statement, rows)
                        else:
                            connection.exec_driver_sql(compiled.sql, compiled.parameters(rows))
                    transaction.commit()
            except BaseException:
                # Only once the pipeline is closed: a ROLLBACK sent into a pipeline that an
                # error aborted fails too, and its error (not a row error) would replace
                # the statement's own, so the batch would not be retried request by request.
                transaction.rollback()
                raise

    def _settle(self, batch: list[_Request], error: BaseException | None) -> None:
        with self._changed:
            if error is None:
                self.transactions += 1
            for request in batch:
                request.settled = True
                request.error = error
                request.batch_size = len(batch)


def grouped(writes: Iterable[Write]) -> list[tuple[Insert, list[dict[str, Any]]]]:
    """One executemany per statement and set of columns, in the order they first appear.

    A row is never written before one that an earlier statement of the same request wrote
    for it to refer to: statements keep the order of their first appearance.
    """
    groups: dict[tuple[int, frozenset[str]], tuple[Insert, list[dict[str, Any]]]] = {}
    for statement, values in writes:
        key = (id(statement), frozenset(values))
        if key not in groups:
            groups[key] = (statement, [])
        groups[key][1].append(values)
    return list(groups.values())


def _pipeline(connection: Connection, wanted: bool) -> AbstractContextManager[Any]:
    """On psycopg, a pipeline: the statements and the COMMIT go out without waiting for each
    other's answers; an error in any of them is raised at the COMMIT at the latest, and the
    transaction then rolls back as a whole. Other drivers, and psycopg on a libpq older than
    14 (no pipeline mode), run as they are."""
    if not wanted or connection.dialect.driver != "psycopg":
        return nullcontext()
    import psycopg  # the driver in use, so installed

    if not psycopg.Pipeline.is_supported():
        return nullcontext()
    pipeline: AbstractContextManager[Any] = connection.connection.driver_connection.pipeline()
    return pipeline


@dataclass(frozen=True)
class _DriverInsert:
    """An INSERT compiled for one dialect and one set of columns: its SQL, and how each row
    becomes the driver's parameters (in the compiled order, through the columns' types)."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool

    def parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        pairs = list(zip(self.names, self.processors, strict=True))
        if self.positional:
            return [tuple(p(row[n]) if p else row[n] for n, p in pairs) for row in rows]
        return [{n: p(row[n]) if p else row[n] for n, p in pairs} for row in rows]


class _DriverInserts:
    """INSERTs compiled once per statement and set of columns, for `exec_driver_sql`.

    None for a statement whose compiled parameters are not exactly the rows' columns (a
    column with a Python-side default the rows leave out, values fixed in the statement):
    it runs through SQLAlchemy's execute as before, as only that fills those in.
    """

    # Statements are module constants; a bound keeps a caller that builds them per request
    # from growing the cache for ever.
    LIMIT = 64

    def __init__(self, engine: Engine) -> None:
        self._dialect = engine.dialect
        # (statement, its compiled form or None): the statement itself is kept so that an id
        # reused by another statement, once the first is gone, is not taken for it.
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[Insert, _DriverInsert | None]] = {}
        self._lock = threading.Lock()

    def compiled(self, statement: Insert, row: dict[str, Any]) -> _DriverInsert | None:
        columns = tuple(row)
        key = (id(statement), columns)
        with self._lock:
            found = self._compiled.get(key)
        if found is not None and found[0] is statement:
            return found[1]
        compiled = self._compile(statement, columns)
        with self._lock:
            if len(self._compiled) >= self.LIMIT:
                self._compiled.clear()
            self._compiled[key] = (statement, compiled)
        return compiled

    def _compile(self, statement: Insert, columns: tuple[str, ...]) -> _DriverInsert | None:
        dialect = self._dialect
        compiled = statement.compile(
            dialect=dialect, column_keys=list(columns), for_executemany=True
        )
        if set(compiled.params) != set(columns):
            return None
        names = tuple(compiled.positiontup or ()) if dialect.positional else columns
        table_columns = statement.table.c
        processors = tuple(
            table_columns[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        )
        return _DriverInsert(compiled.string, names, processors, dialect.positional)
