"""Envelope encryption (vault.envelope): known-answer vectors, invalid vectors, rewrap.

DESIGN.md "Token vault": AES-256-GCM with a fresh data key per record, the data
key wrapped by a versioned KEK; associated data binds a ciphertext to its row,
user and connection; rotation rewraps without exposing plaintext; every failure
is one opaque DecryptionError.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault import (
    DecryptionError,
    KeyRing,
    VaultError,
    associated_data,
    key_version,
    rewrap,
    seal,
    unseal,
)
from vault.envelope import (
    BODY_OFFSET,
    DATA_NONCE_OFFSET,
    HEADER_LENGTH,
    MIN_SEALED_LENGTH,
    WRAP_NONCE_OFFSET,
    WRAPPED_KEY_OFFSET,
)

ScriptedRandom = Callable[..., Callable[[int], bytes]]  # the conftest fixture's type

# Known-answer inputs. Every value is fixed so the sealed bytes are deterministic.
KAT_VERSION = 7
KAT_KEK = bytes(range(0x00, 0x20))
KAT_DATA_KEY = bytes(range(0x40, 0x60))
KAT_WRAP_NONCE = bytes(range(0xA0, 0xAC))
KAT_DATA_NONCE = bytes(range(0xB0, 0xBC))
KAT_PLAINTEXT = b"upstream-refresh-token"
KAT_AAD_PARTS = ("connected_account", "42", "alice", "calendar", "refresh_token")
KAT_AAD_HEX = (
    "00000011636f6e6e65637465645f6163636f756e74"  # len 17, "connected_account"
    "000000023432"  # len 2, "42"
    "00000005616c696365"  # len 5, "alice"
    "0000000863616c656e646172"  # len 8, "calendar"
    "0000000d726566726573685f746f6b656e"  # len 13, "refresh_token"
)
KAT_SEALED_HEX = (
    "01"  # format byte
    "00000007"  # KEK version 7
    "a0a1a2a3a4a5a6a7a8a9aaab"  # wrap nonce
    "a6593e6e018e44f82a2ccd984b378e9120fd0b43c6e2143bc4577cdd23f62b5e"  # wrapped data key
    "5a2bfe015610f3aae16aee1ccfff6761"  # wrap tag
    "b0b1b2b3b4b5b6b7b8b9babb"  # data nonce
    "7670f3f1b32f8af4169c429e9f933fa3937ceb43217b"  # record ciphertext
    "3302de5d903e6d9718b2c1e874c9593f"  # record tag
)
# The same record after rewrap to version 8 (KEK 0x20..0x3f, wrap nonce 0xc0..0xcb).
KAT_NEW_KEK = bytes(range(0x20, 0x40))
KAT_REWRAP_NONCE = bytes(range(0xC0, 0xCC))
KAT_REWRAPPED_HEX = (
    "01"  # format byte
    "00000008"  # KEK version 8
    "c0c1c2c3c4c5c6c7c8c9cacb"  # new wrap nonce
    "2ad27bb2c72a0dac326c14f065908d43d11dd08348f2003a21165afaa9ecf76b"  # rewrapped data key
    "c24bd87e111133d34e0c0a9a9eb098e1"  # new wrap tag
    "b0b1b2b3b4b5b6b7b8b9babb"  # data nonce, unchanged
    "7670f3f1b32f8af4169c429e9f933fa3937ceb43217b"  # record ciphertext, unchanged
    "3302de5d903e6d9718b2c1e874c9593f"  # record tag, unchanged
)

# Byte offsets inside a sealed record, one or more per field of the binary format.
FIELD_POSITIONS = [
    ("format byte", 0),
    ("version field, high byte", 1),
    ("version field, low byte", HEADER_LENGTH - 1),
    ("wrap nonce, first byte", WRAP_NONCE_OFFSET),
    ("wrap nonce, last byte", WRAPPED_KEY_OFFSET - 1),
    ("wrapped key, first byte", WRAPPED_KEY_OFFSET),
    ("wrapped key, last byte of key", WRAPPED_KEY_OFFSET + 31),
    ("wrap tag, last byte", DATA_NONCE_OFFSET - 1),
    ("data nonce, first byte", DATA_NONCE_OFFSET),
    ("data nonce, last byte", BODY_OFFSET - 1),
    ("ciphertext body, first byte", BODY_OFFSET),
    ("record tag, first byte", -16),
    ("record tag, last byte", -1),
]


def kat_ring() -> KeyRing:
    return KeyRing({KAT_VERSION: KAT_KEK})


def kat_seal(scripted_random: ScriptedRandom) -> bytes:
    random_bytes = scripted_random(KAT_DATA_KEY, KAT_WRAP_NONCE, KAT_DATA_NONCE)
    aad = associated_data(*KAT_AAD_PARTS)
    return seal(kat_ring(), KAT_PLAINTEXT, aad, random_bytes=random_bytes)


def flip(sealed: bytes, position: int, mask: int = 0x01) -> bytes:
    tampered = bytearray(sealed)
    tampered[position] ^= mask
    return bytes(tampered)


def assert_opaque(error: DecryptionError) -> None:
    """The one opaque error: fixed message, no cause, no context shown in tracebacks."""
    assert str(error) == "ciphertext could not be decrypted"
    assert error.args == (DecryptionError.MESSAGE,)
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None
    rendered = "".join(traceback.format_exception(error))
    assert "InvalidTag" not in rendered and "KeyRingError" not in rendered


def assert_unseal_fails(ring: KeyRing, sealed: Any, aad: Any) -> None:
    with pytest.raises(DecryptionError) as excinfo:
        unseal(ring, sealed, aad)
    assert_opaque(excinfo.value)


# --- known-answer vectors ---------------------------------------------------------


def test_associated_data_known_answer() -> None:
    """associated_data is 4-byte big-endian length + UTF-8 per part (fixed encoding)."""
    assert associated_data(*KAT_AAD_PARTS) == bytes.fromhex(KAT_AAD_HEX)


def test_seal_known_answer_vector(scripted_random: ScriptedRandom) -> None:
    """With fixed KEK, data key and nonces, seal yields exactly the published bytes."""
    assert kat_seal(scripted_random) == bytes.fromhex(KAT_SEALED_HEX)


def test_known_answer_vector_recomputed_with_aesgcm_primitives() -> None:
    """The vector follows the documented format, rebuilt here from AESGCM alone.

    header = 0x01 || version (4 bytes BE); wrap = AESGCM(KEK).encrypt(wrap nonce,
    data key, header); body = AESGCM(data key).encrypt(data nonce, plaintext,
    0x01 || associated data).
    """
    header = bytes([0x01]) + KAT_VERSION.to_bytes(4, "big")
    wrapped = AESGCM(KAT_KEK).encrypt(KAT_WRAP_NONCE, KAT_DATA_KEY, header)
    aad = bytes.fromhex(KAT_AAD_HEX)
    body = AESGCM(KAT_DATA_KEY).encrypt(KAT_DATA_NONCE, KAT_PLAINTEXT, b"\x01" + aad)
    expected = header + KAT_WRAP_NONCE + wrapped + KAT_DATA_NONCE + body
    assert expected == bytes.fromhex(KAT_SEALED_HEX)


def test_known_answer_vector_unseals() -> None:
    """The hard-coded vector opens with the KAT ring and associated data."""
    sealed = bytes.fromhex(KAT_SEALED_HEX)
    assert unseal(kat_ring(), sealed, bytes.fromhex(KAT_AAD_HEX)) == KAT_PLAINTEXT
    assert key_version(sealed) == KAT_VERSION


def test_rewrap_known_answer_vector() -> None:
    """Rewrap replaces header, wrap nonce and wrapped key only, as rebuilt from AESGCM."""
    ring = kat_ring().with_new_key(KAT_NEW_KEK)
    sealed = bytes.fromhex(KAT_SEALED_HEX)
    rewrapped = rewrap(ring, sealed, random_bytes=lambda n: KAT_REWRAP_NONCE[:n])
    assert rewrapped == bytes.fromhex(KAT_REWRAPPED_HEX)
    header = b"\x01" + (KAT_VERSION + 1).to_bytes(4, "big")
    wrapped = AESGCM(KAT_NEW_KEK).encrypt(KAT_REWRAP_NONCE, KAT_DATA_KEY, header)
    assert rewrapped == header + KAT_REWRAP_NONCE + wrapped + sealed[DATA_NONCE_OFFSET:]
    assert unseal(ring, rewrapped, bytes.fromhex(KAT_AAD_HEX)) == KAT_PLAINTEXT


def test_layout_constants_match_documented_format() -> None:
    """Offsets: header 5, wrap nonce 12, wrapped key 48, data nonce 12, tag 16."""
    assert (HEADER_LENGTH, WRAP_NONCE_OFFSET, WRAPPED_KEY_OFFSET) == (5, 5, 17)
    assert (DATA_NONCE_OFFSET, BODY_OFFSET, MIN_SEALED_LENGTH) == (65, 77, 93)
    assert len(bytes.fromhex(KAT_SEALED_HEX)) == MIN_SEALED_LENGTH + len(KAT_PLAINTEXT)


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024], ids=["empty", "1-byte", "1-MiB"])
def test_round_trip(ring: KeyRing, aad: bytes, size: int) -> None:
    """unseal(seal(p)) == p for empty, one-byte and 1 MiB plaintexts."""
    plaintext = os.urandom(size)
    sealed = seal(ring, plaintext, aad)
    assert len(sealed) == MIN_SEALED_LENGTH + size
    assert unseal(ring, sealed, aad) == plaintext


def test_two_seals_of_same_plaintext_differ(ring: KeyRing, aad: bytes) -> None:
    """Fresh data key and nonces per record: equal plaintexts give unrelated records."""
    first, second = seal(ring, b"same", aad), seal(ring, b"same", aad)
    assert first[:HEADER_LENGTH] == second[:HEADER_LENGTH]
    assert (
        first[WRAP_NONCE_OFFSET:WRAPPED_KEY_OFFSET] != second[WRAP_NONCE_OFFSET:WRAPPED_KEY_OFFSET]
    )
    assert (
        first[WRAPPED_KEY_OFFSET:DATA_NONCE_OFFSET] != second[WRAPPED_KEY_OFFSET:DATA_NONCE_OFFSET]
    )
    assert first[BODY_OFFSET:] != second[BODY_OFFSET:]


def test_seal_rejects_short_randomness(ring: KeyRing, aad: bytes) -> None:
    """A random source returning the wrong length is a VaultError, never a weak record."""
    with pytest.raises(VaultError, match="random_bytes did not return 32 bytes"):
        seal(ring, b"x", aad, random_bytes=lambda n: b"\x00" * (n - 1))


# --- invalid vectors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "position"), FIELD_POSITIONS, ids=[f for f, _ in FIELD_POSITIONS]
)
def test_single_byte_flip_in_each_field_fails(field: str, position: int) -> None:
    """A flipped bit in any field (header, wrap, nonce, body, tag) is DecryptionError."""
    sealed = bytes.fromhex(KAT_SEALED_HEX)
    assert_unseal_fails(kat_ring(), flip(sealed, position), bytes.fromhex(KAT_AAD_HEX))


def test_every_bit_flip_anywhere_fails() -> None:
    """Exhaustively: no single-bit change anywhere in a record still opens."""
    sealed, ring, aad = bytes.fromhex(KAT_SEALED_HEX), kat_ring(), bytes.fromhex(KAT_AAD_HEX)
    for position in range(len(sealed)):
        for bit in range(8):
            assert_unseal_fails(ring, flip(sealed, position, 1 << bit), aad)


def test_version_field_pointing_at_another_present_kek_fails(aad: bytes) -> None:
    """The header is the wrap's associated data: relabelling to a known version fails."""
    ring = KeyRing.generate().with_new_key()
    sealed = seal(ring, b"secret", aad)
    relabelled = sealed[:1] + (1).to_bytes(4, "big") + sealed[HEADER_LENGTH:]
    assert key_version(relabelled) == 1
    assert_unseal_fails(ring, relabelled, aad)


