"""Re-wrapping every sealed record under the active KEK (`authserver vault rotate-kek`).

Works in small committed batches, each row re-wrapped from its stored value, so a
run killed half-way loses nothing and the next run resumes: rows already under
the active KEK are skipped. Only data keys are re-wrapped; plaintext never leaves
the vault functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from vault import KeyRing, key_version, rewrap
from vault.models import ConnectedAccount, Connection, ConnectState

from .models import BackchannelRequest, Notification, ServerSecret, SigningKey

BATCH = 100


def sealed_columns() -> list[tuple[Any, str]]:
    """Every (model, attribute) pair that holds vault ciphertext."""
    return [
        (SigningKey, "private_sealed"),
        (ServerSecret, "sealed"),
        (BackchannelRequest, "callback_sealed"),
        (Notification, "payload_sealed"),
        (Connection, "client_secret_sealed"),
        (ConnectedAccount, "refresh_token_sealed"),
        (ConnectedAccount, "access_token_sealed"),
        (ConnectState, "verifier_sealed"),
    ]


def _rewrap_batch(
    session: Session, model: Any, attribute: str, keyring: KeyRing, after: Any
) -> tuple[int, Any]:
    pk = inspect(model).primary_key[0]
    # Locked until the batch commits: a refresh saving a rotated token meanwhile waits,
    # instead of being overwritten by the re-wrap of the old ciphertext read here.
    query = select(model).order_by(pk).limit(BATCH).with_for_update()
    if after is not None:
        query = query.where(pk > after)
    changed, last = 0, None
    for row in session.scalars(query):
        last = getattr(row, pk.key)
        blob = getattr(row, attribute)
        if blob is not None and key_version(blob) != keyring.active_version:
            setattr(row, attribute, rewrap(keyring, blob))
            changed += 1
    return changed, last


def _remaining(session: Session, pairs: Iterable[tuple[Any, str]], keyring: KeyRing) -> int:
    count = 0
    for model, attribute in pairs:
        for blob in session.scalars(select(getattr(model, attribute))):
            if blob is not None and key_version(blob) != keyring.active_version:
                count += 1
    return count


def rewrap_all(factory: sessionmaker[Session], keyring: KeyRing) -> dict[str, int]:
    total = 0
    pairs = sealed_columns()
    for model, attribute in pairs:
        after: Any = None
        while True:
            with factory.begin() as session:
                changed, after = _rewrap_batch(session, model, attribute, keyring, after)
            total += changed
            if after is None:
                break
    with factory() as session:
        remaining = _remaining(session, pairs, keyring)
    return {"rewrapped": total, "remaining": remaining, "active_version": keyring.active_version}
