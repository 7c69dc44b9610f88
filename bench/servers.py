"""The servers under test: the authserver under gunicorn, and the reference node server.

The authserver is configured only through ``AUTHSERVER_*`` variables, initialised
with ``authserver init``, given its benchmark clients with the app's own admin
functions, and run as ``gunicorn 'authserver:create_app()'`` with one worker pinned to one
core: a ``gthread`` worker with 8 threads, as the production image runs it
(``BENCH_WORKER=sync`` for the single-threaded worker). Audit logging is on, as it always is.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from authserver.admin import TOKEN_EXCHANGE, create_client, create_resource, create_user
from authserver.db import transaction
from authserver.runtime import Runtime, build_runtime
from authserver.settings import check_settings, load_settings
from vault import KeyRing

from .harness import ROOT, Cleanup, free_port, stop_pid, stop_process, temp_dir, wait_http

BIN = Path(sys.executable).parent  # the virtualenv's scripts
GUNICORN = BIN / "gunicorn"
AUTHSERVER_CLI = BIN / "authserver"
PEER_SCRIPT = ROOT.parent / "shared" / "peer-bench" / "run-peer.sh"
PEER_CLIENT = ("bench-client", "bench-secret-0123456789abcdef0123456789abcdef")

# The same resource and scope as the reference server's, so the request bodies match.
RESOURCE = "https://api.example.com/jwt"
RESOURCE_SCOPES = ["read", "write"]
REDIRECT_URI = "http://127.0.0.1:9/callback"
CODE_FLOW_SCOPE = "openid profile"
USERNAME = "bench-user"


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str

    @property
    def basic(self) -> str:
        """base64(id:secret) for `Authorization: Basic` (ids and secrets here are URL-safe)."""
        pair = f"{self.client_id}:{self.client_secret}".encode("ascii")
        return base64.b64encode(pair).decode("ascii")


@dataclass
class AuthServer:
    """One authserver instance (one database) and its benchmark fixtures."""

    name: str
    database_url: str
    workdir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    machine_client: ClientCredentials | None = None
    web_client: ClientCredentials | None = None
    agent_client: ClientCredentials | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    runtime: Runtime | None = None
    process: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AUTHSERVER_ENV": "development",
            "AUTHSERVER_ISSUER": self.url,
            "AUTHSERVER_DATABASE_URL": self.database_url,
            "AUTHSERVER_INSTANCE_PATH": str(self.workdir / "instance"),
            "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTHSERVER_VAULT_KEYS": KeyRing.generate().serialize(),
        }


def scratch_postgres(cleanup: Cleanup, url: str) -> str:
    """A throwaway database beside `url`'s, dropped at cleanup; returns its URL."""
    parsed = make_url(url)
    name = f"authserver_bench_{secrets.token_hex(4)}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    cleanup.push(f"database {name}", drop)
    return parsed.set(database=name).render_as_string(hide_password=False)


def _background(
    cleanup: Cleanup, what: str, command: list[str], env: dict[str, str], cwd: Path, output: Path
) -> subprocess.Popen[Any]:
    """A child in its own session (so Ctrl-C reaches only us), its output to `output`."""
    with output.open("ab") as sink:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cleanup.push(what, lambda: stop_process(process, what))
    return process


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def begin_init(server: AuthServer, cleanup: Cleanup) -> subprocess.Popen[Any]:
    """Start `authserver init` (migrations, signing keys, audit key) in the background."""
    server.env = server.server_env()
    command = [str(AUTHSERVER_CLI), "init"]
    output = server.workdir / "init.log"
    return _background(cleanup, f"{server.name} init", command, server.env, server.workdir, output)


def finish_prepare(server: AuthServer, cleanup: Cleanup, init: subprocess.Popen[Any]) -> None:
    """After init: a resource, two clients and a user, made with the app's admin functions."""
    if init.wait() != 0:
        raise RuntimeError(
            f"authserver init failed for {server.name}: {_tail(server.workdir / 'init.log')}"
        )
    runtime = build_runtime(check_settings(load_settings(server.env)))
    server.runtime = runtime
    cleanup.push(f"{server.name} engine", runtime.engine.dispose)
    with transaction(runtime.session_factory) as session:
        create_resource(session, identifier=RESOURCE, name="Bench API", scopes=RESOURCE_SCOPES)
        machine = create_client(
            session,
            name="Bench machine client",
            client_id="bench-client",
            grant_types=["client_credentials"],
            scope=" ".join(RESOURCE_SCOPES),
            allowed_audiences=[RESOURCE],
        )
        web = create_client(
            session,
            name="Bench web client",
            client_id="bench-web",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            scope="openid profile email",
        )
        # An agent that signs users in and exchanges their tokens for the resource (RFC 8693).
        agent = create_client(
            session,
            name="Bench agent",
            client_id="bench-agent",
            redirect_uris=[REDIRECT_URI],
            grant_types=[
                "authorization_code",
                "refresh_token",
                "client_credentials",
                TOKEN_EXCHANGE,
            ],
            scope=" ".join(RESOURCE_SCOPES),
            may_delegate=True,
            allowed_audiences=[RESOURCE],
        )
        create_user(session, runtime.passwords, USERNAME, server.password, name="Bench User")
    server.machine_client = ClientCredentials("bench-client", machine.client_secret or "")
    server.web_client = ClientCredentials("bench-web", web.client_secret or "")
    server.agent_client = ClientCredentials("bench-agent", agent.client_secret or "")


def prepare(server: AuthServer, cleanup: Cleanup) -> None:
    finish_prepare(server, cleanup, begin_init(server, cleanup))