def test_version_zero_fails(ring: KeyRing, aad: bytes) -> None:
    """Version 0 is never a valid KEK version."""
    sealed = seal(ring, b"secret", aad)
    assert_unseal_fails(ring, sealed[:1] + bytes(4) + sealed[HEADER_LENGTH:], aad)


@pytest.mark.parametrize("length", [0, 1, 4, 5, 16, 17, 64, 65, 76, 77, 92, 93, -1])
def test_truncated_record_fails(length: int) -> None:
    """Truncation at any length (including empty input) is DecryptionError."""
    sealed = bytes.fromhex(KAT_SEALED_HEX)
    assert_unseal_fails(kat_ring(), sealed[:length], bytes.fromhex(KAT_AAD_HEX))


def test_extended_record_fails() -> None:
    """Appending bytes breaks the record tag."""
    sealed = bytes.fromhex(KAT_SEALED_HEX)
    assert_unseal_fails(kat_ring(), sealed + b"\x00", bytes.fromhex(KAT_AAD_HEX))


@pytest.mark.parametrize("garbage", [None, "01abcd", 42, [1, 2], bytearray(200), b"\x01" * 200])
def test_garbage_and_wrong_types_fail(garbage: object) -> None:
    """Anything that is not a well-formed record of bytes is DecryptionError."""
    assert_unseal_fails(kat_ring(), garbage, bytes.fromhex(KAT_AAD_HEX))


