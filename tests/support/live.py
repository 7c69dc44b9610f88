"""Real servers on loopback for integration tests: in-thread apps, child processes, the CLI.

- `live_server(database_url)`: the app served by werkzeug's threaded server on a free
  127.0.0.1 port, its issuer set to that address; stopped cleanly on exit.
- `ServerProcess`: `python -m authserver.cli.entry run` as a child process.
- `LiveBrowser`: a person's browser (requests.Session) walking sign-in and consent forms.
- `isolated_database`: a fresh migrated database for tests that must not share one.
- `run_cli`: the `authserver` console script in a subprocess.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from tests.support.apps import (
    FAST_ARGON2,
    TEST_KEYRING,
    TEST_SECRET_KEY,
    build_test_app,
    scratch_database,
)
from tests.support.flows import hidden_fields

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).with_name("authserver")
STARTUP_SECONDS = 90.0  # generous: a loaded CI machine can take long to import


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LiveServer:
    app: Flask
    url: str
    _metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime(self) -> Any:
        return self.app.extensions["authserver"]

    def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched over HTTP like any relying party would."""
        if not self._metadata:
            response = requests.get(f"{self.url}/.well-known/openid-configuration", timeout=10)
            response.raise_for_status()
            self._metadata = response.json()
        return self._metadata

    def endpoint(self, name: str) -> str:
        return str(self.metadata()[name])


class _Deferred:
    """The server binds first (to learn its port); the app, built with that issuer, comes next."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@contextmanager
def live_server(database_url: str, **overrides: Any) -> Iterator[LiveServer]:
    deferred = _Deferred()
    server = make_server("127.0.0.1", 0, deferred, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        app = build_test_app(database_url, issuer=url, **overrides)
    except BaseException:
        server.server_close()
        raise
    deferred.app = app
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield LiveServer(app, url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        app.extensions["authserver"].engine.dispose()


class LiveBrowser:
    """One person's browser against a live server: signs in and answers the consent page."""

    def __init__(self, issuer: str, username: str, password: str) -> None:
        self.issuer = issuer
        self.username = username
        self.password = password
        self.http = requests.Session()

    def _on_issuer(self, location: str) -> bool:
        return location.startswith("/") or location.startswith(self.issuer + "/")

    def authorize(self, url: str, decision: str = "approve") -> str:
        """Follow the authorization request to the client's redirect; return that URL."""
        response = self.http.get(url, allow_redirects=False, timeout=10)
        for _ in range(10):
            if response.status_code in (301, 302, 303):
                location = urljoin(response.url, response.headers["Location"])
                if not self._on_issuer(response.headers["Location"]):
                    return location
                response = self.http.get(location, allow_redirects=False, timeout=10)
            elif response.status_code == 200 and 'name="password"' in response.text:
                response = self._submit(response, {"username": self.username})
            elif response.status_code == 200 and 'name="decision"' in response.text:
                response = self._submit(response, {"decision": decision})
            else:
                raise AssertionError(f"unexpected page {response.status_code}: {response.url}")
        raise AssertionError("too many steps in the authorization flow")

    def _submit(self, page: requests.Response, fields: dict[str, str]) -> requests.Response:
        form = hidden_fields(page.text) + list(fields.items())
        if "username" in fields:
            form.append(("password", self.password))
            target = f"{self.issuer}/login"
        else:
            target = f"{self.issuer}/consent"
        return self.http.post(target, data=form, allow_redirects=False, timeout=10)


@contextmanager
def isolated_database(database_url: str, directory: Path, migrated: bool = True) -> Iterator[str]:
    """A fresh database of the same kind as `database_url` (migrated unless told otherwise),
    dropped afterwards."""
    from authserver import migrate
    from authserver.db import make_engine

    if make_url(database_url).get_backend_name() == "sqlite":
        context: Any = nullcontext(f"sqlite:///{directory / f'isolated-{secrets.token_hex(4)}.db'}")
    else:
        context = scratch_database(database_url)
    with context as url:
        if migrated:
            engine = make_engine(url)
            migrate.upgrade(url, engine)
            engine.dispose()
        yield url


def is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def server_env(database_url: str, issuer: str, **extra: str) -> dict[str, str]:
    """AUTHSERVER_* settings for a child process sharing the tests' database and key ring."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        AUTHSERVER_DATABASE_URL=database_url,
        AUTHSERVER_ISSUER=issuer,
        AUTHSERVER_SECRET_KEY=TEST_SECRET_KEY,
        AUTHSERVER_VAULT_KEYS=TEST_KEYRING.serialize(),
        AUTHSERVER_ARGON2_TIME_COST=str(FAST_ARGON2["argon2_time_cost"]),
        AUTHSERVER_ARGON2_MEMORY_KIB=str(FAST_ARGON2["argon2_memory_kib"]),
        AUTHSERVER_ARGON2_PARALLELISM=str(FAST_ARGON2["argon2_parallelism"]),
        AUTHSERVER_AUDIT_LINK_INTERVAL="0",
        PYTHONPATH=str(PROJECT_ROOT),
    )
    env.update(extra)
    return env


class ServerProcess:
    """`authserver run` in a child process on `port`; `stop()` ends it (and only it)."""

    def __init__(self, port: int, env: Mapping[str, str], cwd: Path) -> None:
        command = [sys.executable, "-m", "authserver.cli.entry", "run", "--port", str(port)]
        self.url = f"http://127.0.0.1:{port}"
        self.log = cwd / f"server-{port}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                command, env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT
            )

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                requests.get(f"{self.url}/.well-known/openid-configuration", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"server on {self.url} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def server_processes(count: int, env: Mapping[str, str], cwd: Path) -> Iterator[list[str]]:
    """`count` child servers on free ports; yields their base URLs."""
    started = [ServerProcess(free_port(), env, cwd) for _ in range(count)]
    try:
        for process in started:
            process.wait_until_up()
        yield [process.url for process in started]
    finally:
        for process in started:
            process.stop()


def run_cli(
    args: list[str],
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = 180,
    input: str | None = None,  # noqa: A002 (subprocess.run's name for it)
) -> subprocess.CompletedProcess[str]:
    """The console script, as an operator runs it (`input`: what they type)."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        env=dict(env),
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_AUDIT_CHILD_SETUP = """
import sys, time
from pathlib import Path
from authserver.audit import AuditEntry, link_all, make_row
from authserver.db import transaction
from authserver.runtime import build_runtime
from authserver.settings import check_settings, load_settings
runtime = build_runtime(check_settings(load_settings()))
key = runtime.audit_key
"""

# Rows of one writer, one transaction each, as request commits write them.
_AUDIT_WRITER = """
for index in range(int(sys.argv[1])):
    entry = AuditEntry(event="test.concurrent", client_id=sys.argv[2], details={"n": index})
    with transaction(runtime.session_factory) as session:
        session.add(make_row(key, entry))
"""

# The linker, in rounds until the stop file appears; prints how many rows it linked.
_AUDIT_LINKER = """
linked = 0
while not Path(sys.argv[1]).exists():
    linked += link_all(runtime.session_factory, key)
    time.sleep(0.05)
print(linked)
"""


def audit_worker_command(role: str, *args: str) -> list[str]:
    """A child process that writes audit rows (`writer`) or links them (`linker`)."""
    body = {"writer": _AUDIT_WRITER, "linker": _AUDIT_LINKER}[role]
    return [sys.executable, "-c", _AUDIT_CHILD_SETUP + body, *args]
