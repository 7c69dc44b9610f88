"""The parts of a client-credentials grant, measured alone, and whole requests in-process.
Used by bench/profile_cc.py and bench/profile_exchange.py.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import secrets
import statistics
import sys
import time
from typing import Any

from . import loadgen, servers


def environ_for(server: servers.AuthServer) -> dict[str, Any]:
    assert server.machine_client is not None
    body = loadgen.CLIENT_CREDENTIALS_BODY.encode("ascii")
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/token",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(server.port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": f"127.0.0.1:{server.port}",
        "HTTP_AUTHORIZATION": "Basic " + server.machine_client.basic,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.errors": sys.stderr,
        "_body": body,
    }


def call(app: Any, template: dict[str, Any]) -> None:
    environ = dict(template)
    environ["wsgi.input"] = io.BytesIO(environ.pop("_body"))
    status: list[str] = []
    chunks = app(environ, lambda s, h, e=None: status.append(s))
    b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"token request failed: {status}")


def app_for(server: servers.AuthServer, cleanup: Any) -> Any:
    """The Flask app in this process, configured like `server` (stopped by `cleanup`)."""
    os.environ.update({k: v for k, v in server.env.items() if k.startswith("AUTHSERVER_")})
    from authserver import create_app

    app = create_app()
    runtime = app.extensions["authserver"]
    cleanup.push("in-process app", lambda: (runtime.linker.stop(), runtime.engine.dispose()))
    return app


def rounds_then_profile(
    app: Any, template: dict[str, Any], requests: int, warm: int
) -> tuple[list[float], list[float], pstats.Stats]:
    """Wall and CPU µs per request over 5 rounds, then `requests` more under cProfile."""
    for _ in range(warm):  # compiled SQL, keys, audit key, registrations
        call(app, template)
    walls, cpus = [], []
    per_round = requests // 5
    for _ in range(5):
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(per_round):
            call(app, template)
        walls.append((time.perf_counter() - started) / per_round * 1e6)
        cpus.append((time.process_time() - cpu) / per_round * 1e6)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        call(app, template)
    profiler.disable()
    return walls, cpus, pstats.Stats(profiler)


def _timed(functions: dict[str, Any], iterations: int, rounds: int = 7) -> dict[str, Any]:
    """Wall and CPU µs per call, median over rounds. The functions take turns within each
    round, so a machine that gets busier or quieter affects them all alike."""
    for function in functions.values():
        for _ in range(max(iterations // 10, 20)):
            function()
    walls: dict[str, list[float]] = {name: [] for name in functions}
    cpus: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(iterations):
                function()
            walls[name].append((time.perf_counter() - wall) / iterations * 1e6)
            cpus[name].append((time.process_time() - cpu) / iterations * 1e6)
    return {
        name: {
            "wall_us": round(statistics.median(walls[name]), 1),
            "cpu_us": round(statistics.median(cpus[name]), 1),
        }
        for name in functions
    }


def components(server: servers.AuthServer, iterations: int) -> dict[str, Any]:
    """The client-credentials request's parts, each alone, and cheaper ways to do its DB work."""
    from flask import Flask, jsonify
    from sqlalchemy import insert, select

    from authserver import audit
    from authserver.models import AccessTokenRecord, AuditEvent, Client, ResourceServer, now

    runtime = server.runtime
    assert runtime is not None and server.machine_client is not None
    client_id = server.machine_client.client_id
    key = runtime.audit_key
    entry = audit.AuditEntry(
        "token.issued",
        client_id=client_id,
        ip="127.0.0.1",
        details={"grant_type": "client_credentials", "scope": "read", "aud": servers.RESOURCE},
    )
    claims = {"iss": server.url, "sub": client_id, "aud": servers.RESOURCE, "scope": "read"}

    def token_row() -> dict[str, Any]:
        return {"jti": secrets.token_urlsafe(18), "client_id": client_id, "expires_at": now() + 600}

    def orm_db() -> None:
        with runtime.session_factory() as session:
            session.get(Client, client_id)
            session.scalar(
                select(ResourceServer).where(ResourceServer.identifier == servers.RESOURCE)
            )
            session.add(AccessTokenRecord(**token_row()))
            session.add(audit.make_row(key, entry))
            session.commit()

    audit_table, token_table = AuditEvent.__table__, AccessTokenRecord.__table__
    client_query = select(Client.__table__).where(Client.client_id == client_id)
    resource_query = select(ResourceServer.__table__).where(
        ResourceServer.identifier == servers.RESOURCE
    )

    def audit_values() -> dict[str, Any]:
        row = audit.make_row(key, entry)
        return {c.key: getattr(row, c.key) for c in audit_table.columns if c.key != "id"}

    def core_db() -> None:
        with runtime.engine.begin() as connection:
            connection.execute(client_query).first()
            connection.execute(resource_query).first()
            connection.execute(insert(token_table), token_row())
            connection.execute(insert(audit_table), audit_values())

    def core_inserts_only() -> None:
        with runtime.engine.begin() as connection:
            connection.execute(insert(token_table), token_row())
            connection.execute(insert(audit_table), audit_values())

    flask_app = Flask("minimal")

    @flask_app.post("/token")
    def minimal() -> Any:
        return jsonify(access_token="x" * 400, token_type="Bearer", expires_in=600)

    def link_per_row() -> dict[str, float]:
        """The background linker's cost per audit row (batches as at ~1,000 requests/s)."""
        walls, cpus = [], []
        for _ in range(3):
            with runtime.engine.begin() as connection:
                connection.execute(insert(audit_table), [audit_values() for _ in range(1000)])
            wall, cpu = time.perf_counter(), time.process_time()
            linked = max(audit.link_all(runtime.session_factory, key), 1)
            walls.append((time.perf_counter() - wall) / linked * 1e6)
            cpus.append((time.process_time() - cpu) / linked * 1e6)
        return {"wall_us": round(min(walls), 1), "cpu_us": round(min(cpus), 1)}

    def checkout() -> None:
        with runtime.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    template = environ_for(server)
    functions = {
        "jwt_es256_sign (cached key)": lambda: runtime.minter._sign(claims, "ES256", "at+jwt"),
        "audit_make_row (uuid + json + HMAC)": lambda: audit.make_row(key, entry),
        "db_orm (today: get client, select resource, 2 ORM inserts, commit)": orm_db,
        "db_core (same statements, SQLAlchemy Core)": core_db,
        "db_core_inserts_only (client + resource cached)": core_inserts_only,
        "flask_minimal (bare Flask POST route, same WSGI call)": lambda: call(flask_app, template),
    }
    plain = None
    if runtime.engine.dialect.name == "postgresql":
        from sqlalchemy import create_engine

        plain = create_engine(runtime.engine.url, pool_pre_ping=False)

        def checkout_plain() -> None:
            with plain.connect() as connection:
                connection.exec_driver_sql("SELECT 1")

        functions["pool checkout + SELECT 1, pool_pre_ping=True (today)"] = checkout
        functions["pool checkout + SELECT 1, pool_pre_ping=False"] = checkout_plain
    try:
        timed = _timed(functions, iterations)
    finally:
        if plain is not None:
            plain.dispose()
    return {"audit_link_all per row (background thread, same process)": link_per_row(), **timed}
