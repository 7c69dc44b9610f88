"""Reading the database from tests, to assert what a request wrote (or did not)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import func, select

from authserver import audit
from authserver.models import AccessTokenRecord, AuthorizationCode, Grant, RefreshToken

ISSUED = (AccessTokenRecord, RefreshToken, Grant, AuthorizationCode)


def count(app: Flask, model: Any) -> int:
    with app.extensions["authserver"].session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def issued_counts(app: Flask) -> dict[str, int]:
    """How many tokens, grants and codes exist: compared before and after a refused request."""
    return {model.__tablename__: count(app, model) for model in ISSUED}


def rows(app: Flask, model: Any, *where: Any) -> list[Any]:
    with app.extensions["authserver"].session_factory() as session:
        return list(session.scalars(select(model).where(*where)))


def audit_events(app: Flask, event: str | None = None) -> list[Any]:
    from authserver.models import AuditEvent

    conditions = [AuditEvent.event == event] if event else []
    with app.extensions["authserver"].session_factory() as session:
        return list(session.scalars(select(AuditEvent).where(*conditions).order_by(AuditEvent.id)))


def link_and_verify(app: Flask) -> list[audit.Problem]:
    runtime = app.extensions["authserver"]
    audit.link_all(runtime.session_factory, runtime.audit_key)
    with runtime.session_factory() as session:
        return audit.verify_chain(session, runtime.audit_key)
