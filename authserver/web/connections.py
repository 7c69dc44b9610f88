"""Connected accounts for the token vault (DESIGN "Token vault").

`/connections/<name>/connect` starts authorization code + PKCE + state against the
upstream; `/connections/<name>/callback` completes it and stores the tokens sealed;
`/account/connections` lists the user's accounts and disconnects them (revoking
upstream where the provider offers RFC 7009).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from vault import connect, upstream
from vault.accounts import StoredAccount, store_account, upstream_client
from vault.errors import ConnectFailed, DecryptionError, UpstreamError, VaultError
from vault.models import ConnectedAccount, Connection
from vault.retirement import disconnect

from ..oauth.scopes import scope_list
from . import context
from .navigation import safe_next
from .pages import error_page

bp = Blueprint("connections", __name__)
log = logging.getLogger(__name__)

MAX_SCOPE_PARAM = 1000
MAX_RETURN_TO = 2000  # the length of vault_connect_states.return_to


def _connection(name: str) -> Connection | None:
    return context.db().get(Connection, name) if len(name) <= 64 else None


def _redirect_uri(name: str) -> str:
    return f"{context.runtime().settings.issuer}/connections/{name}/callback"


@bp.get("/connections/<name>/connect")
@login_required
def start(name: str) -> Any:
    connection = _connection(name)
    if connection is None:
        return error_page("Unknown connection", "There is no connection by that name.", 404)
    scope = request.args.get("scope", "")
    default = url_for("connections.accounts")
    return_to = safe_next(request.args.get("return_to"), default)
    if len(return_to) > MAX_RETURN_TO:
        return_to = default
    runtime = context.runtime()
    try:
        if len(scope) > MAX_SCOPE_PARAM:
            raise VaultError("scope too long")
        url = connect.begin(
            context.db(),
            runtime.keyring,
            runtime.vault.clock,
            connection,
            current_user.id,
            scope_list(scope),
            return_to,
            _redirect_uri(name),
        )
    except DecryptionError:
        return _unusable(name)
    except VaultError:
        return error_page("Cannot connect", "The connection does not offer those scopes.", 400)
    context.commit()
    return redirect(url)


def _unusable(name: str) -> Any:
    """The connection's sealed client secret or state does not open (its key is missing)."""
    log.error("connection %s: a sealed value could not be opened", name)
    return error_page(
        "Cannot connect", "This connection cannot be used right now. Try again later.", 503
    )


def _fail(name: str, reason: str, description: str, status: int = 400) -> Any:
    context.record(
        "vault.connected",
        "failure",
        user_id=current_user.id,
        details={"connection": name, "reason": reason},
    )
    return error_page("The account was not connected", description, status)


@bp.get("/connections/<name>/callback")
@login_required
def callback(name: str) -> Any:
    connection = _connection(name)
    if connection is None:
        return error_page("Unknown connection", "There is no connection by that name.", 404)
    runtime, session = context.runtime(), context.db()
    try:
        consumed = connect.consume(
            session,
            runtime.keyring,
            runtime.vault.clock,
            connection,
            current_user.id,
            request.args.get("state", ""),
        )
    except ConnectFailed:
        return _fail(name, "bad_state", "This link is not valid (it may have been used already).")
    except DecryptionError:
        return _unusable(name)
    context.commit()  # the state is used up even if the provider refuses below
    try:
        connect.check_issuer(connection, _issuer_in_response())
    except ConnectFailed:
        return _fail(name, "issuer_mismatch", "The answer did not come from this provider.")
    if request.args.get("error") or not request.args.get("code"):
        return _fail(name, "upstream_refused", "The provider did not grant access.")
    return _complete(connection, consumed)


def _issuer_in_response() -> str | None:
    """RFC 9207 `iss`; sent twice it names no one issuer, and matches none."""
    values = request.args.getlist("iss")
    if len(values) > 1:
        return "\n".join(values)
    return values[0] if values else None


def _complete(connection: Connection, consumed: connect.ConsumedState) -> Any:
    runtime = context.runtime()
    vault = runtime.vault
    try:
        client = upstream_client(runtime.keyring, connection)
    except DecryptionError:
        return _unusable(connection.name)
    try:
        tokens = upstream.exchange_code(
            client,
            request.args.get("code", "")[:2048],
            _redirect_uri(connection.name),
            consumed.verifier,
            vault.clock,
            vault.timeout,
        )
    except UpstreamError as error:
        return _fail(
            connection.name,
            f"upstream_{error.kind}",
            "The provider could not complete the connection. Try again later.",
            502,
        )
    if not tokens.refresh_token:
        return _fail(
            connection.name,
            "no_refresh_token",
            "The provider did not grant offline access, so the account cannot be used "
            "while you are away.",
            502,
        )
    stored = _store(connection, tokens, consumed.scopes)
    if stored.replaced_refresh_token:
        # A reconnect: the grant behind the previous refresh token is no longer ours to keep.
        upstream.revoke(client, stored.replaced_refresh_token, "refresh_token", vault.timeout)
    return redirect(consumed.return_to)


def _store(
    connection: Connection, tokens: upstream.UpstreamTokens, requested: list[str]
) -> StoredAccount:
    """Store the account and commit. A parallel first connect (another tab) may have
    inserted the same account meanwhile: then once more, replacing that one."""
    user_id = current_user.id
    try:
        return _store_once(connection, user_id, tokens, requested)
    except IntegrityError:
        context.db().rollback()
        return _store_once(connection, user_id, tokens, requested)


def _store_once(
    connection: Connection, user_id: str, tokens: upstream.UpstreamTokens, requested: list[str]
) -> StoredAccount:
    vault = context.runtime().vault
    stored = store_account(context.db(), vault, connection, user_id, tokens, requested)
    context.record(
        "vault.connected",
        user_id=user_id,
        details={"connection": connection.name, "scopes": stored.account.scopes},
    )
    context.commit()
    return stored


@bp.get("/account/connections")
@login_required
def accounts() -> str:
    session = context.db()
    rows = session.execute(
        select(ConnectedAccount, Connection)
        .join(Connection, Connection.name == ConnectedAccount.connection_name)
        .where(ConnectedAccount.user_id == current_user.id)
        .order_by(Connection.display_name)
    ).all()
    available = session.scalars(select(Connection).order_by(Connection.display_name)).all()
    connected = {account.connection_name for account, _ in rows}
    return render_template(
        "connections.html", rows=rows, available=[c for c in available if c.name not in connected]
    )


@bp.post("/account/connections/<name>/disconnect")
@login_required
def disconnect_account(name: str) -> Any:
    connection = _connection(name)
    if connection is None:
        return error_page("Unknown connection", "There is no connection by that name.", 404)
    user_id = current_user.id
    # Keep the loaded connection usable once the request's session is gone (a rollback
    # would expire it): the vault revokes upstream in its own transactions.
    context.db().expunge(connection)
    context.release_db()
    removed = disconnect(context.runtime().vault, connection, user_id)
    context.record(
        "vault.disconnected",
        "success" if removed else "not_connected",
        user_id=user_id,
        details={"connection": name},
    )
    context.commit()
    return redirect(url_for("connections.accounts"))
