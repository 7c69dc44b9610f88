"""Connected accounts: linking and serving short-lived upstream tokens.

Serving a federated access token:

1. A cached access token that is still valid (with a safety margin) is served.
2. Otherwise one request takes the account's refresh *lease* with a conditional
   update (a row lock on PostgreSQL, the database write lock on SQLite), refreshes
   upstream outside any transaction, and saves the new access token and, when the
   upstream rotated it, the new refresh token in one transaction. Concurrent
   requests wait for that refresh instead of starting their own, so an upstream
   that rotates refresh tokens (and kills the family on reuse) never sees the old
   one twice.
3. Upstream `invalid_grant` marks the account as needing reconnection; a timeout
   or 5xx is an error. A stale token is never served.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vault import upstream
from vault.envelope import associated_data, seal, unseal
from vault.errors import ConnectionRequired, DecryptionError, UpstreamError
from vault.keyring import KeyRing
from vault.models import ACTIVE, NEEDS_RECONNECT, ConnectedAccount, Connection

EXPIRY_MARGIN_SECONDS = 30.0
LEASE_SECONDS = 30.0
WAIT_POLL_SECONDS = 0.05
TOUCH_EVERY_SECONDS = 60


def lease_for(timeout: float) -> float:
    """How long a refresh may hold the account's lease, given the upstream call timeout.

    The lease must outlive the slowest refresh (the upstream call, cut off at `timeout`
    by its deadline whatever the provider does, plus the save), with room to spare: if
    it lapsed mid-call, a second request would send the same refresh token upstream, and
    a provider that rotates refresh tokens would revoke the whole family.
    """
    return max(LEASE_SECONDS, 2 * timeout + 10)


@dataclass
class Vault:
    """What the vault needs, passed in: storage, key ring, clock, upstream timeout."""

    factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]
    keyring: KeyRing
    clock: Callable[[], float] = time.time
    timeout: float = upstream.DEFAULT_TIMEOUT
    lease_seconds: float = LEASE_SECONDS
    refreshes: list[str] = field(default_factory=list)  # account ids refreshed, for observers


@dataclass(frozen=True)
class FederatedToken:
    access_token: str
    expires_in: int
    scopes: list[str]
    refreshed: bool

    def __repr__(self) -> str:
        return f"FederatedToken(expires_in={self.expires_in}, refreshed={self.refreshed})"


def account_aad(account: ConnectedAccount, part: str) -> bytes:
    return associated_data(
        "vault_account", account.id, account.user_id, account.connection_name, part
    )


def connection_secret_aad(name: str) -> bytes:
    return associated_data("vault_connection", name, "client_secret")


def upstream_client(keyring: KeyRing, connection: Connection) -> upstream.UpstreamClient:
    secret = None
    if connection.client_secret_sealed is not None:
        secret = unseal(
            keyring, connection.client_secret_sealed, connection_secret_aad(connection.name)
        ).decode("utf-8")
    return upstream.UpstreamClient(
        client_id=connection.client_id,
        client_secret=secret,
        auth_method=connection.token_endpoint_auth_method,
        authorize_url=connection.authorize_url,
        token_url=connection.token_url,
        revocation_url=connection.revocation_url,
    )


def seal_tokens(
    keyring: KeyRing, account: ConnectedAccount, tokens: upstream.UpstreamTokens
) -> None:
    """Store the tokens of an upstream answer in the account, as ciphertext only."""
    if tokens.refresh_token:
        account.refresh_token_sealed = seal(
            keyring, tokens.refresh_token.encode(), account_aad(account, "refresh_token")
        )
    account.access_token_sealed = seal(
        keyring, tokens.access_token.encode(), account_aad(account, "access_token")
    )
    account.access_token_expires_at = tokens.expires_at


def find_account(session: Session, user_id: str, connection: str) -> ConnectedAccount | None:
    return session.scalar(
        select(ConnectedAccount).where(
            ConnectedAccount.user_id == user_id, ConnectedAccount.connection_name == connection
        )
    )


@dataclass(frozen=True)
class StoredAccount:
    account: ConnectedAccount
    # The refresh token a reconnect replaced, when it differs from the new one: the caller
    # revokes it upstream once the new one is committed, or it would outlive the account.
    replaced_refresh_token: str | None = field(default=None, repr=False)


def store_account(
    session: Session,
    vault: Vault,
    connection: Connection,
    user_id: str,
    tokens: upstream.UpstreamTokens,
    requested: list[str],
) -> StoredAccount:
    """Create or replace the user's account from a completed connect flow."""
    moment = int(vault.clock())
    account = find_account(session, user_id, connection.name)
    replaced = None
    if account is not None:
        with contextlib.suppress(DecryptionError):  # nothing usable to revoke then
            replaced = unseal(
                vault.keyring, account.refresh_token_sealed, account_aad(account, "refresh_token")
            ).decode()
    else:
        account = ConnectedAccount(
            id=str(uuid.uuid4()),
            user_id=user_id,
            connection_name=connection.name,
            created_at=moment,
        )
        session.add(account)
    account.scopes = tokens.scopes if tokens.scopes is not None else list(requested)
    account.status, account.updated_at, account.last_used_at = ACTIVE, moment, moment
    account.refresh_lease = account.refresh_lease_until = None
    seal_tokens(vault.keyring, account, tokens)
    return StoredAccount(account, replaced if replaced != tokens.refresh_token else None)


