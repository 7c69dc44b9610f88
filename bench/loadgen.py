"""Load with wrk, pinned to the load core; one function per scenario.

Every scenario uses 8 connections. Static scenarios use one wrk thread (-t1 -c8,
as in ../shared/peer-bench). The code flow uses one thread per connection (-t8 -c8):
each wrk Lua state then owns exactly one connection, so it can chain
GET /authorize -> POST /token on it and time the whole flow; eight event loops on
one core are far from its limit at these rates.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .harness import BENCH, cpu_seconds
from .servers import RESOURCE, ClientCredentials

CONNECTIONS = 8
MARKER = "BENCH_JSON "
CLIENT_CREDENTIALS_BODY = urlencode(
    {"grant_type": "client_credentials", "scope": "read", "resource": RESOURCE}
)


@dataclass(frozen=True)
class Load:
    seconds: int
    core: int


def run_wrk(
    script: str, url: str, load: Load, env: dict[str, str], pid: int, threads: int = 1
) -> dict[str, Any]:
    """wrk's figures plus `server_cpu_s`, the CPU time the server process `pid` used."""
    command = [
        "taskset",
        "-c",
        str(load.core),
        "wrk",
        f"-t{threads}",
        f"-c{CONNECTIONS}",
        f"-d{load.seconds}s",
        "--timeout=5s",
        "-s",
        str(BENCH / script),
        url,
    ]
    cpu_before = cpu_seconds(pid)
    done = subprocess.run(
        command,
        env={**os.environ, "WRK_LIB": str(BENCH), **env},
        capture_output=True,
        text=True,
        timeout=load.seconds + 60,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            result["server_cpu_s"] = cpu_seconds(pid) - cpu_before
            return result
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr[-1000:]}")


def _figures(raw: dict[str, Any], p50_key: str = "p50_us", p99_key: str = "p99_us") -> dict:
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in raw if k.startswith("errors_")) + raw.get("flow_errors", 0)
    cpu = max(raw["server_cpu_s"], 1e-3)
    return {
        "rps": round(raw["completed"] / seconds, 1),
        "p50_ms": round(raw[p50_key] / 1000, 2),
        "p99_ms": round(raw[p99_key] / 1000, 2),
        # Share of the server core the server process got (1.0 = all of it): much
        # lower means other processes took the core, or the server waited (PostgreSQL).
        "server_cpu_share": round(cpu / seconds, 3),
        "per_server_cpu_second": round(raw["completed"] / cpu, 1),
        "completed": int(raw["completed"]),
        "errors": int(errors),
    }


def client_credentials(url: str, client: ClientCredentials, load: Load, pid: int) -> dict[str, Any]:
    env = {"WRK_BODY": CLIENT_CREDENTIALS_BODY, "WRK_AUTH": client.basic}
    return _figures(run_wrk("wrk_post.lua", url + "/token", load, env, pid))


def token_exchange(
    url: str, client: ClientCredentials, body: str, load: Load, pid: int
) -> dict[str, Any]:
    env = {"WRK_BODY": body, "WRK_AUTH": client.basic}
    return _figures(run_wrk("wrk_post.lua", url + "/token", load, env, pid))


def refresh(
    url: str, client: ClientCredentials, tokens: Path, load: Load, pid: int
) -> dict[str, Any]:
    env = {"WRK_TOKENS": str(tokens), "WRK_AUTH": client.basic}
    raw = run_wrk("wrk_refresh.lua", url + "/token", load, env, pid)
    figures = _figures(raw)
    if raw["exhausted"]:
        raise RuntimeError("the refresh-token pool ran out; the pool sizing is wrong")
    return figures


def code_flow(
    url: str,
    client: ClientCredentials,
    authorize_path: str,
    cookie: str,
    token_body: str,
    load: Load,
    pid: int,
) -> dict[str, Any]:
    env = {
        "WRK_AUTHORIZE_PATH": authorize_path,
        "WRK_COOKIE": cookie,
        "WRK_TOKEN_BODY": token_body,
        "WRK_AUTH": client.basic,
    }
    raw = run_wrk("wrk_code_flow.lua", url, load, env, pid, threads=CONNECTIONS)
    figures = _figures(raw, "flow_p50_us", "flow_p99_us")
    figures["http_requests_per_s"] = round(raw["requests"] / (raw["duration_us"] / 1e6), 1)
    return figures