@pytest.mark.parametrize(
    "parts",
    [
        ("connected_account", "43", "alice", "calendar", "refresh_token"),
        ("connected_account", "42", "bob", "calendar", "refresh_token"),
        ("connected_account", "42", "alice", "github", "refresh_token"),
        ("connected_account", "42", "alice", "calendar", "access_token"),
        ("connected_account", "42", "calendar", "alice", "refresh_token"),
        ("connected_account", "42", "alice", "calendar"),
        ("connected_account", "42", "alice", "calendar", "refresh_token", ""),
        (),
    ],
    ids=["row", "user", "connection", "purpose", "swapped", "missing", "extra", "none"],
)
def test_wrong_associated_data_fails(parts: tuple[str, ...]) -> None:
    """A record copied into another context (row, user, connection, order) does not open."""
    sealed = bytes.fromhex(KAT_SEALED_HEX)
    assert_unseal_fails(kat_ring(), sealed, associated_data(*parts))


def test_associated_data_is_not_raw_concatenation(ring: KeyRing) -> None:
    """("a", "bc") and ("ab", "c") encode differently and do not open each other."""
    assert associated_data("a", "bc") != associated_data("ab", "c")
    sealed = seal(ring, b"secret", associated_data("a", "bc"))
    assert_unseal_fails(ring, sealed, associated_data("ab", "c"))


