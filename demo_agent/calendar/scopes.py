"""Scopes of the calendar API (RFC 6749 §3.3).

``offline_access`` is accepted and ignored: a refresh token is always issued,
and it never appears in a granted scope.
"""

from __future__ import annotations

from typing import Final

from .errors import InvalidScope

FREEBUSY: Final = "calendar.freebusy"
READ: Final = "calendar.read"
OFFLINE: Final = "offline_access"

DESCRIPTIONS: Final = {
    FREEBUSY: "See when you are busy or free (no event titles)",
    READ: "See your events, including their titles",
}
SUPPORTED: Final = [FREEBUSY, READ, OFFLINE]


def parse(raw: str | None) -> list[str]:
    """Granted scopes for a space-delimited request, in a stable order."""
    requested = set((raw or "").split())
    unknown = requested - set(SUPPORTED)
    if unknown:
        raise InvalidScope(f"unknown scope: {' '.join(sorted(unknown))}")
    granted: list[str] = [scope for scope in (FREEBUSY, READ) if scope in requested]
    if not granted:
        raise InvalidScope(f"request at least one of {FREEBUSY}, {READ}")
    return granted


def narrow(raw: str | None, granted: str) -> str:
    """§6: a refresh may ask for a subset of the original grant, never more."""
    if raw is None:
        return granted
    requested = parse(raw)
    if not set(requested) <= set(granted.split()):
        raise InvalidScope("the requested scope exceeds the original grant")
    return " ".join(requested)
