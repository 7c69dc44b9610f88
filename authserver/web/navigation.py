"""Where a browser may be sent back to: relative paths on this server only."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_NEXT_LENGTH = 4000


def safe_next(value: str | None, default: str = "/") -> str:
    """`value` if it is a relative path on this server, else `default`.

    Refuses absolute and scheme-relative URLs (`//host`, `/\\host`), control
    characters and anything a browser could resolve to another origin.
    """
    if not value or len(value) > MAX_NEXT_LENGTH:
        return default
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value) or "\\" in value:
        return default
    if not value.startswith("/") or value.startswith("//"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value