def test_associated_data_of_wrong_type_fails() -> None:
    """A str where associated-data bytes belong is DecryptionError, not a TypeError leak."""
    assert_unseal_fails(kat_ring(), bytes.fromhex(KAT_SEALED_HEX), cast(Any, "text"))


def test_unknown_key_version_fails(ring: KeyRing, aad: bytes) -> None:
    """A record under a KEK the ring does not hold is DecryptionError."""
    sealed = seal(ring.with_new_key(), b"secret", aad)
    assert key_version(sealed) == 2
    assert_unseal_fails(ring, sealed, aad)


def test_spliced_wrap_from_other_record_fails(ring: KeyRing, aad: bytes) -> None:
    """One record's data key cannot open another record's ciphertext."""
    first, second = seal(ring, b"first", aad), seal(ring, b"second", aad)
    assert_unseal_fails(ring, first[:DATA_NONCE_OFFSET] + second[DATA_NONCE_OFFSET:], aad)


def test_wrong_kek_fails(aad: bytes) -> None:
    """Same version number, different KEK (another deployment's ring): DecryptionError."""
    sealed = seal(KeyRing.generate(), b"secret", aad)
    assert_unseal_fails(KeyRing.generate(), sealed, aad)


def test_error_never_contains_secrets(scripted_random: ScriptedRandom) -> None:
    """The error's text and traceback carry no key, plaintext or ciphertext."""
    sealed = kat_seal(scripted_random)
    with pytest.raises(DecryptionError) as excinfo:
        unseal(kat_ring(), flip(sealed, -1), b"wrong")
    rendered = "".join(traceback.format_exception(excinfo.value))
    for secret in (KAT_KEK, KAT_DATA_KEY, KAT_PLAINTEXT, sealed):
        assert secret.hex() not in rendered and repr(secret) not in rendered


# --- key_version ---------------------------------------------------------------------


def test_key_version_reads_header(ring: KeyRing, aad: bytes) -> None:
    """key_version names the KEK version that wrapped the record."""
    assert key_version(seal(ring, b"x", aad)) == 1
    assert key_version(seal(ring.with_new_key(), b"x", aad)) == 2


@pytest.mark.parametrize("garbage", [b"", b"\x01\x00\x00\x00\x01", b"\x02" + bytes(100), None])
def test_key_version_of_garbage_fails(garbage: object) -> None:
    """Garbage (short, unknown format byte, wrong type) is DecryptionError."""
    with pytest.raises(DecryptionError) as excinfo:
        key_version(cast(Any, garbage))
    assert_opaque(excinfo.value)


# --- associated_data -----------------------------------------------------------------