def prepared(cleanup: Cleanup, prefix: str, postgres_url: str | None) -> AuthServer:
    """A server prepared in a temporary folder: SQLite there, or a scratch PostgreSQL
    database beside `postgres_url` (both removed by `cleanup`)."""
    work = temp_dir(cleanup, prefix)
    (work / "db").mkdir()
    url = f"sqlite:///{work / 'db' / 'authserver.db'}"
    if postgres_url:
        url = scratch_postgres(cleanup, postgres_url)
    server = AuthServer("profile", url, work / "db")
    prepare(server, cleanup)
    return server


WORKERS = {
    # The production image's worker (Dockerfile): threads, and keep-alive connections.
    "gthread": ["--worker-class=gthread", "--threads=8"],
    # One request at a time, a new connection per request.
    "sync": ["--worker-class=sync"],
}


def worker_name() -> str:
    name = os.environ.get("BENCH_WORKER", "gthread")
    if name not in WORKERS:
        raise SystemExit(f"BENCH_WORKER must be one of {', '.join(WORKERS)}, not {name!r}")
    return name


def worker_args() -> list[str]:
    return WORKERS[worker_name()]


def _gunicorn(core: int, port: int, app: str) -> list[str]:
    """gunicorn with one worker (`worker_args`) serving `app`, pinned to `core`."""
    return [
        "taskset",
        "-c",
        str(core),
        str(GUNICORN),
        "--workers=1",
        *worker_args(),
        f"--bind=127.0.0.1:{port}",
        "--log-level=warning",
        app,
    ]


def launch(server: AuthServer, cleanup: Cleanup, core: int) -> None:
    """Our server under gunicorn (`_gunicorn`); `wait_ready` waits for it."""
    command = _gunicorn(core, server.port, "authserver:create_app()")
    output = server.workdir / "gunicorn.log"
    what = f"{server.name} gunicorn"
    server.process = _background(cleanup, what, command, server.env, server.workdir, output)


def wait_ready(server: AuthServer) -> None:
    process = server.process
    assert process is not None
    try:
        wait_http(server.url + "/.well-known/openid-configuration", lambda: process.poll() is None)
    except RuntimeError as error:
        raise RuntimeError(f"{error}: {_tail(server.workdir / 'gunicorn.log')}") from None


def start(server: AuthServer, cleanup: Cleanup, core: int) -> None:
    launch(server, cleanup, core)
    wait_ready(server)


def _only_worker(master: subprocess.Popen[Any]) -> int:
    """The pid of a gunicorn master's only child, its worker."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()]
    if len(pids) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {pids}")
    return pids[0]


def worker_pid(server: AuthServer) -> int:
    assert server.process is not None
    return _only_worker(server.process)


@dataclass
class _OnLoopback:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Peer(_OnLoopback):
    pid: int

    @property
    def client(self) -> ClientCredentials:
        return ClientCredentials(*PEER_CLIENT)


@dataclass
class Floor(_OnLoopback):
    """bench/floor_app.py (Flask + Authlib, signing only) under the same gunicorn as ours."""

    process: subprocess.Popen[Any]
    workdir: Path

    @property
    def client(self) -> ClientCredentials:
        from .floor_app import CLIENT_ID, CLIENT_SECRET

        return ClientCredentials(CLIENT_ID, CLIENT_SECRET)

    @property
    def pid(self) -> int:
        return _only_worker(self.process)


def launch_floor(cleanup: Cleanup, core: int, workdir: Path) -> Floor:
    port = free_port()
    command = _gunicorn(core, port, "bench.floor_app:app")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    output = workdir / "floor-gunicorn.log"
    process = _background(cleanup, "floor gunicorn", command, env, ROOT, output)
    return Floor(port, process, workdir)


def floor_ready(floor: Floor) -> Floor:
    try:
        wait_http(floor.url + "/ready", lambda: floor.process.poll() is None)
    except RuntimeError as error:
        raise RuntimeError(f"{error}: {_tail(floor.workdir / 'floor-gunicorn.log')}") from None
    return floor


def _peer_dir() -> Path:
    """Where run-peer.sh installs and logs (its PEER_DIR default)."""
    if os.environ.get("PEER_DIR"):
        return Path(os.environ["PEER_DIR"])
    return Path(os.environ.get("TMPDIR") or "/tmp") / "peer-bench"


@dataclass
class PeerLaunch:
    port: int
    process: subprocess.Popen[Any]


def launch_peer(cleanup: Cleanup, core: int) -> PeerLaunch:
    """Start ../shared/peer-bench/run-peer.sh, which npm-installs on first use, starts the
    node server in the background, prints its pid and exits once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [str(PEER_SCRIPT), str(port), str(core)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    cleanup.push("run-peer.sh", lambda: stop_process(process, "run-peer.sh"))
    peer_log = _peer_dir() / f"peer-{port}.log"
    cleanup.push("peer log", lambda: peer_log.unlink(missing_ok=True))
    return PeerLaunch(port, process)


def peer_ready(launch: PeerLaunch, cleanup: Cleanup) -> Peer:
    try:
        out, errors = launch.process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        raise RuntimeError("run-peer.sh did not finish within 300s") from None
    pid_text = out.strip().splitlines()[0] if out.strip() else ""
    if pid_text.isdigit():
        pid = int(pid_text)
        cleanup.push("peer node server", lambda: stop_pid(pid, "peer node server"))
    if launch.process.returncode != 0 or not pid_text.isdigit():
        raise RuntimeError(f"run-peer.sh failed: {errors.strip()[-1000:]}")
    return Peer(launch.port, int(pid_text))
