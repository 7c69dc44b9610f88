"""CIBA benchmark: how fast a person sees a request, and how fast the agent hears the answer.

For each database (SQLite in a temporary folder; PostgreSQL in a throwaway database
unless BENCH_PG_URL is empty), with production settings (argon2id defaults, audit on):

1. Latency, BENCH_CIBA_REPS (20) repetitions, the authserver under gunicorn (one gthread
   worker, 8 threads: the approval stream holds a thread) pinned to core 0; this client
   on core 1 keeps /approvals/stream open as the signed-in user, and a local receiver is
   the ping client's notification endpoint (CIBA Core §10.2). Per repetition:
   POST /bc-authorize -> the card on the stream; POST /approvals/<id> (approve, with the
   password) -> the ping at the receiver -> POST /token returns the tokens.
2. Cost of a poll that answers authorization_pending (CIBA Core §11): gunicorn with one
   sync worker pinned to core 0, wrk on core 1 (-t1 -c4, Lua script wrk_ciba_poll.lua
   rotating over 64 pending requests; AUTHSERVER_CIBA_INTERVAL=0 so none is slow_down).

Only JSON goes to stdout; progress goes to stderr. Run: `.venv/bin/python bench/ciba.py`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import queue
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from authserver.admin import CIBA, create_client, create_resource, create_user
from authserver.cli.setup import prepare_database
from authserver.db import transaction
from authserver.runtime import Runtime, build_runtime
from authserver.settings import check_settings, load_settings
from vault import KeyRing

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER_CORE, LOAD_CORE = 0, 1
REPS = int(os.environ.get("BENCH_CIBA_REPS", "20"))
POLL_SECONDS = int(os.environ.get("BENCH_CIBA_POLL_SECONDS", "4"))
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PENDING_POOL = 64
BROKER = "https://broker.example.com"
TRADE_TYPE = json.loads((ROOT / "demo_agent/broker/trade_type.json").read_text())
TRADE = {"type": "trade", "side": "buy", "symbol": "NET", "quantity": 10, "limit_price": 120.0}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WAIT = 10.0


def log(message: str) -> None:
    print(f"[ciba-bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p95 (nearest rank) in milliseconds, with min and max."""
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return {
        "p50": round(rank(0.50) * 1000, 1),
        "p95": round(rank(0.95) * 1000, 1),
        "min": round(ordered[0] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


# --- the pieces around the server -------------------------------------------------------


class Receiver:
    """The ping client's notification endpoint: when each auth_req_id's ping arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.condition = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                moment = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.condition:
                    receiver.arrived[json.loads(body)["auth_req_id"]] = moment
                    receiver.condition.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ciba-callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, auth_req_id: str) -> float:
        with self.condition:
            if not self.condition.wait_for(lambda: auth_req_id in self.arrived, WAIT):
                raise RuntimeError("the ping notification did not arrive")
            return self.arrived[auth_req_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stream:
    """The approval page's event stream, read as the bytes arrive (urllib3's read1)."""

    def __init__(self, http: requests.Session, url: str) -> None:
        self.response = http.get(url, stream=True, timeout=(5, 60))
        self.response.raise_for_status()
        fp = getattr(getattr(self.response.raw, "_fp", None), "fp", None)
        self.socket = getattr(getattr(fp, "raw", None), "_sock", None)
        self.events: queue.Queue[tuple[str, str, float]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer, fields = b"", {}
        with contextlib.suppress(Exception):
            while chunk := self.response.raw.read1(65536):
                moment = time.perf_counter()
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    decoded = line.decode().rstrip("\r")
                    if decoded == "" and "data" in fields:
                        self.events.put((fields.get("event", "message"), fields["data"], moment))
                        fields = {}
                    elif decoded and not decoded.startswith(":"):
                        name, _, value = decoded.partition(":")
                        fields[name] = value[1:] if value.startswith(" ") else value

    def wait_for(self, event: str, needle: str) -> tuple[dict[str, Any], float]:
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            name, data, moment = self.events.get(timeout=left)
            if name == event and needle in data:
                return json.loads(data), moment
        raise RuntimeError(f"no {event} event with {needle!r}")

    def close(self) -> None:
        if isinstance(self.socket, socket.socket):
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)
        self.response.close()


class Gunicorn:
    """`gunicorn 'authserver:create_app()'`, one worker, pinned to the server core."""

    def __init__(self, env: dict[str, str], workdir: Path, port: int, *worker: str) -> None:
        command = ["taskset", "-c", str(SERVER_CORE), str(BIN / "gunicorn"), "--workers=1"]
        command += [*worker, "--graceful-timeout=2", f"--bind=127.0.0.1:{port}"]
        command += ["--log-level=warning", "authserver:create_app()"]
        self.log = workdir / f"gunicorn-{port}.log"
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{port}"
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url + "/.well-known/openid-configuration", timeout=10)
                return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start: {self.log.read_text()[-2000:]}")

    def worker_cpu_seconds(self) -> float:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        [pid] = children.read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# --- one authserver instance --------------------------------------------------------------


class Instance:
    def __init__(self, database_url: str, workdir: Path, receiver: Receiver) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.password = secrets.token_urlsafe(16)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")},
            "AUTHSERVER_ENV": "development",
            "AUTHSERVER_ISSUER": self.url,
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_INSTANCE_PATH": str(workdir / "instance"),
            "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTHSERVER_VAULT_KEYS": KeyRing.generate().serialize(),
        }
        self.runtime: Runtime = build_runtime(check_settings(load_settings(self.env)))
        prepare_database(self.runtime)
        with transaction(self.runtime.session_factory) as session:
            create_resource(
                session, identifier=BROKER, name="Broker", scopes=[], detail_types=[TRADE_TYPE]
            )
            create_user(session, self.runtime.passwords, "alice", self.password)
            ping = create_client(
                session,
                name="Trading agent (ping)",
                client_id="agent-ping",
                grant_types=[CIBA],
                backchannel_mode="ping",
                backchannel_endpoint=receiver.url,
            )
            poll = create_client(
                session, name="Trading agent (poll)", client_id="agent-poll", grant_types=[CIBA]
            )
        self.ping_auth = ("agent-ping", ping.client_secret or "")
        self.poll_auth = ("agent-poll", poll.client_secret or "")

    def bc_authorize(self, auth: tuple[str, str], binding: str, **extra: str) -> str:
        data = {
            "scope": "openid",
            "login_hint": "alice",
            "binding_message": binding,
            "authorization_details": json.dumps([TRADE]),
            **extra,
        }
        response = requests.post(f"{self.url}/bc-authorize", data=data, auth=auth, timeout=WAIT)
        response.raise_for_status()
        return str(response.json()["auth_req_id"])

    def sign_in(self) -> requests.Session:
        http = requests.Session()
        page = http.get(f"{self.url}/login", timeout=WAIT).text
        form = {"username": "alice", "password": self.password, "csrf_token": _csrf(page)}
        http.post(f"{self.url}/login", data=form, timeout=WAIT).raise_for_status()
        return http

    def argon2_verify_seconds(self) -> float:
        password_hash = self.runtime.passwords.hash(self.password)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            self.runtime.passwords.verify(password_hash, self.password)
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)


def _csrf(page: str) -> str:
    match = CSRF.search(page)
    if match is None:
        raise RuntimeError("no CSRF field on the page")
    return match.group(1).replace("&#34;", '"').replace("&amp;", "&")


def latency(instance: Instance, receiver: Receiver) -> dict[str, Any]:
    server = Gunicorn(
        instance.env, instance.workdir, instance.port, "--worker-class=gthread", "--threads=8"
    )
    samples: dict[str, list[float]] = {
        "bc_authorize_response": [],
        "card_on_stream_after_request": [],
        "card_on_stream_after_response": [],
        "decision_post_response": [],
        "ping_after_decision": [],
        "token_after_decision": [],
        "decided_on_stream_after_decision": [],
    }
    try:
        http = instance.sign_in()
        stream = Stream(http, f"{instance.url}/approvals/stream")
        try:
            for rep in range(REPS + 1):  # one warm-up repetition, not recorded
                time.sleep(random.uniform(0, 0.15))  # arrive at any point of the poll cycle  # noqa: S311
                binding = f"BENCH-{rep:03d}-{secrets.token_hex(2)}"
                started = time.perf_counter()
                auth_req_id = instance.bc_authorize(
                    instance.ping_auth, binding, client_notification_token=secrets.token_hex(16)
                )
                answered = time.perf_counter()
                card, shown = stream.wait_for("request", binding)
                decided = time.perf_counter()
                response = http.post(
                    f"{instance.url}/approvals/{card['id']}",
                    data={
                        "decision": "approve",
                        "password": instance.password,
                        "csrf_token": _csrf(card["html"]),  # the card's own form field
                    },
                    allow_redirects=False,
                    timeout=WAIT,
                )
                if response.status_code != 302:
                    raise RuntimeError(f"approval answered {response.status_code}")
                decision_done = time.perf_counter()
                pinged = receiver.wait(auth_req_id)
                token = requests.post(
                    f"{instance.url}/token",
                    data={"grant_type": CIBA, "auth_req_id": auth_req_id},
                    auth=instance.ping_auth,
                    timeout=WAIT,
                )
                redeemed = time.perf_counter()
                if token.status_code != 200:
                    raise RuntimeError(f"token answered {token.status_code}: {token.text}")
                _, gone = stream.wait_for("decided", card["id"])
                if rep < 1:
                    continue
                samples["bc_authorize_response"].append(answered - started)
                samples["card_on_stream_after_request"].append(shown - started)
                samples["card_on_stream_after_response"].append(max(0.0, shown - answered))
                samples["decision_post_response"].append(decision_done - decided)
                samples["ping_after_decision"].append(pinged - decided)
                samples["token_after_decision"].append(redeemed - decided)
                samples["decided_on_stream_after_decision"].append(gone - decided)
        finally:
            stream.close()
    finally:
        server.stop()
    return {name: percentiles(values) for name, values in samples.items()}


def poll_cost(instance: Instance) -> dict[str, Any]:
    env = {**instance.env, "AUTHSERVER_CIBA_INTERVAL": "0"}
    server = Gunicorn(env, instance.workdir, instance.port, "--worker-class=sync")
    try:
        ids = [instance.bc_authorize(instance.poll_auth, f"POLL-{n}") for n in range(PENDING_POOL)]
        basic = base64.b64encode(":".join(instance.poll_auth).encode()).decode()
        wrk_env = {**os.environ, "WRK_AUTH": basic, "WRK_IDS": ",".join(ids)}
        command = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", "-c4"]
        command += ["-d1s", "-s", str(ROOT / "bench/wrk_ciba_poll.lua"), instance.url + "/token"]
        subprocess.run(command, env=wrk_env, capture_output=True, check=True)  # warm-up
        cpu_before = server.worker_cpu_seconds()
        command[command.index("-d1s")] = f"-d{POLL_SECONDS}s"
        done = subprocess.run(command, env=wrk_env, capture_output=True, text=True, check=True)
        cpu = server.worker_cpu_seconds() - cpu_before
    finally:
        server.stop()
    line = next(x for x in done.stdout.splitlines() if x.startswith("{"))
    figures = json.loads(line)
    seconds = figures["duration_us"] / 1e6
    if figures["other"] or figures["pending"] != figures["requests"]:
        raise RuntimeError(f"not every poll answered authorization_pending: {figures}")
    return {
        "load": f"wrk -t1 -c4 -d{POLL_SECONDS}s, Lua script bench/wrk_ciba_poll.lua, on core 1",
        "server": "gunicorn, one sync worker, taskset -c 0",
        "polls": figures["requests"],
        "polls_per_second": round(figures["requests"] / seconds, 1),
        "server_cpu_seconds": round(cpu, 2),
        "server_core_busy": round(cpu / seconds, 2),
        "cpu_ms_per_poll": round(cpu * 1000 / figures["requests"], 3),
        # What one core would sustain: the load shares the machine, so rate alone can mislead.
        "polls_per_cpu_second": round(figures["requests"] / cpu, 1) if cpu else None,
        "latency_ms": {
            "p50": figures["latency_p50_us"] / 1000,
            "p99": figures["latency_p99_us"] / 1000,
        },
        "socket_errors": figures["socket_errors"],
    }


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'authserver.db'}"
        return
    parsed = make_url(PG_URL)
    name = f"authserver_ciba_bench_{secrets.token_hex(4)}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(kind: str, receiver: Receiver) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"ciba-bench-{kind}-"))
    try:
        with database(kind, workdir) as url:
            instance = Instance(url, workdir, receiver)
            try:
                log(f"{kind}: latency, {REPS} repetitions")
                measured = latency(instance, receiver)
                log(f"{kind}: cost of a pending poll, {POLL_SECONDS} s of load")
                cost = poll_cost(instance)
                argon2 = instance.argon2_verify_seconds()
            finally:
                instance.runtime.engine.dispose()
        settings = instance.runtime.settings
        return {
            "settings": {
                "approval_stream_poll_interval_s": settings.approval_stream_poll_interval,
                "notification_poll_interval_s": settings.notification_poll_interval,
                "argon2": [settings.argon2_time_cost, settings.argon2_memory_kib],
            },
            "latency_ms": measured,
            "pending_poll": cost,
            "argon2id_verify_ms": round(argon2 * 1000, 1),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("wrk"):
        raise SystemExit("needs two cores and wrk (apt-get install wrk)")
    os.sched_setaffinity(0, {LOAD_CORE})
    started = time.monotonic()
    receiver = Receiver()
    results: dict[str, Any] = {
        "benchmark": "ciba",
        "repetitions": REPS,
        "server": "gunicorn 'authserver:create_app()', one worker on core 0; client on core 1",
    }
    try:
        results["sqlite"] = run("sqlite", receiver)
        if PG_URL:
            try:
                results["postgresql"] = run("postgresql", receiver)
            except Exception as error:  # PostgreSQL is optional here; say why it is missing
                results["postgresql"] = {"skipped": f"{type(error).__name__}: {error}"}
    finally:
        receiver.close()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
