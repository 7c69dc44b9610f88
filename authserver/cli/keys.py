"""`keys list|rotate|withdraw` and `vault rotate-kek|purge`."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from ..audit import AuditEntry, make_row
from ..db import transaction
from ..housekeeping import purge
from ..keys import (
    PUBLISH_BEFORE_SIGNING_SECONDS,
    rotate_signing_keys,
    signing_order,
    withdraw_signing_key,
)
from ..models import SigningKey, now
from ..rotation import rewrap_all
from .common import database_reason, emit, json_option, load_runtime

MAX_ACTIVATE_AFTER_SECONDS = 86_400


@click.group()
def keys() -> None:
    """Token signing keys."""


@keys.command("rotate")
@click.option(
    "--activate-after",
    type=click.IntRange(0, MAX_ACTIVATE_AFTER_SECONDS),
    default=PUBLISH_BEFORE_SIGNING_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Publish the new keys now; they sign from this many seconds on. "
    "0: the old keys stop signing at once (a key that must not sign again).",
)
@json_option
def keys_rotate(activate_after: int, as_json: bool) -> None:
    """Add new signing keys; the old ones stay in the JWKS until their tokens expire."""
    runtime = load_runtime()
    settings = runtime.settings
    longest = max(settings.access_token_ttl, settings.id_token_ttl, settings.delegated_token_ttl)
    # Counted from the hand-over; other processes may sign with the old key until they
    # reload (RELOAD_INTERVAL_SECONDS) when the hand-over is immediate.
    overlap = longest + 120
    audit_key = runtime.audit_key  # loaded first: SQLite allows one write transaction at a time
    with transaction(runtime.session_factory) as session:
        rotation = rotate_signing_keys(session, runtime.keyring, overlap, activate_after)
        kids = rotation.new_kids
        report = {
            "new_kids": kids,
            "signing_from": rotation.hand_over,
            "activate_after_seconds": activate_after,
            "old_keys_published_for_seconds": overlap,
        }
        session.add(make_row(audit_key, AuditEntry("keys.rotated", details=report)))
    emit(
        report,
        as_json,
        f"new signing keys: {', '.join(kids)} (published now, signing in {activate_after}s); "
        f"old keys stay published {overlap}s after that",
    )


@keys.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """Signing keys with their state: signing, next (published, signs from the hand-over),
    retired (published until its tokens expire) or withdrawn/expired (no longer published)."""
    runtime = load_runtime()
    moment = now()
    with runtime.session_factory() as session:
        rows = sorted(session.scalars(select(SigningKey)).all(), key=signing_order)
    signing: dict[str, str] = {}
    for row in rows:
        published = row.expires_at is None or row.expires_at > moment
        due = row.retired_at is None or row.retired_at > moment
        if published and due:
            signing.setdefault(row.alg, row.kid)
    listed = [_key_json(row, signing, moment) for row in rows]
    lines = [f"{k['kid']}  {k['alg']}  {k['state']}" for k in listed]
    emit(listed, as_json, "\n".join(lines))


def _key_json(row: SigningKey, signing: dict[str, str], moment: int) -> dict[str, Any]:
    if row.expires_at is not None and row.expires_at <= moment:
        state = "unpublished"
    elif signing.get(row.alg) == row.kid:
        state = "signing"
    elif row.retired_at is None or row.retired_at > moment:
        state = "next"
    else:
        state = "retired"
    return {
        "kid": row.kid,
        "alg": row.alg,
        "state": state,
        "created_at": row.created_at,
        "signs_until": row.retired_at,
        "published_until": row.expires_at,
    }


@keys.command("withdraw")
@click.argument("kid")
@click.confirmation_option(
    prompt="Tokens signed with this key will stop verifying. Withdraw it?",
    help="Do not ask for confirmation.",
)
@json_option
def keys_withdraw(kid: str, as_json: bool) -> None:
    """Unpublish a signing key now (compromised key): it stops signing and verifying.

    Other processes drop it at their next key reload (within 30 seconds). A new key for
    its algorithm is created when no other one is due to sign.
    """
    runtime = load_runtime()
    audit_key = runtime.audit_key  # loaded first: SQLite allows one write transaction at a time
    try:
        with transaction(runtime.session_factory) as session:
            withdrawal = withdraw_signing_key(session, runtime.keyring, kid)
            report = {
                "withdrawn_kid": withdrawal.kid,
                "alg": withdrawal.alg,
                "replacement_kid": withdrawal.replacement_kid,
            }
            session.add(make_row(audit_key, AuditEntry("keys.withdrawn", details=report)))
    except LookupError as error:
        raise click.ClickException(str(error.args[0])) from None
    emit(
        report,
        as_json,
        f"withdrew {withdrawal.kid} ({withdrawal.alg})"
        + (f"; new signing key {withdrawal.replacement_kid}" if withdrawal.replacement_kid else ""),
    )


@click.group()
def vault() -> None:
    """The vault's key-encryption keys (KEKs)."""


@vault.command("rotate-kek")
@json_option
def rotate_kek(as_json: bool) -> None:
    """Re-wrap every sealed record under the active (highest) KEK. Safe to rerun after a crash.

    Add the new KEK to AUTHSERVER_VAULT_KEYS (or its file) first; remove the old one
    only after this reports nothing left under it.
    """
    runtime = load_runtime()
    audit_key = runtime.audit_key  # loaded first: SQLite allows one write transaction at a time
    report = rewrap_all(runtime.session_factory, runtime.keyring)
    with transaction(runtime.session_factory) as session:
        session.add(make_row(audit_key, AuditEntry("vault.kek_rotated", details=dict(report))))
    emit(
        report,
        as_json,
        f"re-wrapped {report['rewrapped']} records under KEK "
        f"v{report['active_version']}; remaining on old KEKs: {report['remaining']}",
    )


@vault.command("purge")
@click.option(
    "--unused-days",
    type=click.IntRange(1, 36500),
    default=None,
    help="Default: AUTHSERVER_VAULT_UNUSED_DAYS.",
)
@click.option(
    "--every",
    type=click.IntRange(1, 7 * 86_400),
    default=None,
    metavar="SECONDS",
    help="Keep running: purge now and then every SECONDS, one report line each "
    "(for a housekeeping container; a database error is reported and retried).",
)
@json_option
def vault_purge(unused_days: int | None, every: int | None, as_json: bool) -> None:
    """Delete connected accounts unused for the configured period, and what has expired
    (connect states, codes, access-token records, browser sessions)."""
    runtime = load_runtime()
    days = unused_days or runtime.settings.vault_unused_days
    if every is None:
        _purge_once(runtime, days, as_json)
        return
    while True:
        try:
            _purge_once(runtime, days, as_json, one_line=True)
        except (OperationalError, InterfaceError) as error:
            click.echo(
                f"purge failed, retrying in {every}s: database error: {database_reason(error)}",
                err=True,
            )
        time.sleep(every)


def _purge_once(runtime: Any, days: int, as_json: bool, one_line: bool = False) -> None:
    report = purge(runtime, days)
    if one_line and as_json:
        click.echo(json.dumps({"at": int(time.time()), **report}))
        return
    emit(
        report,
        as_json,
        f"purged {report['accounts']} accounts unused for {days} days "
        f"({report['revoked_upstream']} revoked upstream), {report['codes']} codes, "
        f"{report['access_token_records']} access-token records, "
        f"{report['browser_sessions']} browser sessions",
    )
