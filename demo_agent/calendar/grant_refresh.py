"""Refresh token grant with rotation and reuse detection (RFC 6749 §6, RFC 9700 §4.14.2).

Every use consumes the presented refresh token and returns a new one. Consumption
is a conditional UPDATE inside a ``BEGIN IMMEDIATE`` transaction, so of several
concurrent uses exactly one wins. A consumed token presented again (a replay, or
the losers of such a race) revokes the whole family, the new tokens included.
Test faults (``CALENDAR_TEST_CONTROLS``) change the answer before any state is read.
"""

from __future__ import annotations

import time
from dataclasses import replace

from werkzeug.datastructures import MultiDict

from . import scopes
from .config import Client
from .db import transaction
from .errors import InvalidGrant, InvalidRequest, ServerError
from .models import RefreshToken, TokenFamily
from .state import Faults, state
from .tokens import Issued, consume_refresh_token, count, digest, issue, revoke_family

GRANT_TYPE = "refresh_token"


def apply_faults(faults: Faults) -> None:
    """Injected failures: sleep, then fail without touching any token."""
    if faults.delay_seconds > 0:
        time.sleep(faults.delay_seconds)
    if faults.mode == "hang":
        time.sleep(faults.hang_seconds)
        raise ServerError("the provider did not answer in time (test fault: hang)")
    if faults.mode == "server_error":
        raise ServerError("the provider failed (test fault: server_error)")
    if faults.mode == "invalid_grant":
        raise InvalidGrant("the refresh token was rejected (test fault: invalid_grant)")


def _family(row: RefreshToken | None, family: TokenFamily | None, client: Client) -> TokenFamily:
    if row is None or family is None:
        raise InvalidGrant("the refresh token is invalid")
    if family.client_id != client.client_id:
        raise InvalidGrant("the refresh token was issued to another client")
    if family.revoked_at is not None:
        raise InvalidGrant("the refresh token has been revoked")
    return family


def handle(client: Client, form: MultiDict[str, str]) -> Issued:
    """Rotate a refresh token; ``omit_refresh_token`` answers without rotating (like Google)."""
    with transaction() as db:
        count(db, "refresh_attempts")
    faults = state().faults
    apply_faults(faults)
    presented = form.get("refresh_token")
    if not presented:
        raise InvalidRequest("refresh_token is required")
    settings, now = state().settings, state().now()
    rotate = faults.mode != "omit_refresh_token"
    with transaction() as db:
        row = db.get(RefreshToken, digest(presented))
        family = _family(row, db.get(TokenFamily, row.family_id) if row else None, client)
        scope = scopes.narrow(form.get("scope"), family.scope)
        if faults.mode == "narrow_scope":  # the provider grants less than before on refresh
            scope = family.scope.split()[0]
        if rotate:
            fresh = consume_refresh_token(db, digest(presented), now)
        else:
            fresh = row is not None and row.used_at is None
        if not fresh:
            revoke_family(db, family.id, now)
            db.commit()
            raise InvalidGrant("the refresh token was already used; the grant is revoked")
        issued = issue(db, family, scope, now, settings.access_token_ttl, refresh=rotate)
        count(db, "refresh_grants")
    if faults.mode == "string_expires_in":
        return replace(issued, expires_in_as_text=True)
    return issued
