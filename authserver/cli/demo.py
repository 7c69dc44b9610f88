"""`authserver demo`: seed the embedded database, start the services, run the agent.

`--seed-only --json` prints what was seeded (for scripts and tests) and exits;
`--tour` runs the whole scenario unattended and prints every exchange for learners.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from ..db import transaction
from ..demo_services import DemoUrls, demo_services, running
from ..settings import PREFIX
from .common import emit, load_runtime
from .setup import generate_dev_secrets, prepare_database


def _client(data: dict[str, Any], client_id: str) -> dict[str, Any]:
    return next(c for c in data["clients"] if c["client_id"] == client_id)


def _print_welcome(data: dict[str, Any], urls: DemoUrls, logs: Path) -> None:
    issuer = data["issuer"]
    click.echo(f"\nThe demo is running (logs in {logs}):")
    click.echo(f"  authserver  {issuer}   sign in at {issuer}/login")
    click.echo(f"  approvals   {issuer}/approvals   (approve the agent's trades here)")
    click.echo(f"  connections {issuer}/account/connections")
    click.echo(f"  broker API  {urls.broker}")
    click.echo(f"  calendar    {urls.calendar}   (a stand-in for Google Calendar)")
    for user in data["users"]:
        click.echo(f"  demo user   {user['username']} / {user['password']}")
    for connection in data["connections"]:
        for user in connection["provider_users"]:
            click.echo(f"  {connection['name']} user {user['username']} / {user['password']}")
    click.echo("Press Ctrl-C to stop everything.\n")


def _agent_env(data: dict[str, Any], urls: DemoUrls) -> dict[str, str]:
    agent = _client(data, "demo-agent")
    return {
        **os.environ,
        "DEMO_ISSUER": data["issuer"],
        "DEMO_AGENT_CLIENT_ID": agent["client_id"],
        "DEMO_AGENT_CLIENT_SECRET": agent["client_secret"],
        "DEMO_AGENT_REDIRECT_URI": agent["redirect_uris"][0],
        "DEMO_BROKER_URL": urls.broker,
        "DEMO_CALENDAR_URL": urls.calendar,
    }


def _tour_env(data: dict[str, Any], urls: DemoUrls) -> dict[str, str]:
    """The agent's settings plus the demo accounts the tour's simulated user signs in with."""
    user = data["users"][0]
    calendar_user = data["connections"][0]["provider_users"][0]
    return {
        **_agent_env(data, urls),
        "DEMO_TOUR_USERNAME": user["username"],
        "DEMO_TOUR_PASSWORD": user["password"],
        "DEMO_TOUR_CALENDAR_USERNAME": calendar_user["username"],
        "DEMO_TOUR_CALENDAR_PASSWORD": calendar_user["password"],
    }


def _run_foreground(module: str, env: dict[str, str]) -> int:
    """The agent (or tour) in the foreground with the terminal; Ctrl-C ends the demo."""
    try:
        return subprocess.call([sys.executable, "-m", module], env=env)  # noqa: S603
    except KeyboardInterrupt:
        return 130


def _wait_forever() -> None:
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("--seed-only", is_flag=True, help="Seed the demo data and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --seed-only: print the seed as JSON.")
@click.option("--tour", is_flag=True, help="Run every flow unattended, printing each exchange.")
@click.option("--no-agent", is_flag=True, help="Start the services only.")
@click.option("--port", default=None, type=int, help="Authserver port (default 8000).")
def demo(seed_only: bool, as_json: bool, tour: bool, no_agent: bool, port: int | None) -> None:
    """Seed demo users, clients, the broker and the calendar connection; run everything."""
    if port is not None and not os.environ.get(PREFIX + "ISSUER"):
        os.environ[PREFIX + "ISSUER"] = f"http://127.0.0.1:{port}"
    generate_dev_secrets()
    runtime = load_runtime()
    if runtime.settings.is_production:
        raise click.ClickException("the demo seeds known passwords; it refuses production mode")
    prepare_database(runtime)
    from ..demo import seed

    with transaction(runtime.session_factory) as session:
        data = seed(session, runtime)
    if seed_only:
        emit(data, as_json)
        return
    from demo_agent.calendar.config import DEV_CLIENT_SECRET

    # SIGTERM (a process manager, `timeout`) must stop the children too, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    urls = DemoUrls.from_environment(data["issuer"])
    instance = runtime.settings.instance_path.resolve()
    logs = instance / "demo-logs"
    with running(demo_services(urls, instance, DEV_CLIENT_SECRET), logs):
        _print_welcome(data, urls, logs)
        if tour:
            raise SystemExit(_run_foreground("demo_agent.tour", _tour_env(data, urls)))
        if no_agent:
            _wait_forever()
        else:
            _run_foreground("demo_agent", _agent_env(data, urls))
