"""Building apps for tests, and emptying the database between tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from authserver import audit, create_app
from authserver.db import transaction
from authserver.keys import ensure_signing_keys
from authserver.models import Base, ServerSecret, SigningKey
from vault import KeyRing
from vault.models import VaultBase

TEST_ISSUER = "http://127.0.0.1:8000"
TEST_SECRET_KEY = "test-session-secret-0123456789abcdef0123456789"
TEST_KEYRING = KeyRing.generate()
# Cheap argon2id parameters keep the suite fast; production defaults are tested separately.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}
KEPT_TABLES = {SigningKey.__tablename__, ServerSecret.__tablename__}


def test_settings(database_url: str, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "database_url": database_url,
        "issuer": TEST_ISSUER,
        "secret_key": TEST_SECRET_KEY,
        "vault_keys": TEST_KEYRING.serialize(),
        "audit_link_interval": 0,
        # Tests drive the notification outbox explicitly (runtime.dispatcher.run_once()).
        "notification_poll_interval": 0,
        "dev_defaults_used": (),
        **FAST_ARGON2,
    }
    settings.update(overrides)
    return settings


def build_test_app(database_url: str, **overrides: Any) -> Flask:
    app = create_app(test_settings(database_url, **overrides))
    app.config["TESTING"] = True
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        ensure_signing_keys(session, runtime.keyring)
    _ = runtime.audit_key  # as `authserver init` makes it, before any row exists
    return app


def reset_database(app: Flask) -> None:
    """Delete every row except the signing keys and server secrets (costly to regenerate)."""
    runtime = app.extensions["authserver"]
    audit_key = runtime.audit_key  # before the transaction: loading it may write
    with transaction(runtime.session_factory) as session:
        for table in reversed(VaultBase.metadata.sorted_tables + Base.metadata.sorted_tables):
            if table.name not in KEPT_TABLES:
                session.execute(delete(table))
        audit.start_chain(session, audit_key)  # as a fresh database has it
    runtime.signing_keys.invalidate()


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """`url` itself for SQLite; on PostgreSQL a new database beside it, dropped afterwards."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield url
        return
    name = f"authserver_t_{secrets.token_hex(4)}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
