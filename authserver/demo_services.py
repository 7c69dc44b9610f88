"""Running the demo's services as child processes: authserver, broker, calendar provider.

Each is started with its own command line, waited for on a health URL, and
stopped cleanly (SIGINT, then SIGTERM, then SIGKILL) when the demo ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0


@dataclass
class Service:
    name: str
    command: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


@dataclass(frozen=True)
class DemoUrls:
    issuer: str
    broker: str
    calendar: str

    @classmethod
    def from_environment(cls, issuer: str) -> DemoUrls:
        return cls(
            issuer=issuer,
            broker=os.environ.get("DEMO_BROKER_URL", "http://127.0.0.1:8001").rstrip("/"),
            calendar=os.environ.get("DEMO_CALENDAR_URL", "http://127.0.0.1:8002").rstrip("/"),
        )


def _port(url: str) -> str:
    return str(urlsplit(url).port or 80)


def demo_services(urls: DemoUrls, instance: Path, calendar_secret: str) -> list[Service]:
    python = sys.executable
    calendar_clients = [
        {
            "client_id": "authserver-vault",
            "client_secret": calendar_secret,
            "redirect_uris": [f"{urls.issuer}/connections/calendar/callback"],
        }
    ]
    return [
        Service(
            "authserver",
            [python, "-m", "authserver.cli.entry", "run", "--port", _port(urls.issuer)],
            f"{urls.issuer}/.well-known/openid-configuration",
        ),
        Service(
            "broker",
            [
                python,
                "-m",
                "demo_agent.broker",
                "--port",
                _port(urls.broker),
                "--issuer",
                urls.issuer,
                "--audience",
                urls.broker,
                "--database",
                f"sqlite:///{instance / 'broker.db'}",
            ],
            f"{urls.broker}/quotes/NET",
        ),
        Service(
            "calendar",
            [
                python,
                "-m",
                "demo_agent.calendar",
                "--port",
                _port(urls.calendar),
                "--issuer",
                urls.calendar,
                "--database",
                f"sqlite:///{instance / 'calendar.db'}",
            ],
            f"{urls.calendar}/.well-known/oauth-authorization-server",
            env={"CALENDAR_CLIENTS": json.dumps(calendar_clients)},
        ),
    ]


def _wait_until_up(service: Service, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service.process is not None and service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited early (code {service.process.returncode})")
        try:
            if requests.get(service.health_url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{service.name} did not answer at {service.health_url}")


def _stop(service: Service) -> None:
    process = service.process
    if process is None or process.poll() is not None:
        return
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_SECONDS / 2)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running(services: list[Service], log_dir: Path) -> Iterator[list[Service]]:
    """Start every service (logs under `log_dir`), yield when all answer, stop them all after."""
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        for service in services:
            log = (log_dir / f"{service.name}.log").open("ab")
            service.process = subprocess.Popen(  # noqa: S603 (our own interpreter and modules)
                service.command,
                env={**os.environ, **service.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        for service in services:
            _wait_until_up(service)
        yield services
    finally:
        for service in reversed(services):
            _stop(service)
