"""Per-request database session and audit buffer.

Audit entries of a request are written in the same transaction as the work they
describe when the request commits; when it does not (an error, a refusal), they
are written afterwards in a transaction of their own, so failures are audited
too and a rollback never takes its audit row with it.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, g, request
from sqlalchemy import insert
from sqlalchemy.orm import Session

from .. import audit
from ..audit import AuditEntry
from ..db import transaction
from ..models import AuditEvent
from ..runtime import Runtime

log = logging.getLogger(__name__)
# Built once: SQLAlchemy memoises a statement's cache key, so reuse skips recomputing it.
INSERT_AUDIT_ROWS = insert(AuditEvent.__table__)


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["authserver"]
    return rt


def db() -> Session:
    session: Session | None = g.get("db_session")
    if session is None:
        session = runtime().session_factory()
        g.db_session = session
    return session


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
    session = db()
    entries: list[AuditEntry] = g.pop("audit_entries", [])
    if entries:
        # One INSERT in the request's transaction, as `add_all` + flush wrote, without the
        # unit of work's bookkeeping (about a fifth of a token request's CPU). Insert order
        # is entry order, the rows are unlinked (chain_seq NULL) as before: the linker
        # chains them after commit exactly as it did ORM-added rows.
        key = runtime().audit_key
        values = [audit.row_values(key, entry) for entry in entries]
        session.connection().execute(INSERT_AUDIT_ROWS, values)
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
