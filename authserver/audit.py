"""Tamper-evident audit log: one row per security event.

Two MACs (HMAC-SHA256 under a server key sealed by the vault key ring, so a
database-only attacker cannot recompute them):

- `row_mac`, written with the row inside the transaction that did the work, covers
  the row's own fields and a random `event_id`: an edited or forged row fails it.
- `chain_mac`, written later by the linker, chains each row to the previous one in
  link order (`chain_seq`); a deleted row leaves a gap, a reordered row breaks the
  chain, and `audit_head` records the tail so truncation is detected.

Linking after commit, in batches and under a lock, keeps the token endpoint from
serialising on the chain head; several workers and nodes can write at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from vault import KeyRing, associated_data, seal, unseal

from .models import AuditEvent, AuditHead, Client, ServerSecret, User

log = logging.getLogger(__name__)

AUDIT_KEY_NAME = "audit_mac_key"
GENESIS_MAC = "0" * 64
LINK_BATCH = 1000
# Arbitrary constant naming the linker's PostgreSQL advisory lock.
LINKER_LOCK_ID = 0x61756469


@dataclass
class AuditEntry:
    event: str
    outcome: str = "success"
    user_id: str | None = None
    client_id: str | None = None
    actor_chain: list[str] | None = None
    ip: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    kind: str  # "edited", "missing", "chain_broken", "truncated"
    detail: str


class AuditKeyMissing(RuntimeError):
    """The audit key is gone from a database that holds data."""


def load_or_create_audit_key(session: Session, keyring: KeyRing) -> bytes:
    """The audit MAC key; made (with the chain's head) only for a database that holds no
    audit rows, users or clients yet. A key made again for one that does would let anyone
    who can delete rows reset the log to an intact-looking empty chain."""
    aad = associated_data("server_secret", AUDIT_KEY_NAME)
    row = session.get(ServerSecret, AUDIT_KEY_NAME)
    if row is None:
        if _holds_data(session):
            raise AuditKeyMissing(
                "the audit key is missing from a database that holds data: the audit log "
                "cannot be verified or extended (see docs/deploying.md, Audit log)"
            )
        key = secrets.token_bytes(32)
        session.add(ServerSecret(name=AUDIT_KEY_NAME, sealed=seal(keyring, key, aad)))
        start_chain(session, key)
        session.flush()
        return key
    return unseal(keyring, row.sealed, aad)


def _holds_data(session: Session) -> bool:
    return any(
        session.scalar(select(model).limit(1)) is not None
        for model in (AuditEvent, AuditHead, User, Client)
    )


def start_chain(session: Session, key: bytes) -> None:
    """The head of an empty chain, MAC'd, made with the key: from then on a missing head
    means the log was emptied or cut (making one again needs the key)."""
    if session.get(AuditHead, 1) is None:
        session.add(
            AuditHead(
                id=1, chain_seq=0, chain_mac=GENESIS_MAC, head_mac=_head_mac(key, 0, GENESIS_MAC)
            )
        )


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


# The fields `row_mac` covers, in this order.
MAC_FIELDS = (
    "event_id",
    "occurred_at_us",
    "event",
    "outcome",
    "user_id",
    "client_id",
    "actor_chain",
    "ip",
    "details",
)


def _content(values: dict[str, Any]) -> str:
    fields = [values[name] for name in MAC_FIELDS]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _row_content(row: AuditEvent) -> str:
    return _content({name: getattr(row, name) for name in MAC_FIELDS})


def _chain_mac(key: bytes, seq: int, previous: str, row_mac: str) -> str:
    return _mac(key, f"chain:{seq}:{previous}:{row_mac}")


def _head_mac(key: bytes, seq: int, chain_mac: str) -> str:
    return _mac(key, f"head:{seq}:{chain_mac}")


def row_values(key: bytes, entry: AuditEntry, occurred_at_us: int | None = None) -> dict[str, Any]:
    """An unlinked audit row's columns, `row_mac` included, for an INSERT."""
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at_us": occurred_at_us or time.time_ns() // 1000,
        "event": entry.event,
        "outcome": entry.outcome,
        "user_id": entry.user_id,
        "client_id": entry.client_id,
        "actor_chain": entry.actor_chain,
        "ip": entry.ip,
        "details": dict(entry.details),
    }
    values["row_mac"] = _mac(key, _content(values))
    return values


def make_row(key: bytes, entry: AuditEntry, occurred_at_us: int | None = None) -> AuditEvent:
    return AuditEvent(**row_values(key, entry, occurred_at_us))


def _take_linker_lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite transactions already hold the database write lock.
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LINKER_LOCK_ID}
        ).scalar_one()
    )


# Sets one row's chain position and MAC (executemany: one parameter set per row).
_LINK_ROW = (
    update(AuditEvent.__table__)
    .where(AuditEvent.__table__.c.id == bindparam("row_id"))
    .values(chain_seq=bindparam("seq"), chain_mac=bindparam("mac"))
)


