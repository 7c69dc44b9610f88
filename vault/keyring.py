"""Versioned key-encryption keys (KEKs) for the vault's envelope encryption.

Text format, as found in ``AUTHSERVER_VAULT_KEYS`` or the file named by
``AUTHSERVER_VAULT_KEYS_FILE``::

    # comment lines and blank lines are ignored
    1:<base64url of a 32-byte key>
    2:<base64url of a 32-byte key>, 3:<base64url of a 32-byte key>

Entries are separated by commas and/or newlines; base64url padding is optional.
The highest version is the active KEK: new records are wrapped with it, and older
versions stay only to open (and rewrap) records sealed before a rotation.

This module reads a file only when asked to (:meth:`KeyRing.from_file`); it never
reads the environment. Error messages name entries by position or version and
never echo key text.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from vault.errors import KeyRingError

KEK_LENGTH = 32
MIN_VERSION = 1
MAX_VERSION = 2**32 - 1  # the envelope stores the version in 4 bytes
_VERSION_TEXT = re.compile(r"[0-9]{1,10}")
_BASE64URL_TEXT = re.compile(r"[A-Za-z0-9_-]+={0,2}")


@dataclass(frozen=True)
class KeyRing:
    """An immutable set of KEKs by version, one of them active.

    ``active_version`` defaults to the highest version (pass nothing, or 0).
    ``keys`` is copied into a read-only mapping, so later changes to the mapping
    passed in do not affect the ring.
    """

    keys: Mapping[int, bytes]
    active_version: int = 0

    def __post_init__(self) -> None:
        keys = dict(self.keys)
        if not keys:
            raise KeyRingError("key ring is empty")
        for version, key in keys.items():
            _check_version(version)
            _check_key(version, key)
        active = self.active_version or max(keys)
        _check_version(active)
        if active not in keys:
            raise KeyRingError(f"active version {active} is not in the key ring")
        object.__setattr__(self, "keys", MappingProxyType(dict(sorted(keys.items()))))
        object.__setattr__(self, "active_version", active)

    def __repr__(self) -> str:
        return f"KeyRing(versions={list(self.keys)}, active_version={self.active_version})"

    def __hash__(self) -> int:
        return hash((tuple(self.keys), self.active_version))

    @property
    def versions(self) -> tuple[int, ...]:
        """The versions in the ring, ascending."""
        return tuple(self.keys)

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Parse the key ring text format (see the module docstring)."""
        keys: dict[int, bytes] = {}
        for position, entry in enumerate(_entries(text), start=1):
            version, key = _parse_entry(position, entry)
            if version in keys:
                raise KeyRingError(f"entry {position}: duplicate key version {version}")
            keys[version] = key
        if not keys:
            raise KeyRingError("key ring text contains no keys")
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Read and parse a key ring file (UTF-8 text in the format above)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            message = f"cannot read key ring file {os.fspath(path)!r}: {exc.strerror}"
            raise KeyRingError(message) from None
        except UnicodeDecodeError:
            raise KeyRingError(f"key ring file {os.fspath(path)!r} is not UTF-8 text") from None
        return cls.parse(text)

    @classmethod
    def generate(cls) -> KeyRing:
        """A fresh ring holding one random KEK as version 1."""
        return cls({MIN_VERSION: secrets.token_bytes(KEK_LENGTH)})

    def serialize(self) -> str:
        """One ``version:base64url`` line per key, ascending; :meth:`parse` reads it back.

        The text does not record the active version: parsing makes the highest
        version active, as :meth:`generate` and :meth:`with_new_key` do.
        """
        return "".join(f"{version}:{_encode(key)}\n" for version, key in self.keys.items())

    def with_new_key(self, key: bytes | None = None) -> KeyRing:
        """A new ring with ``key`` (random when None) added as version max+1 and active."""
        version = max(self.keys) + 1
        new_key = secrets.token_bytes(KEK_LENGTH) if key is None else key
        return KeyRing({**self.keys, version: new_key}, active_version=version)

    def without_key(self, version: int) -> KeyRing:
        """A new ring without ``version``, e.g. once every record has been rewrapped."""
        self.kek(version)
        if version == self.active_version:
            raise KeyRingError(f"cannot remove the active key version {version}")
        remaining = {v: key for v, key in self.keys.items() if v != version}
        return KeyRing(remaining, active_version=self.active_version)

    def kek(self, version: int) -> bytes:
        """The KEK for ``version``; KeyRingError if the ring does not hold it."""
        try:
            return self.keys[version]
        except (KeyError, TypeError):
            raise KeyRingError(f"unknown key version {version!r}") from None


def _check_version(version: object) -> None:
    if type(version) is not int or not MIN_VERSION <= version <= MAX_VERSION:
        raise KeyRingError(f"key versions must be integers from {MIN_VERSION} to {MAX_VERSION}")


def _check_key(version: int, key: object) -> None:
    if not isinstance(key, bytes):
        raise KeyRingError(f"key for version {version} must be bytes")
    if len(key) != KEK_LENGTH:
        raise KeyRingError(f"key for version {version} must be {KEK_LENGTH} bytes, not {len(key)}")


def _entries(text: str) -> Iterator[str]:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for entry in line.split(","):
            if entry.strip():
                yield entry.strip()


def _parse_entry(position: int, entry: str) -> tuple[int, bytes]:
    version_text, colon, key_text = entry.partition(":")
    if not colon:
        raise KeyRingError(f"entry {position}: expected '<version>:<base64url key>'")
    if not _VERSION_TEXT.fullmatch(version_text.strip()):
        raise KeyRingError(f"entry {position}: version is not a positive integer")
    return int(version_text), _decode_key(position, key_text.strip())


def _decode_key(position: int, text: str) -> bytes:
    if not _BASE64URL_TEXT.fullmatch(text):
        raise KeyRingError(f"entry {position}: key is not base64url (alphabet A-Z a-z 0-9 - _)")
    unpadded = text.rstrip("=")
    try:
        key = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except binascii.Error:
        raise KeyRingError(f"entry {position}: key is not valid base64url") from None
    if _encode(key) != unpadded:
        raise KeyRingError(f"entry {position}: key is not canonical base64url")
    return key


def _encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")
