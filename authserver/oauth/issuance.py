"""Token responses shared by the grants (RFC 6749 §5.1, RFC 9068, RFC 9396 §7).

A user grant produces a `Grant` row (the refresh-token family); access tokens
and refresh tokens issued from it point at it, so revoking the grant revokes
them all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..models import AccessTokenRecord, Client, Grant, User, now
from ..registry import ClientSnapshot, ResourceSnapshot
from ..settings import Settings
from ..tokens import AccessTokenSpec, issue_refresh_token
from .scopes import audience_for, narrow_to_resources, scope_list


def access_token_spec(
    settings: Settings,
    *,
    client: Client | ClientSnapshot,
    subject: str,
    scope: str,
    resources: list[ResourceSnapshot],
    grant: Grant | None,
    ttl: int | None = None,
    auth_time: int | None = None,
    authorization_details: list[dict[str, Any]] | None = None,
) -> AccessTokenSpec:
    return AccessTokenSpec(
        client_id=client.client_id,
        subject=subject,
        audience=audience_for(resources, settings.issuer),
        scope=" ".join(narrow_to_resources(scope_list(scope), resources)),
        ttl=ttl or settings.access_token_ttl,
        grant_id=grant.id if grant else None,
        auth_time=auth_time,
        authorization_details=authorization_details,
    )


def token_body(issued: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """RFC 6749 §5.1; `scope` is the access token's own (it may be narrower than the grant)."""
    body: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.claims["scope"],
    }
    if issued.claims.get("authorization_details"):
        body["authorization_details"] = issued.claims["authorization_details"]
    body.update(extra or {})
    return body


def issue_from_grant(
    server: Any,
    *,
    grant: Grant,
    client: Client | ClientSnapshot,
    user: User,
    scope: str,
    resources: list[ResourceSnapshot],
    with_refresh_token: bool,
    refresh_scope: str | None = None,
) -> dict[str, Any]:
    """An access token (and optionally a new refresh token) for an existing grant.

    A rotated refresh token keeps the scope of its predecessor (RFC 6749 §6) even
    when this access token was narrowed.
    """
    session = server.db()
    spec = access_token_spec(
        server.runtime.settings,
        client=client,
        subject=user.id,
        scope=scope,
        resources=resources,
        grant=grant,
        auth_time=grant.auth_time,
        authorization_details=grant.authorization_details,
    )
    issued = server.runtime.minter.access_token(session, spec)
    body = token_body(issued)
    if with_refresh_token:
        ttl = server.runtime.settings.refresh_token_ttl
        body["refresh_token"] = issue_refresh_token(
            session, grant, client.client_id, refresh_scope or scope, ttl
        )
    return body


def issue_for_new_grant(
    server: Any,
    *,
    client: Client | ClientSnapshot,
    user: User,
    scope: str,
    resources: list[ResourceSnapshot],
    authorization_details: list[dict[str, Any]] | None,
    auth_time: int | None,
) -> tuple[dict[str, Any], Grant]:
    settings = server.runtime.settings
    grant = Grant(
        user_id=user.id,
        client_id=client.client_id,
        scope=scope,
        resources=[resource.identifier for resource in resources],
        authorization_details=authorization_details,
        auth_time=auth_time,
        expires_at=now() + settings.refresh_token_ttl,
    )
    server.db().add(grant)
    server.db().flush()
    body = issue_from_grant(
        server,
        grant=grant,
        client=client,
        user=user,
        scope=scope,
        resources=resources,
        # Approved authorization_details cover one action (RFC 9396 §7 leaves refreshing
        # them to the server): each refreshed token would be able to repeat it.
        with_refresh_token="refresh_token" in (client.grant_types or [])
        and not authorization_details,
    )
    return body, grant


def revoke_grant(session: Session, grant_id: str, reason: str) -> None:
    """Revoke a grant: its refresh tokens stop working and its access tokens go inactive."""
    moment = now()
    session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=moment, revoked_reason=reason)
    )
    session.execute(
        update(AccessTokenRecord)
        .where(AccessTokenRecord.grant_id == grant_id, AccessTokenRecord.revoked_at.is_(None))
        .values(revoked_at=moment)
    )


def revoke_reused_family(server: Any, grant: Grant | None) -> None:
    """RFC 9700 §4.14.2: a retired refresh token presented again means the family leaked.

    Revoke the whole grant (the legitimate holder's newest tokens too), audit it, and
    commit at once: the request that revealed the reuse is answered with an error, and
    the revocation must outlive that error's rollback. Used by every grant that accepts
    a refresh token (the refresh grant, and token exchange with a refresh-token subject).
    """
    if grant is None or grant.revoked_at is not None:
        return
    revoke_grant(server.db(), grant.id, "refresh_token_reused")
    server.record(
        "token.refresh_reused",
        "refused",
        user_id=grant.user_id,
        client_id=grant.client_id,
        details={"grant_id": grant.id, "action": "grant revoked"},
    )
    server.commit()
