"""Registrations read through the per-process cache (authserver/registry.py) stay correct.

RFC 6749 §2.3.1: the server authenticates the client with the credentials it holds
*now*. A change made in this process (the admin functions, `authserver demo`'s
re-seeding, any write to the tables) is seen by the next request; a change made by
another process or node (simulated here by SQL that bypasses this process's
SQLAlchemy) is seen within `AUTHSERVER_CLIENT_CACHE_TTL` seconds, measured with an
injected clock. A new secret works at once everywhere; a refusal is never served
from the cache.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from authserver.credentials import digest
from authserver.db import transaction
from authserver.models import Client, ResourceServer
from authserver.registry import Registry
from tests.support.factories import ClientInfo, make_machine_client, make_resource
from tests.support.oauth import token_error

API = "https://api.example.com"
TTL = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(runtime, monkeypatch):
    """The app's registry, rebuilt with a clock the test moves by hand."""
    fake = FakeClock()
    monkeypatch.setattr(runtime, "registry", Registry(TTL, clock=fake))
    return fake


@pytest.fixture
def api(app):
    return make_resource(app, API, scopes=("read", "write"))


@pytest.fixture
def service(app, api, clock):
    return make_machine_client(app, "batch-job", "read write", [API])


def grant(client, rp: ClientInfo, secret: str | None = None, **extra):
    auth = (rp.client_id, secret if secret is not None else rp.client_secret or "")
    data = {"grant_type": "client_credentials", "resource": API, **extra}
    return client.post("/token", data=data, auth=auth)


def elsewhere(engine, sql: str) -> None:
    """A write by another process: straight to the driver, unseen by this process's SQLAlchemy."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(sql)
        cursor.close()
        raw.commit()
    finally:
        raw.close()


def set_secret_here(app, client_id: str, secret: str) -> None:
    """As `authserver demo` re-seeding does: the ORM row's digest replaced in this process."""
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.get(Client, client_id).secret_hash = digest(secret)


def test_client_deleted_in_this_process_stops_at_once(app, client, service):
    """§2.3.1: a client that no longer exists cannot authenticate, even one just cached."""
    assert grant(client, service).status_code == 200
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.delete(session.get(Client, service.client_id))
    response = grant(client, service)
    assert response.status_code == 401
    token_error(response, "invalid_client", 401)


def test_client_removed_by_bulk_delete_in_this_process_stops_at_once(app, client, service):
    """A Core DELETE (no ORM events) in this process is seen by the next request too."""
    assert grant(client, service).status_code == 200
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(delete(Client).where(Client.client_id == service.client_id))
    token_error(grant(client, service), "invalid_client", 401)


def test_secret_rotated_in_this_process_old_refused_new_accepted(app, client, service):
    """§2.3.1: after a rotation here, the old secret is refused by the very next request."""
    assert grant(client, service).status_code == 200
    set_secret_here(app, service.client_id, "a-new-secret-for-batch-job-0123456789")
    token_error(grant(client, service), "invalid_client", 401)
    renewed = grant(client, service, secret="a-new-secret-for-batch-job-0123456789")
    assert renewed.status_code == 200, renewed.get_json()


def test_secret_rotated_elsewhere_new_secret_works_at_once(client, engine, service, clock):
    """A refusal is never based on a cached row: the new secret works without waiting."""
    assert grant(client, service).status_code == 200
    new = "rotated-by-another-node-0123456789abcdef"
    elsewhere(
        engine,
        f"UPDATE clients SET secret_hash = '{digest(new)}' "  # noqa: S608 (test constants)
        f"WHERE client_id = '{service.client_id}'",
    )
    assert grant(client, service, secret=new).status_code == 200
    # The refusal re-read the row: the old secret no longer matches in this process.
    token_error(grant(client, service), "invalid_client", 401)


def test_secret_rotated_elsewhere_old_secret_stops_within_the_ttl(client, engine, service, clock):
    """The staleness bound: another node's rotation reaches this process within the TTL."""
    assert grant(client, service).status_code == 200
    elsewhere(
        engine,
        f"UPDATE clients SET secret_hash = '{digest('x' * 43)}' "  # noqa: S608 (test constants)
        f"WHERE client_id = '{service.client_id}'",
    )
    clock.now += TTL - 0.5
    assert grant(client, service).status_code == 200  # the cached row, still within the TTL
    clock.now += 0.5
    token_error(grant(client, service), "invalid_client", 401)


def test_client_deleted_elsewhere_stops_within_the_ttl(client, engine, service, clock):
    """A client deleted by another process stops authenticating once the TTL has passed."""
    assert grant(client, service).status_code == 200
    elsewhere(engine, f"DELETE FROM clients WHERE client_id = '{service.client_id}'")  # noqa: S608
    clock.now += TTL
    response = grant(client, service)
    assert response.status_code == 401
    token_error(response, "invalid_client", 401)


def test_scope_narrowed_elsewhere_is_enforced_within_the_ttl(client, engine, service, clock):
    """§3.3: a client whose allowed scopes were narrowed elsewhere gets invalid_scope after
    the TTL (before it, the cached registration still allows what it allowed a moment ago)."""
    assert grant(client, service, scope="write").status_code == 200
    elsewhere(
        engine,
        f"UPDATE clients SET scope = 'read' WHERE client_id = '{service.client_id}'",  # noqa: S608
    )
    clock.now += TTL
    token_error(grant(client, service, scope="write"), "invalid_scope")


def test_new_client_and_resource_work_at_once(app, client, clock):
    """Absent rows are never cached: a registration made after a miss works immediately."""
    later = ClientInfo("late-job", "not-yet-registered-secret", "")
    token_error(grant(client, later), "invalid_client", 401)
    make_resource(app, API, scopes=("read",))
    created = make_machine_client(app, "late-job", "read", [API])
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.execute(delete(ResourceServer).where(ResourceServer.identifier == API))
    token_error(grant(client, created), "invalid_target")
    make_resource(app, API, scopes=("read",))
    assert grant(client, created).status_code == 200


def test_resource_deleted_elsewhere_is_refused_within_the_ttl(client, engine, service, clock):
    """RFC 8707 §2: a resource that is no longer registered is invalid_target (after the TTL
    when another process removed it)."""
    assert grant(client, service).status_code == 200
    elsewhere(engine, f"DELETE FROM resource_servers WHERE identifier = '{API}'")  # noqa: S608
    clock.now += TTL
    token_error(grant(client, service), "invalid_target")


def test_resource_deleted_in_this_process_is_refused_at_once(app, client, service):
    assert grant(client, service).status_code == 200
    with transaction(app.extensions["authserver"].session_factory) as session:
        session.delete(
            session.scalar(select(ResourceServer).where(ResourceServer.identifier == API))
        )
    token_error(grant(client, service), "invalid_target")


def test_ttl_zero_reads_every_request(client, engine, service, runtime, monkeypatch):
    """AUTHSERVER_CLIENT_CACHE_TTL=0: another process's deletion is seen by the next request."""
    monkeypatch.setattr(runtime, "registry", Registry(0))
    assert grant(client, service).status_code == 200
    elsewhere(engine, f"DELETE FROM clients WHERE client_id = '{service.client_id}'")  # noqa: S608
    token_error(grant(client, service), "invalid_client", 401)
