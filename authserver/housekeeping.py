"""Periodic clean-up: unused connected accounts, stale connect states, expired records."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete

from vault import connect
from vault.accounts import purge_unused

from .db import transaction
from .models import AccessTokenRecord, AuthorizationCode, now

DAY = 24 * 3600
# Kept a little after expiry, so a late replay is still recognised as one.
EXPIRED_GRACE_SECONDS = 3600


def purge(runtime: Any, unused_days: int) -> dict[str, int]:
    moment = time.time()
    with transaction(runtime.session_factory) as session:
        accounts = purge_unused(session, moment - unused_days * DAY)
        states = connect.purge_states(session, moment)
        cutoff = now() - EXPIRED_GRACE_SECONDS
        codes = session.execute(
            delete(AuthorizationCode).where(AuthorizationCode.expires_at < cutoff)
        ).rowcount
        tokens = session.execute(
            delete(AccessTokenRecord).where(AccessTokenRecord.expires_at < cutoff)
        ).rowcount
    return {
        "accounts": accounts,
        "connect_states": states,
        "codes": codes,
        "access_token_records": tokens,
    }
