"""Signing keys: stored in the database, private parts sealed by the vault key ring.

Each algorithm (RS256, ES256, EdDSA) has one current key. `rotate` adds new keys
and schedules the retirement of the current ones: the new keys are published in the
JWKS at once but sign only from the hand-over time (`retired_at` of the key they
replace), so that every process, and every relying party that re-reads the JWKS,
knows a key before the first token signed with it exists. A retired key stays in
the JWKS until every token it signed has expired. Each process caches parsed keys
(parsing a PEM costs milliseconds; signing with a parsed key costs microseconds)
and reloads the table periodically, or at once when it meets an unknown `kid`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from vault import KeyRing, associated_data, seal, unseal

from .models import SigningKey, now

SUPPORTED_ALGS = ("RS256", "ES256", "EdDSA")
ACCESS_TOKEN_ALG = "ES256"  # noqa: S105 (an algorithm name, not a secret)
DEFAULT_ID_TOKEN_ALG = "RS256"  # noqa: S105 (an algorithm name)
RELOAD_INTERVAL_SECONDS = 30.0
UNKNOWN_KID_RELOAD_SECONDS = 1.0
# How long a relying party may cache /jwks.json (its Cache-Control max-age).
JWKS_MAX_AGE_SECONDS = 60
# Between `keys rotate` and the hand-over: one reload interval, by which every process of
# the deployment publishes the new keys, then one JWKS lifetime, by which every copy cached
# without them has expired. So no relying party meets a `kid` it cannot find, even one
# that does not refetch on an unknown `kid`.
PUBLISH_BEFORE_SIGNING_SECONDS = int(RELOAD_INTERVAL_SECONDS) + JWKS_MAX_AGE_SECONDS

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    alg: str
    private_key: PrivateKey
    # Derived once: a verification with a fresh public key object costs about 25 µs more.
    public_key: PublicKey
    public_jwk: dict[str, Any]
    # Epoch seconds from which this key no longer signs (None: not scheduled).
    signs_until: int | None

    def signs_at(self, moment: int) -> bool:
        return self.signs_until is None or moment < self.signs_until


def _generate_private_key(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def _public_jwk(alg: str, private_key: PrivateKey, kid: str) -> dict[str, Any]:
    to_jwk: Callable[..., Any] = {
        "RS256": RSAAlgorithm.to_jwk,
        "ES256": ECAlgorithm.to_jwk,
        "EdDSA": OKPAlgorithm.to_jwk,
    }[alg]
    jwk: dict[str, Any] = to_jwk(private_key.public_key(), as_dict=True)
    return _published({**jwk, "kid": kid, "alg": alg, "use": "sig"})


def _published(jwk: dict[str, Any]) -> dict[str, Any]:
    """RFC 7517 §4.3: `use` and `key_ops` SHOULD NOT be used together. PyJWT adds
    `key_ops: ["verify"]` to RSA keys (and keys stored before this did keep it)."""
    return {name: value for name, value in jwk.items() if name != "key_ops"}


def _key_aad(kid: str, alg: str) -> bytes:
    return associated_data("signing_key", kid, alg)


def create_signing_key(session: Session, keyring: KeyRing, alg: str) -> SigningKey:
    """Generate a key for `alg`, seal its private part and add it to the session."""
    private_key = _generate_private_key(alg)
    kid = f"{alg.lower()}-{secrets.token_urlsafe(9)}"
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    row = SigningKey(
        kid=kid,
        alg=alg,
        public_jwk=_public_jwk(alg, private_key, kid),
        private_sealed=seal(keyring, der, _key_aad(kid, alg)),
    )
    session.add(row)
    return row


def ensure_signing_keys(session: Session, keyring: KeyRing) -> list[SigningKey]:
    """Create a current key for every algorithm that has none; returns the new ones."""
    current = {row.alg for row in session.scalars(select(SigningKey)) if row.retired_at is None}
    return [
        create_signing_key(session, keyring, alg) for alg in SUPPORTED_ALGS if alg not in current
    ]


@dataclass(frozen=True)
class Rotation:
    new_kids: list[str]
    hand_over: int  # epoch seconds: the new keys sign from then on, the old ones stop


def rotate_signing_keys(
    session: Session,
    keyring: KeyRing,
    overlap_seconds: int,
    activate_after: int = PUBLISH_BEFORE_SIGNING_SECONDS,
) -> Rotation:
    """Add new keys, published now, that take over signing in `activate_after` seconds.

    The current keys sign until then (0: they stop at once, for a key that must not
    sign again) and stay published `overlap_seconds` after that.
    """
    if activate_after < 0 or overlap_seconds < 0:
        raise ValueError("activate_after and overlap_seconds must not be negative")
    hand_over = now() + activate_after
    # Every key due to sign after the hand-over: the current ones, and those a rotation
    # still pending scheduled to sign until later (a sooner hand-over overrides it).
    due = or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > hand_over)
    for row in session.scalars(select(SigningKey).where(due)):
        row.retired_at = hand_over
        row.expires_at = hand_over + overlap_seconds
    new_kids = [create_signing_key(session, keyring, alg).kid for alg in SUPPORTED_ALGS]
    return Rotation(new_kids, hand_over)


@dataclass(frozen=True)
class Withdrawal:
    kid: str
    alg: str
    replacement_kid: str | None  # a key created because none other was due to sign


def withdraw_signing_key(session: Session, keyring: KeyRing, kid: str) -> Withdrawal:
    """Stop signing with `kid` and unpublish it now, for a key that may be compromised.

    Tokens it signed stop verifying (every process drops it at its next reload). If it
    was due to sign and no newer key of its algorithm is, a new one is created.
    """
    moment = now()
    row = session.get(SigningKey, kid, with_for_update=True)
    if row is None or (row.expires_at is not None and row.expires_at <= moment):
        raise LookupError(f"no published signing key {kid!r}")
    was_due_to_sign = row.retired_at is None or row.retired_at > moment
    row.retired_at = moment if was_due_to_sign else row.retired_at
    row.expires_at = moment
    successors = session.scalars(
        select(SigningKey).where(
            SigningKey.alg == row.alg,
            SigningKey.kid != row.kid,
            SigningKey.retired_at.is_(None),
        )
    ).all()
    replacement = None
    if was_due_to_sign and not successors:
        replacement = create_signing_key(session, keyring, row.alg).kid
    return Withdrawal(row.kid, row.alg, replacement)


def _load(row: SigningKey, keyring: KeyRing) -> LoadedKey:
    der = unseal(keyring, row.private_sealed, _key_aad(row.kid, row.alg))
    private_key = serialization.load_der_private_key(der, password=None)
    if not isinstance(
        private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError("unexpected key type in signing key table")
    return LoadedKey(
        row.kid,
        row.alg,
        private_key,
        private_key.public_key(),
        # From the sealed private key (its kid and alg bound to it as associated data),
        # not the stored copy: a row edited in the database cannot publish another key.
        _public_jwk(row.alg, private_key, row.kid),
        row.retired_at,
    )


def signing_order(row: SigningKey) -> tuple[int, bool]:
    """Oldest first; of keys created in the same second, the one scheduled to retire first.
    The key that signs for an algorithm is the first in this order still due to sign."""
    return (row.created_at, row.retired_at is None)


class SigningKeys:
    """A process-local, periodically reloaded view of the signing key table."""

    def __init__(self, session_factory: sessionmaker[Session], keyring: KeyRing) -> None:
        self._session_factory = session_factory
        self._keyring = keyring
        self._lock = threading.Lock()
        self._by_kid: dict[str, LoadedKey] = {}
        self._loaded_at = 0.0

    def _reload(self) -> None:
        moment = now()
        with self._session_factory() as session:
            rows = session.scalars(select(SigningKey)).all()
        rows = sorted(rows, key=signing_order)
        published = [row for row in rows if row.expires_at is None or row.expires_at > moment]
        cached = self._by_kid
        by_kid: dict[str, LoadedKey] = {}
        for row in published:
            known = cached.get(row.kid)
            if known is None:
                by_kid[row.kid] = _load(row, self._keyring)
            else:  # a retirement scheduled by another process applies here too
                by_kid[row.kid] = replace(known, signs_until=row.retired_at)
        self._by_kid = by_kid
        self._loaded_at = time.monotonic()

    def _fresh(self, max_age: float = RELOAD_INTERVAL_SECONDS) -> dict[str, LoadedKey]:
        if time.monotonic() - self._loaded_at > max_age:
            with self._lock:
                if time.monotonic() - self._loaded_at > max_age:
                    self._reload()
        return self._by_kid

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def signing_key(self, alg: str) -> LoadedKey:
        """The oldest key of `alg` still signing: the old one until the hand-over time."""
        moment = now()
        for key in self._fresh().values():
            if key.alg == alg and key.signs_at(moment):
                return key
        raise LookupError(f"no current signing key for {alg}; run `authserver init`")

    def verification_key(self, kid: str) -> LoadedKey | None:
        key = self._fresh().get(kid)
        if key is None:
            key = self._fresh(UNKNOWN_KID_RELOAD_SECONDS).get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self._fresh().values()]}
