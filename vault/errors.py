"""Exceptions raised by the vault core.

Decryption failures are deliberately opaque: every way a ciphertext can fail to
open (tampering, wrong associated data, unknown key version, truncation, garbage)
raises the same :class:`DecryptionError` with the same message, so an error can
never act as an oracle or leak key material, plaintext or ciphertext.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base class for every error raised by the vault."""


class DecryptionError(VaultError):
    """A ciphertext could not be opened, for whatever reason.

    It always carries :attr:`MESSAGE` and takes no arguments, so no caller can put
    details into it by accident.
    """

    MESSAGE = "ciphertext could not be decrypted"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class KeyRingError(VaultError):
    """The key ring is misconfigured (malformed text, bad key length, duplicates, ...).

    Messages name entries by position or version, never by their key text.
    """


class ConnectionRequired(VaultError):
    """The user must (re)connect the account: none, missing scopes, or upstream revoked it.

    `reason` is one of "not_connected", "missing_scopes", "reconnect_required";
    `scopes` are the scopes the new connection should ask for.
    """

    def __init__(self, reason: str, connection: str, scopes: list[str]) -> None:
        super().__init__(f"{connection}: {reason}")
        self.reason = reason
        self.connection = connection
        self.scopes = scopes


class UpstreamError(VaultError):
    """The upstream provider failed (timeout, 5xx, malformed answer); no token is served.

    `kind` is "timeout", "unavailable", "bad_response" or "rejected"; never a token.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"upstream {kind}" + (f": {detail}" if detail else ""))
        self.kind = kind
        self.detail = detail


class ConnectFailed(VaultError):
    """A connect callback cannot be completed (unknown or replayed state, upstream refusal)."""