def test_associated_data_edge_cases() -> None:
    """No parts is empty; empty parts still count; UTF-8 lengths are in bytes."""
    assert associated_data() == b""
    assert associated_data("") == bytes(4)
    assert associated_data("a") != associated_data("a", "")
    assert associated_data("é") == b"\x00\x00\x00\x02\xc3\xa9"


def test_associated_data_rejects_non_str() -> None:
    """Parts must be str: an int row id must be converted explicitly by the caller."""
    with pytest.raises(TypeError, match="must be str"):
        associated_data("connected_account", cast(Any, 42))


# --- rewrap ---------------------------------------------------------------------------


def test_rewrap_moves_record_to_new_kek(ring: KeyRing, aad: bytes) -> None:
    """After a new KEK, rewrap moves the record; it opens with the same AAD, old KEK gone."""
    sealed = seal(ring, b"refresh-token", aad)
    rotated = ring.with_new_key()
    rewrapped = rewrap(rotated, sealed)
    assert key_version(rewrapped) == 2
    assert rewrapped[DATA_NONCE_OFFSET:] == sealed[DATA_NONCE_OFFSET:]
    assert unseal(rotated, rewrapped, aad) == b"refresh-token"
    retired = rotated.without_key(1)
    assert unseal(retired, rewrapped, aad) == b"refresh-token"
    assert_unseal_fails(retired, sealed, aad)


def test_rewrap_at_active_version_is_noop(ring: KeyRing, aad: bytes) -> None:
    """A record already under the active KEK is returned unchanged (same object)."""
    sealed = seal(ring, b"refresh-token", aad)
    assert rewrap(ring, sealed) is sealed


def test_rewrap_is_idempotent(ring: KeyRing, aad: bytes) -> None:
    """Rewrapping twice (a resumed rotation) changes nothing the second time."""
    rotated = ring.with_new_key()
    once = rewrap(rotated, seal(ring, b"refresh-token", aad))
    assert rewrap(rotated, once) is once


@pytest.mark.parametrize("position", [0, 1, 4, 5, 17, 64], ids=lambda p: f"byte-{p}")
def test_rewrap_of_tampered_wrap_fails(ring: KeyRing, aad: bytes, position: int) -> None:
    """Rewrap authenticates header and key wrap, at an old or at the active version."""
    sealed = flip(seal(ring, b"refresh-token", aad), position)
    for target in (ring, ring.with_new_key()):
        with pytest.raises(DecryptionError) as excinfo:
            rewrap(target, sealed)
        assert_opaque(excinfo.value)


@pytest.mark.parametrize("garbage", [b"", b"\x01" * 50, None])
def test_rewrap_of_garbage_fails(ring: KeyRing, garbage: object) -> None:
    """Garbage is DecryptionError from rewrap too."""
    with pytest.raises(DecryptionError):
        rewrap(ring.with_new_key(), cast(Any, garbage))


def test_rewrap_of_unknown_version_fails(ring: KeyRing, aad: bytes) -> None:
    """A record under a KEK missing from the ring cannot be rewrapped."""
    foreign = seal(KeyRing.generate().with_new_key().with_new_key(), b"x", aad)
    with pytest.raises(DecryptionError):
        rewrap(ring, foreign)


def test_rewrap_keeps_body_tampering_detectable(ring: KeyRing, aad: bytes) -> None:
    """Rewrap cannot check the body (no AAD), but unseal still rejects it afterwards."""
    sealed = flip(seal(ring, b"refresh-token", aad), BODY_OFFSET)
    rotated = ring.with_new_key()
    assert_unseal_fails(rotated, rewrap(rotated, sealed), aad)


def test_rewrap_never_exposes_plaintext(scripted_random: ScriptedRandom) -> None:
    """Rewrap's output holds neither the plaintext nor the data key, yet still opens."""
    plaintext = b"ya29.a0-very-distinctive-upstream-refresh-token-value"
    random_bytes = scripted_random(KAT_DATA_KEY, KAT_WRAP_NONCE, KAT_DATA_NONCE)
    sealed = seal(kat_ring(), plaintext, b"aad", random_bytes=random_bytes)
    rotated = kat_ring().with_new_key(KAT_NEW_KEK)
    rewrapped = rewrap(rotated, sealed)
    assert plaintext[:8] not in rewrapped
    assert KAT_DATA_KEY not in rewrapped
    assert unseal(rotated, rewrapped, b"aad") == plaintext