def _check_usable(
    account: ConnectedAccount | None, connection: Connection, requested: list[str]
) -> ConnectedAccount:
    wanted = requested or list(connection.default_scopes)
    if account is None:
        raise ConnectionRequired("not_connected", connection.name, wanted)
    merged = list(dict.fromkeys(list(account.scopes) + wanted))
    if account.status == NEEDS_RECONNECT:
        raise ConnectionRequired("reconnect_required", connection.name, merged)
    if not set(requested) <= set(account.scopes):
        raise ConnectionRequired("missing_scopes", connection.name, merged)
    return account


def _cached(vault: Vault, account: ConnectedAccount) -> FederatedToken | None:
    expires_at = account.access_token_expires_at
    if account.access_token_sealed is None or expires_at is None:
        return None
    remaining = expires_at - vault.clock()
    if remaining <= EXPIRY_MARGIN_SECONDS:
        return None
    token = unseal(vault.keyring, account.access_token_sealed, account_aad(account, "access_token"))
    return FederatedToken(token.decode(), int(remaining), list(account.scopes), refreshed=False)


def federated_token(
    vault: Vault, connection: Connection, user_id: str, requested: list[str]
) -> FederatedToken:
    """A valid upstream access token for the user, refreshing upstream at most once at a time."""
    deadline = vault.clock() + vault.timeout + 5
    while True:
        with vault.read_factory() as session:
            account = _check_usable(
                find_account(session, user_id, connection.name), connection, requested
            )
            cached = _cached(vault, account)
        if cached is not None:
            _touch(vault, account)
            return cached
        lease = _claim_lease(vault, account.id)
        if lease is not None:
            served = _refresh(vault, connection, account.id, lease)
            if not set(requested) <= set(served.scopes):
                # The provider narrowed the grant on refresh (RFC 6749 §5.1 `scope`): the
                # account now lacks what was asked, so the person must connect again.
                merged = list(dict.fromkeys([*served.scopes, *requested]))
                raise ConnectionRequired("missing_scopes", connection.name, merged)
            return served
        if vault.clock() > deadline:
            raise UpstreamError("timeout", "another refresh did not finish")
        time.sleep(WAIT_POLL_SECONDS)


def _touch(vault: Vault, account: ConnectedAccount) -> None:
    moment = int(vault.clock())
    if account.last_used_at is not None and moment - account.last_used_at < TOUCH_EVERY_SECONDS:
        return  # a write per request is not needed to know an account is in use
    with vault.factory.begin() as session:
        session.execute(
            update(ConnectedAccount)
            .where(ConnectedAccount.id == account.id)
            .values(last_used_at=moment)
        )


def _claim_lease(vault: Vault, account_id: str) -> str | None:
    lease, moment = secrets.token_hex(16), vault.clock()
    with vault.factory.begin() as session:
        claimed = session.execute(
            update(ConnectedAccount)
            .where(
                ConnectedAccount.id == account_id,
                ConnectedAccount.status == ACTIVE,
                or_(
                    ConnectedAccount.refresh_lease.is_(None),
                    ConnectedAccount.refresh_lease_until < moment,
                ),
            )
            .values(refresh_lease=lease, refresh_lease_until=moment + vault.lease_seconds)
        )
        return lease if getattr(claimed, "rowcount", 0) == 1 else None


