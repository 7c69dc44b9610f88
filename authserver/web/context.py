"""Per-request database sessions, audit buffer and deferred inserts.

Audit entries of a request are written in the same transaction as the work they
describe when the request commits; when it does not (an error, a refusal), they
are written afterwards in a transaction of their own, so failures are audited
too and a rollback never takes its audit row with it.

A request whose own transaction never began (it read through `reading` and wrote only
through `insert`: a client-credentials grant, a token exchange) commits its rows and
audit rows in a group commit shared with other requests (`authserver.group_commit`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from .. import audit
from ..audit import AuditEntry
from ..db import transaction
from ..group_commit import Write, grouped
from ..models import AuditEvent
from ..runtime import Runtime

log = logging.getLogger(__name__)
# Built once: SQLAlchemy memoises a statement's cache key, so reuse skips recomputing it.
INSERT_AUDIT_ROWS = AuditEvent.__table__.insert()


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["authserver"]
    return rt


def db() -> Session:
    session: Session | None = g.get("db_session")
    if session is None:
        session = runtime().session_factory()
        g.db_session = session
    return session


@contextmanager
def reading() -> Iterator[Session]:
    """A short read outside the request's transaction, for reads that nothing the request
    writes needs to stay true until its commit. Each statement may see the latest commit
    on its own (`make_short_read_session_factory`); on SQLite it takes no write lock.
    Closed at the end of the block, so a client-credentials grant or token exchange holds
    one connection at a time (a grant with its own transaction open holds two while a
    registration is read on a cache miss).
    On PostgreSQL nothing enforces that these sessions only read: a write here would commit
    at once, outside the request's transaction and without its audit rows."""
    with runtime().short_read_factory() as session:
        yield session


def insert(statement: Insert, values: dict[str, Any]) -> None:
    """A row to insert when the request commits, with its audit rows."""
    inserts: list[Write] = g.setdefault("inserts", [])
    inserts.append((statement, values))


def release_db() -> None:
    """End the request's transaction early (before a long stream, so it holds no lock)."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()


def client_address() -> str:
    return request.remote_addr or "unknown"


def record(event: str, outcome: str = "success", **fields: Any) -> None:
    """Buffer an audit entry for this request."""
    fields.setdefault("ip", client_address())
    entries: list[AuditEntry] = g.setdefault("audit_entries", [])
    entries.append(AuditEntry(event=event, outcome=outcome, **fields))


def refusal_recorded() -> bool:
    """Whether this request has already buffered an audit entry for a refusal."""
    entries: list[AuditEntry] = g.get("audit_entries", [])
    return any(entry.outcome == "refused" for entry in entries)


def _pending_rows() -> list[Any]:
    entries: list[AuditEntry] = g.pop("audit_entries", [])
    key = runtime().audit_key
    return [audit.make_row(key, entry) for entry in entries]


def commit() -> None:
    """Commit the request's work together with its audit entries."""
    writes: list[Write] = g.pop("inserts", [])
    entries: list[AuditEntry] = g.pop("audit_entries", [])
    if entries:
        # Core INSERTs rather than `add_all` + flush: without the unit of work's bookkeeping
        # (about a fifth of a token request's CPU). Insert order is entry order, the rows
        # are unlinked (chain_seq NULL): the linker chains them after commit.
        key = runtime().audit_key
        writes += [(INSERT_AUDIT_ROWS, audit.row_values(key, entry)) for entry in entries]
    session: Session | None = g.get("db_session")
    if session is None or not session.in_transaction():
        # Nothing was read or written in the request's own transaction, so nothing needs
        # these rows to commit in it: share a transaction (and its sync) with others.
        if writes:
            runtime().group_commit.insert(writes)
        return
    session.flush()  # pending ORM rows first: a deferred row may refer to one
    connection = session.connection()
    for statement, rows in grouped(writes):
        connection.execute(statement, rows)
    session.commit()


def _teardown(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()
    if g.get("audit_entries"):
        try:
            with transaction(runtime().session_factory) as audit_session:
                audit_session.add_all(_pending_rows())
        except Exception:
            log.exception("could not write audit entries after a failed request")


def _before_request() -> None:
    # Load the audit key (and start the linker) before the request's own transaction
    # begins: on SQLite a second writer inside the request would wait on itself.
    runtime().linker.ensure_started()
    runtime().dispatcher.ensure_started()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_teardown)
    app.before_request(_before_request)
