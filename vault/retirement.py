"""Ending connected accounts: a person disconnects one, or nobody uses it for too long.

Either way the upstream refresh token is revoked first (RFC 7009, where the provider
offers it), so the provider's grant does not outlive our ciphertext, and then the row
and its ciphertext are deleted. Revocation is best effort: a provider that is down or
offers no revocation endpoint does not keep an account the person asked to remove.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from vault import upstream
from vault.accounts import Vault, account_aad, find_account, upstream_client
from vault.envelope import unseal
from vault.errors import DecryptionError
from vault.models import ConnectedAccount, Connection


@dataclass(frozen=True)
class Removed:
    """One connected account that is gone; `revoked_upstream` says the provider confirmed."""

    user_id: str
    connection: str
    revoked_upstream: bool


def _revoke_upstream(vault: Vault, connection: Connection, account: ConnectedAccount) -> bool:
    try:
        refresh_token = unseal(
            vault.keyring, account.refresh_token_sealed, account_aad(account, "refresh_token")
        ).decode()
        client = upstream_client(vault.keyring, connection)
    except DecryptionError:
        return False  # nothing usable to revoke; the account is still removed
    return upstream.revoke(client, refresh_token, "refresh_token", vault.timeout)


def _last_use(account: ConnectedAccount) -> float:
    return account.last_used_at if account.last_used_at is not None else account.created_at


def remove_account(
    vault: Vault, connection: Connection, user_id: str, unused_since: float | None = None
) -> Removed | None:
    """Revoke upstream, then delete the account. None when there was no account.

    With `unused_since` (a purge), an account used since then is kept: it was read as
    unused when the purge listed it, but an agent may have been served from it since.
    """
    with vault.read_factory() as session:
        account = find_account(session, user_id, connection.name)
        if account is None:
            return None
        if unused_since is not None and _last_use(account) >= unused_since:
            return None
        account_id = account.id
        # The upstream call runs outside any transaction (it may take `vault.timeout`).
        revoked = _revoke_upstream(vault, connection, account)
    with vault.factory.begin() as session:
        session.execute(delete(ConnectedAccount).where(ConnectedAccount.id == account_id))
    return Removed(user_id, connection.name, revoked)


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