def _refresh(vault: Vault, connection: Connection, account_id: str, lease: str) -> FederatedToken:
    try:
        with vault.read_factory() as session:
            account = session.get(ConnectedAccount, account_id)
            if account is None:
                raise ConnectionRequired(
                    "not_connected", connection.name, list(connection.default_scopes)
                )
            cached = _cached(vault, account)  # someone may have refreshed just before our lease
            if cached is not None:
                _release(vault, account_id, lease)
                return cached
            refresh_token = unseal(
                vault.keyring, account.refresh_token_sealed, account_aad(account, "refresh_token")
            ).decode()
            client = upstream_client(vault.keyring, connection)
    except Exception:
        # A ciphertext that does not open (moved, tampered, KEK missing) must not leave the
        # lease held: every other request would wait for a refresh that never happens.
        _release(vault, account_id, lease)
        raise
    try:
        tokens = upstream.refresh(client, refresh_token, vault.clock, vault.timeout)
    except UpstreamError as error:
        _failed(vault, account_id, lease, error)
        if error.kind == "rejected" and error.detail == "invalid_grant":
            raise ConnectionRequired(
                "reconnect_required", connection.name, list(account.scopes)
            ) from None
        raise
    except BaseException:
        with contextlib.suppress(Exception):  # the lease lapses on its own otherwise
            _release(vault, account_id, lease)
        raise
    # A refresh token the upstream rotated to and that we do not store is revoked: kept by
    # nobody, it would stay valid at the provider for as long as the provider allows.
    rotated = tokens.refresh_token if tokens.refresh_token != refresh_token else None
    try:
        saved, served = _save_refresh(vault, account, lease, tokens)
    except BaseException:
        _revoke_quietly(client, rotated, vault.timeout)
        with contextlib.suppress(Exception):  # the lease lapses on its own otherwise
            _release(vault, account_id, lease)
        raise
    if saved == GONE:
        # Disconnected while the refresh ran: the person's decision stands.
        _revoke_quietly(client, tokens.refresh_token, vault.timeout)
        raise ConnectionRequired("not_connected", connection.name, list(account.scopes))
    if saved == SUPERSEDED:
        # Reconnected (or our lease lapsed) meanwhile: the row holds another refresh token.
        _revoke_quietly(client, rotated, vault.timeout)
    return served


def _revoke_quietly(client: upstream.UpstreamClient, token: str | None, timeout: float) -> None:
    if token:
        upstream.revoke(client, token, "refresh_token", timeout)


SAVED, GONE, SUPERSEDED = "saved", "gone", "superseded"


def _save_refresh(
    vault: Vault, account: ConnectedAccount, lease: str, tokens: upstream.UpstreamTokens
) -> tuple[str, FederatedToken]:
    """Access token and rotated refresh token in one transaction, only by the lease holder.

    GONE when the account was deleted meanwhile (nothing saved; the token must not be
    served), SUPERSEDED when the lease is no longer ours (nothing saved; the access token
    is still good to serve), else SAVED.
    """
    moment = int(vault.clock())
    with vault.factory.begin() as session:
        row = session.get(ConnectedAccount, account.id, with_for_update=True)
        if row is None:
            saved = GONE
        elif row.refresh_lease != lease:
            saved = SUPERSEDED
        else:
            saved = SAVED
            seal_tokens(vault.keyring, row, tokens)
            if tokens.scopes is not None:
                row.scopes = tokens.scopes
            row.refresh_lease = row.refresh_lease_until = None
            row.refreshed_at = row.last_used_at = row.updated_at = moment
    if saved != GONE:
        vault.refreshes.append(account.id)
    remaining = int(tokens.expires_at - vault.clock()) if tokens.expires_at else 0
    scopes = tokens.scopes if tokens.scopes is not None else list(account.scopes)
    return saved, FederatedToken(tokens.access_token, remaining, scopes, refreshed=True)


def _release(vault: Vault, account_id: str, lease: str) -> None:
    with vault.factory.begin() as session:
        session.execute(
            update(ConnectedAccount)
            .where(ConnectedAccount.id == account_id, ConnectedAccount.refresh_lease == lease)
            .values(refresh_lease=None, refresh_lease_until=None)
        )


def _failed(vault: Vault, account_id: str, lease: str, error: UpstreamError) -> None:
    values: dict[str, object] = {"refresh_lease": None, "refresh_lease_until": None}
    if error.kind == "rejected" and error.detail == "invalid_grant":
        # The upstream no longer honours the refresh token: ask the user, do not retry forever.
        values.update(
            status=NEEDS_RECONNECT, access_token_sealed=None, access_token_expires_at=None
        )
    with vault.factory.begin() as session:
        session.execute(
            update(ConnectedAccount)
            .where(ConnectedAccount.id == account_id, ConnectedAccount.refresh_lease == lease)
            .values(**values)
        )
