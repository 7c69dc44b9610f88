"""Sign-in throttling with the `limits` library.

Counters must be shared by every worker and node: Redis when
`AUTHSERVER_REDIS_URL` is set, otherwise a table in the main database through a
small `limits` storage adapter (the fixed-window algorithm stays the library's).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .models import RateLimitCounter


class DatabaseStorage(Storage):
    """`limits` storage on the `rate_limit_counters` table, inside the caller's transaction."""

    STORAGE_SCHEME = ["authserver-db"]

    def __init__(self, session_provider: Callable[[], Session]) -> None:
        super().__init__()
        self._session = session_provider

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        session = self._session()
        moment = time.time()
        table = RateLimitCounter.__table__
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        expired = table.c.expires_at <= moment
        # A refund (amount -1) for a window that has ended starts the new one at 0, not -1:
        # a negative count would be an extra attempt in the next window.
        fresh = max(amount, 0)
        statement = insert(table).values(key=key, count=fresh, expires_at=moment + expiry)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((expired, fresh), else_=table.c.count + amount),
                "expires_at": case((expired, moment + expiry), else_=table.c.expires_at),
            },
        )
        session.execute(statement)
        return self.get(key)

    def _live_row(self, key: str) -> RateLimitCounter | None:
        row = self._session().get(RateLimitCounter, key, populate_existing=True)
        return row if row is not None and row.expires_at > time.time() else None

    def get(self, key: str) -> int:
        row = self._live_row(key)
        return row.count if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._live_row(key)
        return row.expires_at if row else time.time()

    def check(self) -> bool:
        self._session().execute(select(1))
        return True

    def reset(self) -> int | None:
        self._session().execute(delete(RateLimitCounter))
        return None

    def clear(self, key: str) -> None:
        self._session().execute(delete(RateLimitCounter).where(RateLimitCounter.key == key))


# `limits` has no "give one back while the window lasts": its Redis increment creates the
# key when the window has ended, so a refund there would open the next window at -1. This
# decrements only a live, positive counter, in one step on the server (the key keeps its
# expiry).
_REDIS_REFUND = b"""
local count = tonumber(redis.call('get', KEYS[1]) or '0')
if count > 0 then return redis.call('decr', KEYS[1]) end
return count
"""


class LoginThrottle:
    """Failed sign-ins counted per username and per client address (an IPv6 address for
    its /64: one host is usually given a whole /64, and could spray from all of it)."""

    def __init__(self, storage: Storage, rate: str) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._rate: RateLimitItem = parse(rate)
        self._redis = storage if isinstance(storage, RedisStorage) else None
        self._redis_refund = (
            self._redis.get_connection().register_script(_REDIS_REFUND) if self._redis else None
        )

    def _keys(self, username: str, address: str) -> list[tuple[str, str]]:
        return [("login-user", username.strip().lower()), ("login-addr", _network(address))]

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until another attempt is allowed, or None when one is allowed now."""
        waits = [
            self._limiter.get_window_stats(self._rate, *key).reset_time - time.time()
            for key in self._keys(username, address)
            if not self._limiter.test(self._rate, *key)
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    def reserve(self, username: str, address: str) -> int | None:
        """Count this attempt before the password is checked; Retry-After when over the limit.

        The count is the storage's atomic increment, so parallel guesses cannot all pass a
        check made before any of them is counted (a check-then-count race on PostgreSQL and
        Redis). An attempt that turns out right is given back with `release`.
        """
        refused = [key for key in self._keys(username, address) if not self._hit(key, 1)]
        if not refused:
            return None
        for key in self._keys(username, address):
            self._refund(key)  # a refused request is no attempt: it must not extend the count
        return self.retry_after(username, address) or 1

    def release(self, username: str, address: str) -> None:
        """The reserved attempt succeeded: only failures count."""
        for key in self._keys(username, address):
            self._refund(key)

    def _refund(self, key: tuple[str, str]) -> None:
        # Only while the window that counted the attempt is still open. Redis: one atomic
        # script; the database storage clamps in its own atomic upsert; other storages (the
        # tests' memory) check first.
        counter = self._rate.key_for(*key)
        if self._redis is not None and self._redis_refund is not None:
            self._redis_refund(keys=[self._redis.prefixed_key(counter)])
        elif self._limiter.storage.get(counter) > 0:
            self._hit(key, -1)

    def _hit(self, key: tuple[str, str], cost: int) -> bool:
        return self._limiter.hit(self._rate, *key, cost=cost)


@dataclass(frozen=True)
class Throttled:
    retry_after: int  # seconds, for the Retry-After header
    first: bool  # the first attempt refused in this window (the one worth an audit row)


class RegistrationThrottle:
    """Dynamic client registrations (RFC 7591) counted per client address, each attempt
    whatever its outcome: open registration must not let one address fill the database.
    An IPv6 address counts for its /64, which one host usually has whole. A second limit
    counts every address together: someone with many addresses (a /48 holds 65,536 /64s)
    gets no further than that."""

    def __init__(self, storage: Storage, rate: str, global_rate: str) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._rate: RateLimitItem = parse(rate)
        self._global_rate: RateLimitItem = parse(global_rate)

    def reserve(self, address: str) -> Throttled | None:
        """Count this attempt; how long to wait when it is over a limit."""
        key = ("register-addr", _network(address))
        throttled = _count(self._limiter, self._rate, key)
        return throttled or _count(self._limiter, self._global_rate, ("register-all",))


class PushThrottle:
    """Pushed authorization requests (RFC 9126) that no client secret vouches for: a public
    client pushes with its client_id alone, so anyone can push in its name. Counted per
    address (an IPv6 address for its /64), each attempt whatever its outcome."""

    def __init__(self, storage: Storage, rate: str) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._rate: RateLimitItem = parse(rate)

    def reserve(self, address: str) -> Throttled | None:
        return _count(self._limiter, self._rate, ("par-addr", _network(address)))


def _count(
    limiter: FixedWindowRateLimiter, rate: RateLimitItem, key: tuple[str, ...]
) -> Throttled | None:
    """Count one attempt under `key`; None while within `rate`, else how long to wait."""
    if limiter.hit(rate, *key):
        return None
    stats = limiter.get_window_stats(rate, *key)
    count = limiter.storage.get(rate.key_for(*key))
    return Throttled(
        retry_after=max(1, math.ceil(stats.reset_time - time.time())),
        first=count == rate.amount + 1,
    )


# RFC 6052's well-known prefix: a NAT64 gateway shows every IPv4 client inside it.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _network(address: str) -> str:
    """The counted unit: an IPv4 address, or an IPv6 address's /64. An IPv4 client seen as
    IPv6 (IPv4-mapped ::ffff:a.b.c.d from a dual-stack socket, or 64:ff9b::a.b.c.d behind
    NAT64) is counted as its IPv4 address, not with every other one in a shared /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed in NAT64:
        return str(ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF))
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def make_storage(redis_url: str, session_provider: Callable[[], Session]) -> Storage:
    if redis_url:
        return storage_from_string(redis_url)
    return DatabaseStorage(session_provider)
