"""Scope vocabulary and resource indicators (RFC 8707).

Known scopes are the OIDC ones plus every scope a registered resource server
declares. A `resource` must be an absolute URI without a fragment (RFC 8707 §2)
naming a registered resource server; the token's `aud` is bound to it and its
scope narrowed to what that resource defines.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import ResourceServer
from .errors import InvalidTargetError

OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
MAX_RESOURCES = 5


def scope_list(scope: str | None) -> list[str]:
    """Scopes in request order, without duplicates."""
    return list(dict.fromkeys((scope or "").split()))


def known_scopes(session: Session) -> set[str]:
    scopes = set(OIDC_SCOPES)
    for resource_scopes in session.scalars(select(ResourceServer.scopes)):
        scopes.update(resource_scopes or [])
    return scopes


def _is_valid_resource_uri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc) and not parts.fragment and "#" not in value


def resolve_resources(session: Session, values: list[str]) -> list[ResourceServer]:
    """The registered resource servers named by `resource` parameters, else invalid_target."""
    if len(values) > MAX_RESOURCES:
        raise InvalidTargetError(f"At most {MAX_RESOURCES} 'resource' values are accepted.")
    found: list[ResourceServer] = []
    for value in dict.fromkeys(values):
        if not _is_valid_resource_uri(value):
            raise InvalidTargetError("Each 'resource' must be an absolute URI without fragment.")
        server = session.scalar(select(ResourceServer).where(ResourceServer.identifier == value))
        if server is None:
            raise InvalidTargetError("The 'resource' is not a registered resource server.")
        found.append(server)
    return found


def narrow_to_resources(scopes: list[str], resources: list[ResourceServer]) -> list[str]:
    """Scopes meaningful at the given resources (all scopes when none is named)."""
    if not resources:
        return scopes
    offered = {scope for server in resources for scope in server.scopes}
    return [scope for scope in scopes if scope in offered]


def audience_for(resources: list[ResourceServer], issuer: str) -> str | list[str]:
    """RFC 9068 §3 `aud`: the resource(s), or this server (its userinfo) when none is named."""
    identifiers = [server.identifier for server in resources]
    if not identifiers:
        return issuer
    return identifiers[0] if len(identifiers) == 1 else identifiers
