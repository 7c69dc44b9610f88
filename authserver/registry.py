"""A short-lived read-through cache of client and resource-server registrations.

Every token request reads its client (RFC 6749 §2.3 authentication) and usually a
resource server (RFC 8707); registrations change rarely, so each process keeps
immutable snapshots of the rows it read for `AUTHSERVER_CLIENT_CACHE_TTL` seconds
(default 5; 0 turns the cache off). Snapshots are frozen dataclasses of plain
values, never ORM objects, so no request can change what another one sees and
nothing is bound to a session.

Staleness bound, and why it is safe:

- In this process, any write to the `clients` or `resource_servers` tables through
  SQLAlchemy (the admin functions, the CLI, `authserver demo`, a test's bulk
  delete, even a `text()` statement) drops every snapshot at once, again when the
  writing connection goes back to the pool (after its COMMIT or ROLLBACK), and a
  lookup that raced with such a write never stores what it read (generation check).
- In other processes and nodes nothing is told: a change made elsewhere is seen
  at the latest `ttl` seconds later. A deleted or narrowed client keeps working
  there for at most `ttl` seconds, as it would for a request that had just read
  the row. Missing rows are never cached, so a new client or resource works at
  once everywhere, and a refused client secret is always checked again against
  the database (`OAuthClient.check_client_secret`), so a rotated secret works at
  once everywhere; only the old secret can outlive the rotation, by `ttl` at most.
- The cached secret is the stored SHA-256 digest, compared in constant time as before.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from .models import Client, ResourceServer

# A statement naming one of these tables (as a whole word: `allowed_clients` does not
# count) that is not a SELECT may change a registration.
_WATCHED = re.compile(r"\b(?:clients|resource_servers)\b", re.IGNORECASE)
_DIRTY = "authserver_registry_dirty"
MAX_ENTRIES = 10_000  # more registrations than this are read from the database again

_lock = threading.Lock()
_generation = 0


def invalidate() -> None:
    """Drop every snapshot in this process (all registries: they share one generation)."""
    global _generation
    with _lock:
        _generation += 1


def _watch_statement(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if _WATCHED.search(statement) and statement.lstrip()[:6].upper() != "SELECT":
        conn.info[_DIRTY] = True
        invalidate()


def _after_transaction(_dbapi_connection: Any, record: Any) -> None:
    # Checkin follows the COMMIT or ROLLBACK: a lookup that ran between the write and the
    # commit read the old row; its snapshot is dropped here.
    if record is not None and record.info.pop(_DIRTY, False):
        invalidate()


# Every engine and pool in the process, including ones made after this import.
event.listen(Engine, "before_cursor_execute", _watch_statement)
event.listen(Pool, "checkin", _after_transaction)


@dataclass(frozen=True)
class ClientSnapshot:
    """A `Client` row's values at one moment (the attributes the protocol code reads)."""

    client_id: str
    client_name: str
    secret_hash: str | None
    token_endpoint_auth_method: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    scope: str
    id_token_signed_response_alg: str
    skip_consent: bool
    may_delegate: bool
    allowed_audiences: tuple[str, ...]
    backchannel_token_delivery_mode: str | None
    backchannel_client_notification_endpoint: str | None
    allowed_scopes: frozenset[str]
    self_registered: bool
    require_pushed_authorization_requests: bool

    @classmethod
    def of(cls, row: Client) -> ClientSnapshot:
        return cls(
            client_id=row.client_id,
            client_name=row.client_name,
            secret_hash=row.secret_hash,
            token_endpoint_auth_method=row.token_endpoint_auth_method,
            redirect_uris=tuple(row.redirect_uris or ()),
            post_logout_redirect_uris=tuple(row.post_logout_redirect_uris or ()),
            grant_types=tuple(row.grant_types or ()),
            response_types=tuple(row.response_types or ()),
            scope=row.scope,
            id_token_signed_response_alg=row.id_token_signed_response_alg,
            skip_consent=bool(row.skip_consent),
            may_delegate=bool(row.may_delegate),
            allowed_audiences=tuple(row.allowed_audiences or ()),
            backchannel_token_delivery_mode=row.backchannel_token_delivery_mode,
            backchannel_client_notification_endpoint=row.backchannel_client_notification_endpoint,
            allowed_scopes=frozenset(row.allowed_scopes),
            self_registered=bool(row.self_registered),
            require_pushed_authorization_requests=bool(row.require_pushed_authorization_requests),
        )

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"  # noqa: S105 (a method name)


@dataclass(frozen=True)
class ResourceSnapshot:
    """A `ResourceServer` row's values at one moment."""

    id: str
    identifier: str
    name: str
    scopes: tuple[str, ...]
    client_id: str | None

    @classmethod
    def of(cls, row: ResourceServer) -> ResourceSnapshot:
        return cls(row.id, row.identifier, row.name, tuple(row.scopes or ()), row.client_id)


# Opens a session for one lookup and closes it (a cache miss reads, a hit opens nothing).
Reading = Callable[[], AbstractContextManager[Session]]


def _load_client(session: Session, client_id: str) -> ClientSnapshot | None:
    row = session.get(Client, client_id)
    return ClientSnapshot.of(row) if row is not None else None


def _load_resource(session: Session, identifier: str) -> ResourceSnapshot | None:
    row = session.scalar(select(ResourceServer).where(ResourceServer.identifier == identifier))
    return ResourceSnapshot.of(row) if row is not None else None


def _load(reading: Reading, loader: Callable[[Session, str], Any], key: str) -> Any:
    with reading() as session:
        return loader(session, key)


class Registry:
    """Client and resource-server snapshots by key, each valid for `ttl` seconds."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._clients: dict[str, tuple[int, float, ClientSnapshot]] = {}
        self._resources: dict[str, tuple[int, float, ResourceSnapshot]] = {}

    def client(self, reading: Reading, client_id: str) -> ClientSnapshot | None:
        return self._read(self._clients, client_id, lambda: _load(reading, _load_client, client_id))

    def fresh_client(self, reading: Reading, client_id: str) -> ClientSnapshot | None:
        """The row as the database has it now (the snapshot is replaced)."""
        self._clients.pop(client_id, None)
        return self.client(reading, client_id)

    def resource(self, reading: Reading, identifier: str) -> ResourceSnapshot | None:
        return self._read(
            self._resources, identifier, lambda: _load(reading, _load_resource, identifier)
        )

    def _read(self, cache: dict[str, Any], key: str, load: Callable[[], Any]) -> Any:
        entry = cache.get(key)
        if entry is not None and entry[0] == _generation and self._clock() < entry[1]:
            return entry[2]
        generation = _generation  # before reading, so a write during the read is noticed
        value = load()
        if value is None or self._ttl <= 0:
            return value  # absent rows are not cached: a new registration works at once
        with _lock:
            if generation == _generation:
                if len(cache) >= MAX_ENTRIES:
                    cache.clear()
                cache[key] = (generation, self._clock() + self._ttl, value)
        return value
