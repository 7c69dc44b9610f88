"""The token vault's crypto core: versioned key ring and envelope encryption.

Upstream refresh tokens and cached upstream access tokens are stored only as
ciphertext made by :func:`seal`: AES-256-GCM under a fresh data key per record,
the data key wrapped by the active key-encryption key (KEK) of a :class:`KeyRing`,
and associated data binding each ciphertext to its row, user and connection
(:func:`associated_data`). :func:`rewrap` moves records to a new KEK without ever
exposing plaintext. Every failure to open a record is one opaque
:class:`DecryptionError`.

The vault core takes its key ring (and, in the modules that need one, its clock)
as arguments and never reads the environment; the application builds the ring
from its settings (``KeyRing.parse`` / ``KeyRing.from_file``). This package
imports neither Flask nor ``authserver``, and ``tests/vault`` proves it.
"""

from vault.envelope import (
    FORMAT_V1,
    HEADER_LENGTH,
    MIN_SEALED_LENGTH,
    associated_data,
    key_version,
    rewrap,
    seal,
    unseal,
)
from vault.errors import DecryptionError, KeyRingError, VaultError
from vault.keyring import KEK_LENGTH, KeyRing

__all__ = [
    "FORMAT_V1",
    "HEADER_LENGTH",
    "KEK_LENGTH",
    "MIN_SEALED_LENGTH",
    "DecryptionError",
    "KeyRing",
    "KeyRingError",
    "VaultError",
    "associated_data",
    "key_version",
    "rewrap",
    "seal",
    "unseal",
]
