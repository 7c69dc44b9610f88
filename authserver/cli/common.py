"""Helpers shared by the CLI commands: settings, runtime, JSON output, errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..admin import AdminError
from ..db import transaction
from ..runtime import Runtime, build_runtime
from ..settings import SettingsError, check_settings, load_settings


def database_reason(error: DBAPIError) -> str:
    """The driver's own first line (connection refused, unable to open file, no such table):
    enough to act on, without a traceback or the statement. It never holds the password."""
    text = str(error.orig).strip()
    return text.splitlines()[0] if text else type(error.orig).__name__


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
