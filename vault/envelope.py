"""AES-256-GCM envelope encryption for vault records.

Every record gets a fresh random 256-bit data key. The record is encrypted under
that data key, and the data key is encrypted ("wrapped") under the key ring's
active key-encryption key (KEK). Rotating KEKs therefore rewraps 48 bytes per
record (:func:`rewrap`) and never touches or exposes the record's plaintext.

Binary format (integers big-endian)::

    offset  length  field
    0       1       format byte, FORMAT_V1 = 0x01
    1       4       KEK version, unsigned
    5       12      wrap nonce
    17      48      wrapped data key = AES-256-GCM(KEK, wrap nonce, data key,
                                                   aad = header)       (32 + 16 tag)
    65      12      data nonce
    77      n + 16  record ciphertext = AES-256-GCM(data key, data nonce, plaintext,
                                                    aad = format byte || associated data)

    header = format byte || KEK version (bytes 0-4)

Bindings:

* The header is the associated data of the key wrap, so changing the format byte
  or the version field makes the unwrap fail (another version also selects
  another KEK, or none).
* The record's associated data is the format byte followed by the caller's
  associated data (see :func:`associated_data`), binding the ciphertext to its
  row, user, connection and purpose: a record copied elsewhere does not open.
  The KEK version is deliberately not part of it, because :func:`rewrap` changes
  the version without re-encrypting the record; the version is authenticated by
  the wrap instead. Splicing one record's wrap onto another record's ciphertext
  fails because their data keys differ.

Nonces are 96-bit random values from ``random_bytes`` (injectable for known-answer
tests). Each data key encrypts exactly one record; with random wrap nonces a KEK
should wrap far fewer than 2**32 data keys (NIST SP 800-38D, 8.3): rotate before.

Every failure to open a record raises the one opaque :class:`DecryptionError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import DecryptionError, KeyRingError, VaultError
from vault.keyring import KeyRing

FORMAT_V1 = 0x01
FORMAT_LENGTH = 1
VERSION_LENGTH = 4
HEADER_LENGTH = FORMAT_LENGTH + VERSION_LENGTH
NONCE_LENGTH = 12
DATA_KEY_LENGTH = 32
TAG_LENGTH = 16
WRAPPED_KEY_LENGTH = DATA_KEY_LENGTH + TAG_LENGTH
WRAP_NONCE_OFFSET = HEADER_LENGTH
WRAPPED_KEY_OFFSET = WRAP_NONCE_OFFSET + NONCE_LENGTH
DATA_NONCE_OFFSET = WRAPPED_KEY_OFFSET + WRAPPED_KEY_LENGTH
BODY_OFFSET = DATA_NONCE_OFFSET + NONCE_LENGTH
MIN_SEALED_LENGTH = BODY_OFFSET + TAG_LENGTH
AAD_PART_LENGTH_BYTES = 4

_FORMAT_PREFIX = bytes([FORMAT_V1])
_OPEN_FAILURES = (InvalidTag, TypeError, ValueError, OverflowError)

RandomBytes = Callable[[int], bytes]


class _Parsed(NamedTuple):
    version: int
    header: bytes
    wrap_nonce: bytes
    wrapped_key: bytes
    data_nonce: bytes
    body: bytes


def seal(
    keyring: KeyRing,
    plaintext: bytes,
    associated_data: bytes,
    *,
    random_bytes: RandomBytes = os.urandom,
) -> bytes:
    """Encrypt ``plaintext`` bound to ``associated_data`` under the active KEK.

    ``random_bytes`` is called three times, in this order: data key (32 bytes),
    wrap nonce (12), data nonce (12).
    """
    data_key = _random(random_bytes, DATA_KEY_LENGTH)
    envelope = _wrap(keyring, data_key, random_bytes)
    data_nonce = _random(random_bytes, NONCE_LENGTH)
    body = AESGCM(data_key).encrypt(data_nonce, plaintext, _FORMAT_PREFIX + associated_data)
    return envelope + data_nonce + body


def unseal(keyring: KeyRing, sealed: bytes, associated_data: bytes) -> bytes:
    """Decrypt a record sealed with the same ``associated_data``.

    Raises DecryptionError for every failure, with no chained cause.
    """
    parsed = _parse(sealed)
    aead = AESGCM(_unwrap(keyring, parsed))
    try:
        return aead.decrypt(parsed.data_nonce, parsed.body, _FORMAT_PREFIX + associated_data)
    except _OPEN_FAILURES:
        raise DecryptionError from None


def rewrap(keyring: KeyRing, sealed: bytes, *, random_bytes: RandomBytes = os.urandom) -> bytes:
    """Re-wrap the record's data key under the active KEK; the ciphertext is kept.

    Returns ``sealed`` itself when it is already under the active version. The
    key wrap is authenticated either way (DecryptionError if it does not open);
    the record ciphertext is checked only by :func:`unseal`, which has its
    associated data. ``random_bytes`` supplies the new wrap nonce.
    """
    parsed = _parse(sealed)
    data_key = _unwrap(keyring, parsed)
    if parsed.version == keyring.active_version:
        return sealed
    return _wrap(keyring, data_key, random_bytes) + sealed[DATA_NONCE_OFFSET:]


def key_version(sealed: bytes) -> int:
    """The KEK version named by the record's header (DecryptionError if malformed).

    The header is not authenticated here; use this to find records to rewrap,
    not to decide whether to trust one.
    """
    return _parse(sealed).version


def associated_data(*parts: str) -> bytes:
    """Canonical encoding of context parts: each is a 4-byte length, then UTF-8.

    Length prefixes make it unambiguous: ``("a", "bc")`` and ``("ab", "c")`` differ.
    """
    encoded = bytearray()
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"associated data parts must be str, not {type(part).__name__}")
        data = part.encode("utf-8")
        encoded += len(data).to_bytes(AAD_PART_LENGTH_BYTES, "big") + data
    return bytes(encoded)


def _random(random_bytes: RandomBytes, length: int) -> bytes:
    value = random_bytes(length)
    if not isinstance(value, bytes) or len(value) != length:
        raise VaultError(f"random_bytes did not return {length} bytes")
    return value


def _wrap(keyring: KeyRing, data_key: bytes, random_bytes: RandomBytes) -> bytes:
    """Header, wrap nonce and wrapped data key under the active KEK."""
    version = keyring.active_version
    header = _FORMAT_PREFIX + version.to_bytes(VERSION_LENGTH, "big")
    wrap_nonce = _random(random_bytes, NONCE_LENGTH)
    wrapped_key = AESGCM(keyring.kek(version)).encrypt(wrap_nonce, data_key, header)
    return header + wrap_nonce + wrapped_key


def _parse(sealed: bytes) -> _Parsed:
    if not isinstance(sealed, bytes) or len(sealed) < MIN_SEALED_LENGTH:
        raise DecryptionError
    if sealed[0] != FORMAT_V1:
        raise DecryptionError
    return _Parsed(
        version=int.from_bytes(sealed[FORMAT_LENGTH:HEADER_LENGTH], "big"),
        header=sealed[:HEADER_LENGTH],
        wrap_nonce=sealed[WRAP_NONCE_OFFSET:WRAPPED_KEY_OFFSET],
        wrapped_key=sealed[WRAPPED_KEY_OFFSET:DATA_NONCE_OFFSET],
        data_nonce=sealed[DATA_NONCE_OFFSET:BODY_OFFSET],
        body=sealed[BODY_OFFSET:],
    )


def _unwrap(keyring: KeyRing, parsed: _Parsed) -> bytes:
    """The record's data key; DecryptionError for an unknown version or a bad wrap."""
    try:
        kek = keyring.kek(parsed.version)
        return AESGCM(kek).decrypt(parsed.wrap_nonce, parsed.wrapped_key, parsed.header)
    except (KeyRingError, *_OPEN_FAILURES):
        raise DecryptionError from None
