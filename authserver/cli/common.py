"""Helpers shared by the CLI commands: settings, runtime, JSON output, errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from ..admin import AdminError
from ..db import transaction
from ..runtime import Runtime, build_runtime
from ..settings import PREFIX, SettingsError, check_settings, load_settings


def database_reason(error: DBAPIError) -> str:
    """The driver's own first line (connection refused, unable to open file, no such table):
    enough to act on, without a traceback or the statement, and without the password of
    AUTHSERVER_DATABASE_URL should a driver ever repeat it."""
    text = str(error.orig).strip()
    reason = text.splitlines()[0] if text else type(error.orig).__name__
    for password in _database_passwords():
        reason = reason.replace(password, "***")
    return reason


def _database_passwords() -> list[str]:
    configured = os.environ.get(f"{PREFIX}DATABASE_URL", "")
    try:
        password = make_url(configured).password if configured else None
        # As given in the URL (percent-encoded) and as the driver received it (decoded).
        encoded = urlsplit(configured).password if password else None
    except (ArgumentError, ValueError):
        return []
    if not password:
        return []
    return sorted({str(password), *([encoded] if encoded else [])}, key=len, reverse=True)


def load_runtime() -> Runtime:
    try:
        runtime = build_runtime(check_settings(load_settings()))
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    # Close the pooled connections when the command ends (it may run inside another process).
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(runtime.engine.dispose)
    return runtime


@contextmanager
def session_for(runtime: Runtime) -> Iterator[Session]:
    try:
        with transaction(runtime.session_factory) as session:
            yield session
    except AdminError as error:
        raise click.ClickException(str(error)) from None


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        json.dump(data, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        click.echo(text if text is not None else json.dumps(data, indent=2))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
