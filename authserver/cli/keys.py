"""`keys rotate` and `vault rotate-kek`."""

from __future__ import annotations

import click

from ..audit import AuditEntry, make_row
from ..db import transaction
from ..housekeeping import purge
from ..keys import rotate_signing_keys
from ..rotation import rewrap_all
from .common import emit, json_option, load_runtime


@click.group()
def keys() -> None:
    """Token signing keys."""


@keys.command("rotate")
@json_option
def keys_rotate(as_json: bool) -> None:
    """Add new signing keys; the old ones stay in the JWKS until their tokens expire."""
    runtime = load_runtime()
    settings = runtime.settings
    longest = max(settings.access_token_ttl, settings.id_token_ttl, settings.delegated_token_ttl)
    # Other processes may sign with the old key until they reload (RELOAD_INTERVAL_SECONDS).
    overlap = longest + 120
    audit_key = runtime.audit_key  # loaded first: SQLite allows one write transaction at a time
    with transaction(runtime.session_factory) as session:
        kids = rotate_signing_keys(session, runtime.keyring, overlap)
        details = {"new_kids": kids, "old_keys_published_for_seconds": overlap}
        session.add(make_row(audit_key, AuditEntry("keys.rotated", details=details)))
    emit(
        {"new_kids": kids, "old_keys_published_for_seconds": overlap},
        as_json,
        f"new signing keys: {', '.join(kids)}; old keys stay published {overlap}s",
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
@json_option
def vault_purge(unused_days: int | None, as_json: bool) -> None:
    """Delete connected accounts unused for the configured period, and stale connect states."""
    runtime = load_runtime()
    days = unused_days or runtime.settings.vault_unused_days
    report = purge(runtime, days)
    emit(
        report,
        as_json,
        f"purged {report['accounts']} accounts unused for {days} days "
        f"({report['revoked_upstream']} revoked upstream)",
    )
