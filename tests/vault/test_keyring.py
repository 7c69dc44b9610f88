"""Key ring (vault.keyring): parsing, validation, rotation helpers, secrecy of keys.

DESIGN.md "Token vault": data keys are wrapped by a versioned key-encryption key
(KEK); the ring comes from AUTHSERVER_VAULT_KEYS or a file. Configuration errors
are KeyRingError, whose messages never echo key material.
"""

from __future__ import annotations

import base64
import dataclasses
import pickle
from pathlib import Path
from typing import Any, cast

import pytest

from vault import KeyRing, KeyRingError

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
KEY_3 = bytes([0xFB] * 32)  # encodes with '-' and '_' in base64url
TEXT_1 = base64.urlsafe_b64encode(KEY_1).decode()  # padded
TEXT_2 = base64.urlsafe_b64encode(KEY_2).decode().rstrip("=")  # unpadded
TEXT_3 = base64.urlsafe_b64encode(KEY_3).decode()


def assert_no_key_text(message: str, *texts: str) -> None:
    for text in texts:
        stripped = text.strip().rstrip("=")
        assert stripped[:12] not in message and stripped[-12:] not in message


# --- parsing good input ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"1:{TEXT_1},2:{TEXT_2},3:{TEXT_3}",
        f"1:{TEXT_1}\n2:{TEXT_2}\n3:{TEXT_3}\n",
        f"# vault KEKs\n\n1:{TEXT_1}, 2:{TEXT_2}\r\n  # retired soon\n 3:{TEXT_3} \n",
        f"3:{TEXT_3},,1:{TEXT_1.rstrip('=')}\n,2:{TEXT_2}==",
    ],
    ids=["commas", "newlines", "comments-and-blanks", "any-order-padding-optional"],
)
def test_parse_accepts_documented_forms(text: str) -> None:
    """Entries split by commas/newlines; '#' lines and blanks ignored; padding optional."""
    ring = KeyRing.parse(text)
    assert ring.keys == {1: KEY_1, 2: KEY_2, 3: KEY_3}
    assert ring.active_version == 3
    assert ring.versions == (1, 2, 3)


def test_active_version_is_highest_not_last() -> None:
    """The active KEK is the highest version, whatever the order in the text."""
    ring = KeyRing.parse(f"9:{TEXT_2}\n2:{TEXT_1}")
    assert ring.active_version == 9
    assert ring.kek(9) == KEY_2


def test_serialize_parse_round_trip() -> None:
    """parse(serialize()) gives back an equal ring; serialize is one line per key."""
    ring = KeyRing.generate().with_new_key().with_new_key()
    text = ring.serialize()
    assert text.count("\n") == 3 and "=" not in text
    assert KeyRing.parse(text) == ring


def test_from_file(tmp_path: Path) -> None:
    """from_file reads the same format from a UTF-8 file."""
    path = tmp_path / "vault-keys"
    path.write_text(f"# keys\n1:{TEXT_1}\n2:{TEXT_2}\n", encoding="utf-8")
    assert KeyRing.from_file(path) == KeyRing({1: KEY_1, 2: KEY_2})
    assert KeyRing.from_file(str(path)).active_version == 2


def test_from_file_problems_are_keyring_errors(tmp_path: Path) -> None:
    """A missing or non-UTF-8 file is a KeyRingError, without echoing contents."""
    with pytest.raises(KeyRingError, match="cannot read key ring file"):
        KeyRing.from_file(tmp_path / "missing")
    binary = tmp_path / "binary"
    binary.write_bytes(b"1:\xff\xfe" + KEY_1)
    with pytest.raises(KeyRingError, match="not UTF-8") as excinfo:
        KeyRing.from_file(binary)
    assert "0xff" not in str(excinfo.value) and excinfo.value.__cause__ is None


# --- parsing bad input -------------------------------------------------------------

SHORT = base64.urlsafe_b64encode(bytes(range(100, 131))).decode()  # 31 bytes
LONG = base64.urlsafe_b64encode(bytes(range(100, 133))).decode()  # 33 bytes
STANDARD_B64 = base64.b64encode(KEY_3).decode()  # '+' and '/' are not base64url


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"1:{SHORT}", "must be 32 bytes, not 31"),
        (f"1:{LONG}", "must be 32 bytes, not 33"),
        (f"1:{TEXT_1}\n1:{SHORT}", "entry 2: duplicate key version 1"),
        (f"1:{TEXT_1},01:{TEXT_2}", "entry 2: duplicate key version 1"),
        (f"one:{TEXT_1}", "entry 1: version is not a positive integer"),
        (f"-1:{TEXT_1}", "entry 1: version is not a positive integer"),
        (f"1.5:{TEXT_1}", "entry 1: version is not a positive integer"),
        (f"{'9' * 5000}:{TEXT_1}", "entry 1: version is not a positive integer"),
        (f"0:{TEXT_1}", "integers from 1 to 4294967295"),
        (f"4294967296:{TEXT_1}", "integers from 1 to 4294967295"),
        (TEXT_1, "entry 1: expected '<version>:<base64url key>'"),
        (f"1:{STANDARD_B64}", "entry 1: key is not base64url"),
        (f"1:{TEXT_2[:-2]}", "entry 1: key is not valid base64url"),
        (f"1:{TEXT_2[:-1]}B", "entry 1: key is not canonical base64url"),
        (f"1:{TEXT_2}===", "entry 1: key is not base64url"),
        ("1:", "entry 1: key is not base64url"),
        ("", "contains no keys"),
        ("# only a comment\n\n , ,\n", "contains no keys"),
    ],
    ids=[
        "31-bytes",
        "33-bytes",
        "duplicate",
        "duplicate-leading-zero",
        "word-version",
        "negative-version",
        "float-version",
        "huge-version-text",
        "zero-version",
        "version-over-32-bits",
        "no-version",
        "standard-base64",
        "bad-length-text",
        "non-canonical",
        "too-much-padding",
        "empty-key",
        "empty",
        "comments-only",
    ],
)
def test_parse_rejects_bad_input(text: str, message: str) -> None:
    """Each malformed ring is a KeyRingError that names the problem, not the key."""
    with pytest.raises(KeyRingError) as excinfo:
        KeyRing.parse(text)
    assert message in str(excinfo.value)
    assert_no_key_text(str(excinfo.value), TEXT_1, TEXT_2, SHORT, LONG, STANDARD_B64)
    assert excinfo.value.__cause__ is None


