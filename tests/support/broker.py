"""The mock broker served on a loopback port, trusting a live authserver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from demo_agent.broker import create_app


@dataclass
class LiveBroker:
    app: Flask
    url: str

    def reads(self) -> list[Any]:
        from demo_agent.broker.models import Read

        with self.app.extensions["broker"].ledger.transaction() as session:
            return list(session.scalars(select(Read).order_by(Read.id)))


@contextmanager
def live_broker(issuer: str, directory: Path) -> Iterator[LiveBroker]:
    """The broker on a free port; its audience is its own URL, as the demo registers it."""
    holder: dict[str, Any] = {}
    server = make_server(
        "127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True
    )
    url = f"http://127.0.0.1:{server.server_port}"
    app = create_app(
        {
            "BROKER_ISSUER": issuer,
            "BROKER_AUDIENCE": url,
            "BROKER_DATABASE_URL": f"sqlite:///{directory / 'broker.db'}",
            "BROKER_JWKS_REFETCH_INTERVAL": 0,
        }
    )
    holder["app"] = app
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield LiveBroker(app, url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
