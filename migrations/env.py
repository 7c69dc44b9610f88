"""Alembic environment: the models' metadata and the configured database."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from authserver.db import make_engine
from authserver.models import Base
from authserver.settings import load_settings
from vault.models import VaultBase

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# The vault keeps its own metadata (it imports nothing from the authserver).
target_metadata = [Base.metadata, VaultBase.metadata]


def _url() -> str:
    return config.attributes.get("database_url") or load_settings().database_url


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """SQLite ignores this pragma inside a transaction: set on the driver's connection,
    before SQLAlchemy begins one or after it has ended."""
    driver = connection.connection.dbapi_connection
    if driver is None:  # pragma: no cover - a connection the pool has already closed
        return
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _broken_references(connection: Connection) -> int:
    return len(connection.exec_driver_sql("PRAGMA foreign_key_check").all())


def _migrate(connection: Connection, broken_before: int | None = None) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        # One transaction for the whole run on SQLite too (Alembic assumes SQLite DDL is not
        # transactional; it is): a failed check below undoes every step, not just the last.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        # Raised inside the transaction: the migration is rolled back. References that were
        # already broken before (a database edited by hand) do not stop every upgrade.
        if broken_before is not None and _broken_references(connection) > broken_before:
            raise RuntimeError("the migration broke foreign key references; nothing was changed")


def run_online() -> None:
    given = config.attributes.get("engine")
    engine = given or make_engine(_url())
    try:
        with engine.connect() as connection:
            if connection.dialect.name != "sqlite":
                _migrate(connection)
                return
            # A batch migration on SQLite copies a table and drops the old one; with
            # foreign keys on, that DROP deletes every row pointing at the table through
            # ON DELETE CASCADE (a client's consents, grants and tokens). Alembic's advice:
            # foreign keys off while migrating, the references checked before committing.
            _sqlite_foreign_keys(connection, on=False)
            try:
                broken_before = _broken_references(connection)
                if connection.in_transaction():  # the check above began one
                    connection.commit()
                _migrate(connection, broken_before)
                if connection.in_transaction():  # SQLAlchemy's autobegin, left open by Alembic
                    connection.commit()
            finally:
                if connection.in_transaction():
                    connection.rollback()
                # The pooled connection goes back as it came.
                _sqlite_foreign_keys(connection, on=True)
    finally:
        if given is None:  # an engine made here is closed here (`alembic check`, the CLI)
            engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
