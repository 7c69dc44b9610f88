"""Plumbing for the benchmarks: cleanup on any exit, cores, ports, waiting, machine facts.

Everything a benchmark starts (servers, temporary folders, scratch databases) is
registered with `Cleanup`, which undoes it in reverse order on success, failure,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the JSON result."""
    print(f"[bench {time.monotonic() - STARTED:5.1f}s] {message}", file=sys.stderr, flush=True)


class Cleanup:
    """A stack of undo actions, run once, in reverse order, whatever happens."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, action: Callable[[], None]) -> None:
        self._actions.append((what, action))

    def run(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as error:  # keep undoing the rest
                log(f"cleanup of {what} failed: {error}")

    def __enter__(self) -> Cleanup:
        # Also when started in the background, where SIGINT arrives ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        # Ctrl-C during cleanup must not leave half of it undone.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.run()
        finally:
            signal.signal(signal.SIGINT, previous)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_process(process: subprocess.Popen[Any], what: str, grace: float = 5.0) -> None:
    """SIGTERM the process (a session leader we started), then SIGKILL its group if needed."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        log(f"{what} ignored SIGTERM; killing process group {process.pid}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)


def stop_pid(pid: int, what: str, grace: float = 5.0) -> None:
    """Stop a process we started but do not parent (the peer's node server)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        log(f"{what} (pid {pid}) ignored SIGTERM; killing it")
        os.kill(pid, signal.SIGKILL)


def temp_dir(cleanup: Cleanup, prefix: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    cleanup.push(f"temporary folder {path}", lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, alive: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server for {url} exited during startup")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def pick_cores() -> tuple[int, int]:
    """(server core, load core): the first two CPUs this process may use."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("bench needs two CPU cores: one for the server, one for the load")
    return cores[0], cores[1]


@contextlib.contextmanager
def on_core(core: int) -> Iterator[None]:
    """Pin this process (and what it starts) to `core` for the block."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _command_output(*command: str) -> str | None:
    """First line of a version command's output (`wrk -v` exits 1 after printing it)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy() -> dict[str, Any]:
    """How busy the machine is: load average and CPU pressure ("some" = % of time a
    runnable task waited for a CPU; near 0 on an idle machine)."""
    pressure = None
    with contextlib.suppress(OSError, IndexError, ValueError):
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        fields = dict(item.split("=") for item in line.split()[1:])
        pressure = float(fields["avg60"])
    return {
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu_pressure_some_avg60_pct": pressure,
    }


def machine_info(server_core: int, load_core: int) -> dict[str, Any]:
    cpu = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = ("gunicorn", "Flask", "Authlib", "SQLAlchemy", "PyJWT", "cryptography", "psycopg")
    return {
        "cpu": cpu,
        "cpus_available": len(os.sched_getaffinity(0)),
        "busy_at_start": busy(),
        "server_core": server_core,
        "load_core": load_core,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in packages},
        "node": _command_output("node", "--version"),
        "wrk": _command_output("wrk", "-v"),
    }


def ensure_wrk() -> None:
    """Debian's wrk; installed with apt-get when missing (we run as root in CI)."""
    if shutil.which("wrk"):
        return
    log("wrk not found; installing Debian's wrk with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
