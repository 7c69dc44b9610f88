"""Ending connected accounts: a person disconnects one, or nobody uses it for too long.

Either way the row and its ciphertext are deleted, then the upstream refresh token is
revoked (RFC 7009, where the provider offers it), so the provider's grant does not
outlive our ciphertext. Revocation is best effort: a provider that is down or
offers no revocation endpoint does not keep an account the person asked to remove.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vault import upstream
from vault.accounts import Vault, account_aad, upstream_client
from vault.envelope import unseal
from vault.errors import DecryptionError
from vault.models import ConnectedAccount, Connection


@dataclass(frozen=True)
class Removed:
    """One connected account that is gone; `revoked_upstream` says the provider confirmed."""

    user_id: str
    connection: str
    revoked_upstream: bool


def _sealed_refresh_token(vault: Vault, account: ConnectedAccount) -> str | None:
    try:
        return unseal(
            vault.keyring, account.refresh_token_sealed, account_aad(account, "refresh_token")
        ).decode()
    except DecryptionError:
        return None  # nothing usable to revoke; the account is still removed


def _revoke_upstream(vault: Vault, connection: Connection, refresh_token: str | None) -> bool:
    if refresh_token is None:
        return False
    try:
        client = upstream_client(vault.keyring, connection)
    except DecryptionError:
        return False
    return upstream.revoke(client, refresh_token, "refresh_token", vault.timeout)


def _last_use(account: ConnectedAccount) -> float:
    return account.last_used_at if account.last_used_at is not None else account.created_at


def remove_account(
    vault: Vault, connection: Connection, user_id: str, unused_since: float | None = None
) -> Removed | None:
    """Delete the account, then revoke its refresh token upstream. None when there was none.

    The row goes first, under its lock, with the refresh token it held at that moment: a
    refresh running meanwhile then finds no row to save into and revokes the token it
    rotated to, so no refresh token outlives the account whichever finishes first. With
    `unused_since` (a purge), an account used since then is kept: it was read as unused
    when the purge listed it, but an agent may have been served from it since.
    """
    with vault.factory.begin() as session:
        account = session.scalar(
            select(ConnectedAccount)
            .where(
                ConnectedAccount.user_id == user_id,
                ConnectedAccount.connection_name == connection.name,
            )
            .with_for_update()
        )
        if account is None:
            return None
        if unused_since is not None and _last_use(account) >= unused_since:
            return None
        refresh_token = _sealed_refresh_token(vault, account)
        session.delete(account)
    # The upstream call runs outside any transaction (it may take `vault.timeout`).
    return Removed(user_id, connection.name, _revoke_upstream(vault, connection, refresh_token))


def disconnect(vault: Vault, connection: Connection, user_id: str) -> bool:
    """The person's own disconnect; False when there was nothing to remove."""
    return remove_account(vault, connection, user_id) is not None


def unused_accounts(session: Session, unused_since: float) -> list[tuple[str, str]]:
    """(user_id, connection name) of accounts not used since `unused_since` (epoch seconds).

    An account never used counts from its creation.
    """
    stale = select(ConnectedAccount.user_id, ConnectedAccount.connection_name).where(
        or_(
            ConnectedAccount.last_used_at < unused_since,
            (ConnectedAccount.last_used_at.is_(None))
            & (ConnectedAccount.created_at < unused_since),
        )
    )
    return [(user_id, name) for user_id, name in session.execute(stale)]


def purge_unused(vault: Vault, unused_since: float) -> list[Removed]:
    """Remove every account unused since `unused_since`, revoking each upstream first."""
    with vault.read_factory() as session:
        stale = unused_accounts(session, unused_since)
        connections = {name: session.get(Connection, name) for name in {name for _, name in stale}}
        for connection in connections.values():
            if connection is not None:
                session.expunge(connection)
    removed: list[Removed] = []
    for user_id, name in stale:
        connection = connections.get(name)
        if connection is None:
            continue  # the connection itself was deleted meanwhile, and its accounts with it
        gone = remove_account(vault, connection, user_id, unused_since)
        if gone is not None:
            removed.append(gone)
    return removed
