"""Where a client-credentials grant spends its time (the figures in bench/README.md).

    .venv/bin/python bench/profile_cc.py [--postgres URL] [--requests N] [--py-spy SECONDS]

1. In-process, no HTTP server: the WSGI app called directly with a prepared
   ``POST /token`` environ, pinned to one core. Wall-clock µs per request, then the
   same requests under cProfile, self time grouped by package (cProfile inflates
   call-heavy Python code, so read the shares, not the absolute µs), and inclusive
   time of the steps that matter (client lookup, resource lookup, signing, audit MAC,
   commit).
2. With ``--py-spy S`` (needs ``pip install py-spy``): the real gunicorn worker under
   wrk load, sampled by py-spy for S seconds; the same grouping from the samples,
   scaled to µs per request with the measured rate.

Prints JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/profile_cc.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, servers  # noqa: E402
from bench.harness import Cleanup, ensure_wrk, log, pick_cores  # noqa: E402
from bench.profile_parts import (  # noqa: E402
    app_for,
    components,
    environ_for,
    rounds_then_profile,
)

# Self time is charged to the first matching path fragment.
PACKAGES = [
    ("sqlalchemy", "/sqlalchemy/"),
    ("sqlite3 (C driver)", "sqlite3"),
    ("psycopg", "/psycopg"),
    ("authlib", "/authlib/"),
    ("flask", "/flask/"),
    ("flask_login / flask_wtf", "/flask_"),
    ("werkzeug", "/werkzeug/"),
    ("jinja2", "/jinja2/"),
    ("gunicorn", "/gunicorn/"),
    ("jwt (PyJWT)", "/jwt/"),
    ("cryptography", "/cryptography/"),
    ("authserver", "/authserver/"),
    ("vault", "/vault/"),
]
TOP = 25
# Inclusive time of these functions (file fragment, function name).
STEPS = [
    ("whole WSGI request", "flask/app.py", "wsgi_app"),
    ("client lookup (query_client)", "oauth/server.py", "query_client"),
    ("client authentication (Authlib)", "rfc6749/authenticate_client.py", "authenticate"),
    ("resource lookup (resolve_resources)", "oauth/scopes.py", "resolve_resources"),
    (
        "validate_token_request (all checks)",
        "grants/client_credentials.py",
        "validate_token_request",
    ),
    (
        "create_token_response (mint + record)",
        "grants/client_credentials.py",
        "create_token_response",
    ),
    ("JWT signing (jwt.encode ES256)", "authserver/tokens.py", "_sign"),
    ("audit rows + MAC (row_values)", "authserver/audit.py", "row_values"),
    ("group commit (INSERTs + COMMIT of a batch)", "authserver/group_commit.py", "_write"),
    ("teardown (rollback + close)", "web/context.py", "_teardown"),
    ("before_request hooks", "flask/app.py", "preprocess_request"),
    ("json response", "oauth/server.py", "handle_response"),
    ("audit linker thread (link_all, every 1 s)", "authserver/audit.py", "link_all"),
]


def _package(filename: str, function: str = "") -> str:
    """The package a frame belongs to; C functions by the type they belong to."""
    where = "/" + filename if filename not in ("~", "<built-in>") else function
    for name, fragment in PACKAGES:
        if fragment in where or (where == function and fragment.strip("/") in function):
            return name
    if where == function:
        return "builtins / C"
    return "stdlib / other"


def _is_step(function: str, filename: str, fragment: str, name: str) -> bool:
    return (function == name or function.endswith("." + name)) and filename.endswith(fragment)


def in_process(server: servers.AuthServer, requests: int, cleanup: Cleanup) -> dict[str, Any]:
    app = app_for(server, cleanup)
    template = environ_for(server)
    rounds, cpu_rounds, stats = rounds_then_profile(app, template, requests, warm=300)
    rounds.sort()
    by_package: Counter[str] = Counter()
    total = 0.0
    steps = dict.fromkeys((label for label, _, _ in STEPS), 0.0)
    for (filename, _line, function), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename, function)] += tottime
        total += tottime
        for label, fragment, name in STEPS:
            if _is_step(function, filename, fragment, name):
                steps[label] += cumtime
    scale = 1e6 / requests
    top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:TOP]  # type: ignore[attr-defined]
    return {
        "wall_us_per_request": round(rounds[len(rounds) // 2], 1),
        "wall_us_per_request_rounds": [round(r, 1) for r in rounds],
        # CPU of every thread, the audit linker's included.
        "cpu_us_per_request": round(statistics.median(cpu_rounds), 1),
        "profiled_us_per_request": round(total * scale, 1),
        "profiled_self_us_by_package": {
            name: round(value * scale, 1) for name, value in by_package.most_common()
        },
        "profiled_inclusive_us_by_step": {k: round(v * scale, 1) for k, v in steps.items()},
        "profiled_top_self_us": {
            f"{Path(f).parent.name}/{Path(f).name}:{line}({name})": round(v[2] * scale, 1)
            for (f, line, name), v in top
        },
    }


# Leaf frames of a thread that waits (py-spy --nonblocking samples waiting threads too):
# gthread's idle pool threads and poller, and requests waiting for their group commit.
IDLE_LEAVES = (
    ("Condition.wait", "threading.py"),
    ("_worker", "concurrent/futures/thread.py"),
    ("EpollSelector.select", "selectors.py"),
)


def _collapse(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    """py-spy raw output -> (self samples by package, inclusive samples by step, total)."""
    by_package: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        # "Class.method (package/module.py:123)" per frame, outermost first.
        frames = [frame.rpartition(" (") for frame in stack.split(";")]
        frames = [(function, where.rpartition(":")[0]) for function, _, where in frames]
        leaf_function, leaf_file = frames[-1]
        if any(leaf_function == f and leaf_file.endswith(suffix) for f, suffix in IDLE_LEAVES):
            continue  # a thread waiting, not running: no CPU
        total += count
        by_package[_package(*reversed(frames[-1]))] += count
        for label, fragment, name in STEPS:
            if any(_is_step(function, file, fragment, name) for function, file in frames):
                by_step[label] += count
        if not any(f.endswith(("wsgi_app", "link_all", "AuditLinker._run")) for f, _ in frames):
            by_step["gunicorn outside the app (accept, parse HTTP, write)"] += count
    return by_package, by_step, total


def under_py_spy(
    server: servers.AuthServer, cleanup: Cleanup, cores: tuple[int, int], seconds: int
) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(servers.BIN / "py-spy")
    if not Path(py_spy).exists():
        return {"skipped": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    ensure_wrk()
    servers.start(server, cleanup, cores[0])
    assert server.machine_client is not None
    worker = servers.worker_pid(server)
    load_core = loadgen.Load(seconds, cores[1])
    loadgen.client_credentials(server.url, server.machine_client, loadgen.Load(2, cores[1]), worker)
    plain = loadgen.client_credentials(server.url, server.machine_client, load_core, worker)
    raw = server.workdir / "py-spy.txt"
    record = [
        "taskset", "-c", str(cores[1]), py_spy, "record", "--format", "raw", "--rate", "500",
        "--duration", str(seconds), "--nonblocking", "--output", str(raw),
        "--pid", str(worker),
    ]  # fmt: skip
    sampler = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    load = loadgen.client_credentials(server.url, server.machine_client, load_core, worker)
    _, errors = sampler.communicate(timeout=seconds + 30)
    if sampler.returncode != 0 or not raw.exists():
        return {"skipped": f"py-spy failed: {errors.decode(errors='replace')[-300:]}"}
    by_package, by_step, total = _collapse(raw)
    # Sample shares, turned into µs of the worker's CPU per request (measured unsampled).
    cpu_us = 1e6 / plain["per_server_cpu_second"]

    def shares(counter: Counter[str]) -> dict[str, dict[str, float]]:
        return {
            name: {"pct": round(100 * n / total, 1), "cpu_us": round(cpu_us * n / total, 1)}
            for name, n in counter.most_common()
        }

    return {
        "unsampled": plain,
        "worker_cpu_us_per_request": round(cpu_us, 1),
        "rps_while_sampled": load["rps"],
        "samples": total,
        "self_by_package": shares(by_package),
        "inclusive_by_step": shares(by_step),
        "note": "py-spy --nonblocking at 500 Hz, every thread of the worker",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", metavar="URL", help="profile on a scratch PostgreSQL DB")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--py-spy", dest="py_spy", type=int, default=0, metavar="SECONDS")
    args = parser.parse_args()
    cores = pick_cores()
    result: dict[str, Any] = {}
    try:
        with Cleanup() as cleanup:
            server = servers.prepared(cleanup, "authserver-profile-", args.postgres)
            result["database"] = "postgresql" if args.postgres else "sqlite"
            if args.py_spy:
                log(f"py-spy on the gunicorn worker for {args.py_spy}s")
                result["gunicorn_py_spy"] = under_py_spy(server, cleanup, cores, args.py_spy)
            os.sched_setaffinity(0, {cores[0]})
            log("components, each alone")
            result["components"] = components(server, max(args.requests // 10, 100))
            log(f"in-process: {args.requests} requests, then again under cProfile")
            result["in_process"] = in_process(server, args.requests, cleanup)
            spied = result.get("gunicorn_py_spy", {})
            if "worker_cpu_us_per_request" in spied:
                result["gunicorn_and_tcp_cpu_us_per_request"] = round(
                    spied["worker_cpu_us_per_request"] - result["in_process"]["cpu_us_per_request"],
                    1,
                )
    except KeyboardInterrupt:
        return 130
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
