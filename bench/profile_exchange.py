"""Where an RFC 8693 token exchange spends its time (the figures in bench/README.md).

    .venv/bin/python bench/profile_exchange.py [--postgres URL] [--requests N]

The WSGI app is called in-process, pinned to one core, with the request `make bench`
sends in its `token_exchange` scenario (the user's access token as subject, the agent's
own token as actor, the resource as audience, Basic auth). Prints wall and CPU µs per
request, then the same requests under cProfile: inclusive time of the steps (cProfile
inflates call-heavy Python code, so read the shares, not the absolute µs).

The subject and actor tokens are minted over HTTP by a gunicorn started for that on the
other core; it is idle while the app is measured. Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/profile_exchange.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fixtures, servers  # noqa: E402
from bench.harness import Cleanup, log, pick_cores  # noqa: E402
from bench.profile_parts import app_for, environ_for, rounds_then_profile  # noqa: E402

# (label, file fragment, function): inclusive time of each under cProfile.
STEPS = [
    ("whole WSGI request", "flask/app.py", "wsgi_app"),
    (
        "validate_token_request (both tokens, policy)",
        "grants/token_exchange.py",
        "validate_token_request",
    ),
    ("reading the two presented tokens", "grants/token_exchange.py", "_read_presented_tokens"),
    (
        "· verify ×2 (a memo hit after the first request: key, typ, expiry)",
        "authserver/tokens.py",
        "verify",
    ),
    (
        "· find_access_tokens (both verifications + one SELECT of records and grants)",
        "endpoints/lookup.py",
        "find_access_tokens",
    ),
    ("create_token_response (mint + record)", "grants/token_exchange.py", "create_token_response"),
    ("commit (audit rows + COMMIT)", "web/context.py", "commit"),
    ("before_request hooks", "flask/app.py", "preprocess_request"),
]


def _exchange_environ(server: servers.AuthServer) -> dict[str, Any]:
    assert server.agent_client is not None
    body = fixtures.exchange_body(server).encode("ascii")
    template = environ_for(server)
    template.update(
        HTTP_AUTHORIZATION="Basic " + server.agent_client.basic,
        CONTENT_LENGTH=str(len(body)),
        _body=body,
    )
    return template


def measure(server: servers.AuthServer, requests: int, cleanup: Cleanup) -> dict[str, Any]:
    template = _exchange_environ(server)
    app = app_for(server, cleanup)
    walls, cpus, profile = rounds_then_profile(app, template, requests, warm=200)
    stats = profile.stats  # type: ignore[attr-defined]
    steps = dict.fromkeys((label for label, _, _ in STEPS), 0.0)
    for (filename, _line, function), (_cc, _nc, _tottime, cumtime, _callers) in stats.items():
        for label, fragment, name in STEPS:
            if function == name and filename.endswith(fragment):
                steps[label] += cumtime
    return {
        "wall_us_per_request": round(statistics.median(walls), 1),
        "cpu_us_per_request": round(statistics.median(cpus), 1),
        "cpu_us_per_request_rounds": [round(c, 1) for c in cpus],
        "profiled_inclusive_us_by_step": {
            label: round(value / requests * 1e6, 1) for label, value in steps.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", metavar="URL", help="profile on a scratch PostgreSQL DB")
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    server_core, other_core = pick_cores()
    try:
        with Cleanup() as cleanup:
            server = servers.prepared(cleanup, "authserver-profile-exchange-", args.postgres)
            servers.start(server, cleanup, other_core)  # mints the two tokens, then idles
            os.sched_setaffinity(0, {server_core})
            log(f"in-process: {args.requests} token exchanges, then again under cProfile")
            result = {
                "database": "postgresql" if args.postgres else "sqlite",
                "sqlite_synchronous": server.env.get("AUTHSERVER_SQLITE_SYNCHRONOUS", "FULL"),
                "token_exchange": measure(server, args.requests, cleanup),
            }
    except KeyboardInterrupt:
        return 130
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
