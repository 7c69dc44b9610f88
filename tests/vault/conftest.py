"""Fixtures for the vault crypto core: key rings, associated data, scripted randomness."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vault import KeyRing, associated_data

ScriptedRandom = Callable[..., Callable[[int], bytes]]


@pytest.fixture
def ring() -> KeyRing:
    """A fresh random ring holding version 1 only."""
    return KeyRing.generate()


@pytest.fixture
def aad() -> bytes:
    """Associated data as the connected-accounts code binds a refresh token."""
    return associated_data("connected_account", "42", "alice", "calendar", "refresh_token")


@pytest.fixture
def scripted_random() -> ScriptedRandom:
    """Build a ``random_bytes`` stand-in that returns the given chunks in order.

    It fails the test if asked for a length other than the next chunk's, or for
    more chunks than scripted, so the call order documented by ``seal`` is enforced.
    """

    def build(*chunks: bytes) -> Callable[[int], bytes]:
        queue = list(chunks)

        def random_bytes(length: int) -> bytes:
            assert queue, "random_bytes called more often than scripted"
            chunk = queue.pop(0)
            assert len(chunk) == length, f"asked for {length} bytes, scripted {len(chunk)}"
            return chunk

        return random_bytes

    return build
