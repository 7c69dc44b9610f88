"""Periodic clean-up: unused connected accounts, stale connect states, expired records."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete

from vault import connect
from vault.retirement import Removed, purge_unused

from .audit import AuditEntry, make_row
from .db import transaction
from .models import (
    AccessTokenRecord,
    AuthorizationCode,
    BrowserSession,
    PushedAuthorizationRequest,
    now,
)

DAY = 24 * 3600
# Kept a little after expiry, so a late replay is still recognised as one.
EXPIRED_GRACE_SECONDS = 3600


def _purged_entry(removed: Removed, unused_days: int) -> AuditEntry:
    return AuditEntry(
        "vault.purged",
        user_id=removed.user_id,
        details={
            "connection": removed.connection,
            "unused_days": unused_days,
            "revoked_upstream": removed.revoked_upstream,
        },
    )


def purge(runtime: Any, unused_days: int) -> dict[str, int]:
    moment = time.time()
    audit_key = runtime.audit_key  # loaded first: SQLite allows one write transaction at a time
    # Each account is revoked upstream before its row goes: a provider's grant must not
    # outlive our copy of its refresh token (the same path as the person's own disconnect).
    removed = purge_unused(runtime.vault, moment - unused_days * DAY)
    with transaction(runtime.session_factory) as session:
        session.add_all(make_row(audit_key, _purged_entry(one, unused_days)) for one in removed)
        accounts = len(removed)
        states = connect.purge_states(session, moment)
        cutoff = now() - EXPIRED_GRACE_SECONDS
        codes = session.execute(
            delete(AuthorizationCode).where(AuthorizationCode.expires_at < cutoff)
        ).rowcount
        tokens = session.execute(
            delete(AccessTokenRecord).where(AccessTokenRecord.expires_at < cutoff)
        ).rowcount
        browsers = session.execute(
            delete(BrowserSession).where(BrowserSession.expires_at < now())
        ).rowcount
        pushed = session.execute(
            delete(PushedAuthorizationRequest).where(PushedAuthorizationRequest.expires_at < cutoff)
        ).rowcount
    return {
        "accounts": accounts,
        "revoked_upstream": sum(one.revoked_upstream for one in removed),
        "connect_states": states,
        "codes": codes,
        "access_token_records": tokens,
        "browser_sessions": browsers,
        "pushed_authorization_requests": pushed,
    }
