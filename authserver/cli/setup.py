"""`init`, `run` and `db upgrade`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from vault import KeyRing

from .. import migrate
from ..db import transaction
from ..keys import ensure_signing_keys
from ..runtime import Runtime
from ..settings import PREFIX, load_settings
from .common import load_runtime


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def generate_dev_secrets() -> list[str]:
    """Create the dev session secret and KEK ring under instance/ unless configured."""
    settings = load_settings()
    made = []
    wanted = {
        "SECRET_KEY": (settings.instance_path / "secret_key", secrets.token_urlsafe(48)),
        "VAULT_KEYS": (settings.instance_path / "vault_keys", KeyRing.generate().serialize()),
    }
    for name, (path, value) in wanted.items():
        configured = os.environ.get(PREFIX + name) or os.environ.get(PREFIX + name + "_FILE")
        if not configured and not path.exists():
            _write_secret(path, value)
            made.append(str(path))
    return made


def prepare_database(runtime: Runtime) -> list[str]:
    """Migrate to the latest schema and make sure signing keys and the audit key exist."""
    migrate.upgrade(runtime.settings.database_url, runtime.engine)
    with transaction(runtime.session_factory) as session:
        created = [row.kid for row in ensure_signing_keys(session, runtime.keyring)]
    _ = runtime.audit_key
    return created


@click.command()
def init() -> None:
    """Generate dev secrets under instance/ (if not configured), migrate, create keys."""
    for path in generate_dev_secrets():
        click.echo(f"generated development secret {path} (git-ignored; keep it private)")
    runtime = load_runtime()
    for kid in prepare_database(runtime):
        click.echo(f"created signing key {kid}")
    click.echo(f"database ready: {runtime.engine.url.render_as_string(hide_password=True)}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Run the server with the development WSGI server (use gunicorn in production)."""
    from werkzeug.serving import run_simple

    from .. import create_app

    app = create_app()
    run_simple(host, port, app, threaded=True, use_reloader=False, request_handler=_path_only_log())


def _path_only_log() -> type:
    """The development server's request handler, logging each request without its query
    string: an upstream provider's authorization code arrives in one
    (/connections/<name>/callback?code=...), and no credential may reach a log."""
    from werkzeug.serving import WSGIRequestHandler

    class PathOnlyLog(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            path = getattr(self, "path", "").split("?", 1)[0]
            self.log("info", '"%s %s" %s', getattr(self, "command", "-"), path, code)

    return PathOnlyLog


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending Alembic migration."""
    runtime = load_runtime()
    migrate.upgrade(runtime.settings.database_url, runtime.engine)
    click.echo("database schema is up to date")