# --- construction and validation ---------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "active"),
    [
        ({}, 0),
        ({1: KEY_1[:31]}, 0),
        ({1: cast(Any, bytearray(KEY_1))}, 0),
        ({1: cast(Any, TEXT_1)}, 0),
        ({0: KEY_1}, 0),
        ({cast(Any, True): KEY_1}, 0),
        ({cast(Any, "1"): KEY_1}, 0),
        ({1: KEY_1}, 2),
        ({1: KEY_1}, -1),
    ],
    ids=["empty", "short", "bytearray", "str-key", "zero", "bool", "str-version", "absent", "neg"],
)
def test_constructor_validates(keys: dict[int, bytes], active: int) -> None:
    """Versions are ints in 1..2**32-1, keys are 32 bytes, the active version exists."""
    with pytest.raises(KeyRingError) as excinfo:
        KeyRing(keys, active_version=active)
    assert_no_key_text(str(excinfo.value), TEXT_1)


def test_explicit_active_version_and_default() -> None:
    """active_version defaults to the highest; an older one may be chosen explicitly."""
    assert KeyRing({1: KEY_1, 2: KEY_2}).active_version == 2
    assert KeyRing({1: KEY_1, 2: KEY_2}, active_version=1).active_version == 1


def test_ring_is_immutable() -> None:
    """The ring is frozen and copies its keys: mutating the input dict changes nothing."""
    source = {1: KEY_1}
    ring = KeyRing(source)
    source[2] = KEY_2
    assert ring.versions == (1,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cast(Any, ring).active_version = 2
    with pytest.raises(TypeError):
        cast(Any, ring.keys)[2] = KEY_2


def test_repr_and_str_hide_keys() -> None:
    """repr/str (also inside containers) show versions only, never key bytes or encodings."""
    ring = KeyRing({1: KEY_1, 2: KEY_2})
    assert repr(ring) == str(ring) == "KeyRing(versions=[1, 2], active_version=2)"
    rendered = f"{[ring]} {ring!s} {ring!r}"
    for key in (KEY_1, KEY_2):
        assert repr(key) not in rendered and key.hex() not in rendered
    assert_no_key_text(rendered, TEXT_1, TEXT_2)


def test_ring_cannot_be_pickled() -> None:
    """Rings are not picklable, so they do not end up in caches or task queues by accident."""
    with pytest.raises(TypeError):
        pickle.dumps(KeyRing({1: KEY_1}))


def test_rings_hash_and_compare() -> None:
    """Equal rings compare and hash equal (the hash uses versions, not key bytes)."""
    assert KeyRing({1: KEY_1}) == KeyRing({1: KEY_1})
    assert KeyRing({1: KEY_1}) != KeyRing({1: KEY_2})
    assert hash(KeyRing({1: KEY_1})) == hash(KeyRing({1: KEY_2}))


# --- generation and rotation helpers -----------------------------------------------


def test_generate() -> None:
    """generate gives version 1 with a random 32-byte KEK, different each time."""
    first, second = KeyRing.generate(), KeyRing.generate()
    assert first.versions == (1,) and first.active_version == 1
    assert len(first.kek(1)) == 32 and first.kek(1) != second.kek(1)


def test_with_new_key() -> None:
    """with_new_key adds max+1, makes it active, and leaves the original ring alone."""
    ring = KeyRing({3: KEY_1})
    rotated = ring.with_new_key(KEY_2)
    assert rotated.versions == (3, 4) and rotated.active_version == 4
    assert rotated.kek(4) == KEY_2 and rotated.kek(3) == KEY_1
    assert ring.versions == (3,)
    random_rotated = rotated.with_new_key()
    assert random_rotated.active_version == 5 and len(random_rotated.kek(5)) == 32


def test_with_new_key_validates() -> None:
    """A supplied key must still be 32 bytes."""
    with pytest.raises(KeyRingError, match="must be 32 bytes"):
        KeyRing({1: KEY_1}).with_new_key(b"short")


def test_without_key() -> None:
    """Retiring a KEK drops it; the active version or an unknown one cannot be removed."""
    ring = KeyRing({1: KEY_1, 2: KEY_2})
    assert ring.without_key(1).versions == (2,)
    with pytest.raises(KeyRingError, match="active"):
        ring.without_key(2)
    with pytest.raises(KeyRingError, match="unknown key version 7"):
        ring.without_key(7)


def test_kek_unknown_version() -> None:
    """kek() raises KeyRingError (not KeyError) for a version the ring lacks."""
    ring = KeyRing({1: KEY_1})
    assert ring.kek(1) == KEY_1
    for version in (0, 2, cast(Any, [1])):
        with pytest.raises(KeyRingError, match="unknown key version") as excinfo:
            ring.kek(version)
        assert excinfo.value.__cause__ is None
