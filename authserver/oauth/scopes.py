"""Scope vocabulary and resource indicators (RFC 8707).

Known scopes are the OIDC ones plus every scope a registered resource server
declares. A `resource` must be an absolute URI without a fragment (RFC 8707 §2)
naming a registered resource server; the token's `aud` is bound to it and its
scope narrowed to what that resource defines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import ResourceServer
from ..registry import ResourceSnapshot
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
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 literal: malformed, so invalid_target, not a 500
        return False
    return bool(parts.scheme and parts.netloc) and not parts.fragment and "#" not in value


def resolve_resources(
    lookup: Callable[[str], ResourceSnapshot | None],
    values: list[str],
    parameter: str = "resource",
) -> list[ResourceSnapshot]:
    """The registered resource servers named by `resource` parameters, else invalid_target.

    `lookup` is the registry's (`AuthorizationServer.resource`, `Registry.resource`);
    `parameter` is the name the client used, so the error names what it sent.
    """
    if len(values) > MAX_RESOURCES:
        raise InvalidTargetError(f"At most {MAX_RESOURCES} '{parameter}' values are accepted.")
    found: list[ResourceSnapshot] = []
    for value in dict.fromkeys(values):
        if not _is_valid_resource_uri(value):
            raise InvalidTargetError(
                f"Each '{parameter}' must be an absolute URI without fragment."
            )
        server = lookup(value)
        if server is None:
            raise InvalidTargetError(f"The '{parameter}' is not a registered resource server.")
        found.append(server)
    return found


def narrow_to_resources(scopes: list[str], resources: Sequence[ResourceSnapshot]) -> list[str]:
    """Scopes meaningful at the given resources (all scopes when none is named)."""
    if not resources:
        return scopes
    offered = {scope for server in resources for scope in server.scopes}
    return [scope for scope in scopes if scope in offered]


def audience_for(resources: Sequence[ResourceSnapshot], issuer: str) -> str | list[str]:
    """RFC 9068 §3 `aud`: the resource(s), or this server (its userinfo) when none is named."""
    identifiers = [server.identifier for server in resources]
    if not identifiers:
        return issuer
    return identifiers[0] if len(identifiers) == 1 else identifiers