def link_pending(session: Session, key: bytes, batch: int = LINK_BATCH) -> int:
    """Chain up to `batch` unlinked rows onto the head; returns how many were linked."""
    if not _take_linker_lock(session):
        return 0
    head = session.get(AuditHead, 1)
    seq, previous = (head.chain_seq, head.chain_mac) if head else (0, GENESIS_MAC)
    # Only the two columns the chain needs, and one executemany UPDATE: loading whole ORM
    # rows (JSON columns decoded) and flushing them one by one cost the token endpoint's
    # worker more than the rows' own INSERTs. Same order, same MACs, same transaction.
    rows = session.execute(
        select(AuditEvent.id, AuditEvent.row_mac)
        .where(AuditEvent.chain_seq.is_(None))
        .order_by(AuditEvent.id)
        .limit(batch)
    ).all()
    links = []
    for row_id, row_mac in rows:
        seq += 1
        previous = _chain_mac(key, seq, previous, row_mac)
        links.append({"row_id": row_id, "seq": seq, "mac": previous})
    if links:
        session.connection().execute(_LINK_ROW, links)
    if rows:
        if head is None:
            head = AuditHead(id=1)
            session.add(head)
        head.chain_seq, head.chain_mac = seq, previous
        head.head_mac = _head_mac(key, seq, previous)
    return len(rows)


def link_all(factory: sessionmaker[Session], key: bytes) -> int:
    total = 0
    while True:
        with factory.begin() as session:
            linked = link_pending(session, key)
        total += linked
        if linked < LINK_BATCH:
            return total


def verify_chain(session: Session, key: bytes) -> list[Problem]:
    """Recompute every MAC; an empty list means the log is intact.

    Call it on a session that has not run a statement yet: on PostgreSQL it reads in one
    REPEATABLE READ snapshot, so a linker committing in another worker between the row scan
    and the head read cannot make an intact log look truncated. (On SQLite the transaction
    already reads one snapshot.)
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    problems: list[Problem] = []
    expected_seq, previous = 0, GENESIS_MAC
    ordered = select(AuditEvent).order_by(
        AuditEvent.chain_seq.is_(None), AuditEvent.chain_seq, AuditEvent.id
    )
    for row in session.scalars(ordered).yield_per(1000):
        if not hmac.compare_digest(row.row_mac, _mac(key, _row_content(row))):
            problems.append(Problem("edited", f"row id={row.id} does not match its MAC"))
        if row.chain_seq is None:
            continue
        expected_seq += 1
        if row.chain_seq != expected_seq:
            problems.append(
                Problem("missing", f"chain positions {expected_seq}..{row.chain_seq - 1} are gone")
            )
            expected_seq = row.chain_seq
        expected = _chain_mac(key, row.chain_seq, previous, row.row_mac)
        if not hmac.compare_digest(row.chain_mac or "", expected):
            problems.append(Problem("chain_broken", f"row id={row.id} breaks the chain"))
        previous = row.chain_mac or ""
    problems.extend(_check_head(session, key, expected_seq, previous))
    return problems


def _check_head(session: Session, key: bytes, last_seq: int, last_mac: str) -> list[Problem]:
    head = session.get(AuditHead, 1)
    if head is None:  # made with the audit key, before any row (`start_chain`)
        return [Problem("truncated", "the chain head record is missing: the log was cut")]
    if not hmac.compare_digest(head.head_mac, _head_mac(key, head.chain_seq, head.chain_mac)):
        return [Problem("edited", "the chain head record does not match its MAC")]
    if head.chain_seq != last_seq or not hmac.compare_digest(head.chain_mac, last_mac):
        return [Problem("truncated", f"the chain should end at position {head.chain_seq}")]
    return []


def current_head(session: Session) -> tuple[int, str] | None:
    """(position, chain MAC) of the last linked row: what to export to write-once storage."""
    head = session.get(AuditHead, 1)
    return (head.chain_seq, head.chain_mac) if head is not None else None


def check_anchor(session: Session, seq: int, chain_mac: str) -> list[Problem]:
    """An exported head (`current_head`) must still be in the chain, unchanged.

    Restoring an older head record (a copy anyone with database access may have kept)
    together with the rows up to it rewinds the log without breaking a MAC: only a head
    kept outside the database shows the rows after it went missing."""
    if seq == 0:
        return [] if hmac.compare_digest(chain_mac, GENESIS_MAC) else [_rewound(seq)]
    row = session.scalar(select(AuditEvent.chain_mac).where(AuditEvent.chain_seq == seq))
    if row is None or not hmac.compare_digest(row, chain_mac):
        return [_rewound(seq)]
    return []


def _rewound(seq: int) -> Problem:
    return Problem("rewound", f"the exported head at position {seq} is no longer in the chain")


class AuditLinker:
    """Links committed rows in the background, at most every `interval` seconds."""

    def __init__(self, factory: sessionmaker[Session], key: bytes, interval: float) -> None:
        self._factory = factory
        self._key = key
        self._interval = interval
        self._started = False
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        # Started lazily from a request so it runs in the worker after a fork.
        if self._started or self._interval <= 0:
            return
        with self._lock:
            if not self._started:
                threading.Thread(target=self._run, name="audit-linker", daemon=True).start()
                self._started = True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                link_all(self._factory, self._key)
            except Exception:  # the next round retries; rows stay MAC-protected meanwhile
                log.exception("audit linking failed")

    def stop(self) -> None:
        self._stop.set()
