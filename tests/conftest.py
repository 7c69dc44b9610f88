"""Shared fixtures: one migrated database per test session, emptied between tests.

The database is SQLite (a temporary file) unless AUTHSERVER_TEST_DATABASE_URL
names another; `make test` runs the whole suite on SQLite and on PostgreSQL.
Component suites keep their own fixtures in their folder's conftest.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from tests.support.apps import (
    TEST_KEYRING,
    build_test_app,
    reset_database,
    scratch_database,
    test_settings,
)
from tests.support.flows import Browser

# The threads an app starts on its first request (authserver.audit, authserver.notify).
BACKGROUND_THREADS = {"audit-linker", "notifications"}


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    configured = os.environ.get("AUTHSERVER_TEST_DATABASE_URL")
    if configured:
        return configured
    path: Path = tmp_path_factory.mktemp("db") / "authserver.db"
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> Iterator[str]:
    """A freshly migrated database; on PostgreSQL a throwaway one, so runs never collide."""
    from authserver import migrate
    from authserver.db import make_engine

    with scratch_database(database_url) as url:
        engine = make_engine(url)
        migrate.upgrade(url, engine)
        engine.dispose()
        yield url
        _no_background_threads_left()


def _no_background_threads_left() -> None:
    """Every app a test built stopped its outbox dispatcher and audit linker: one left
    running would poll the database after it is dropped (and, in a server, keep work
    going that its owner believes stopped)."""
    left = [t for t in threading.enumerate() if t.name in BACKGROUND_THREADS and t.is_alive()]
    for thread in left:
        thread.join(timeout=2)  # one that was just told to stop finishes its round
    names = sorted(t.name for t in left if t.is_alive())
    assert not names, f"background threads still running after the tests: {names}"


@pytest.fixture(scope="session")
def base_app(migrated_database: str) -> Iterator[Flask]:
    app = build_test_app(migrated_database)
    yield app
    app.extensions["authserver"].engine.dispose()


@pytest.fixture
def app(base_app: Flask) -> Iterator[Flask]:
    reset_database(base_app)
    yield base_app


@pytest.fixture
def engine(app: Flask) -> Engine:
    engine: Engine = app.extensions["authserver"].engine
    return engine


@pytest.fixture
def runtime(app: Flask) -> Any:
    return app.extensions["authserver"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def browser(app: Flask) -> Browser:
    """A person's browser: a cookie jar that can sign in and walk the consent page."""
    return Browser(app.test_client())


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


__all__ = ["TEST_KEYRING", "test_settings"]
