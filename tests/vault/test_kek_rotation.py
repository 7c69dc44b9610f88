"""Key-encryption-key rotation and ciphertext binding, on live accounts (DESIGN "Token vault").

"Associated data binds the ciphertext to its row, user and connection, so a row
copied elsewhere does not decrypt. `authserver vault rotate-kek` re-wraps every
data key and can resume after a crash." Rotation tests run on a database of their
own: they re-wrap the signing keys and server secrets too, which the rest of the
suite keeps under the test key ring.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from authserver import rotation
from authserver.db import transaction
from authserver.models import AuditEvent
from tests.support.apps import build_test_app
from tests.support.flows import csrf_token
from tests.support.live import free_port, isolated_database, run_cli, server_env
from tests.support.vault_live import UpstreamSpy, VaultScene, leaks, vault_scene
from vault import DecryptionError, KeyRing, key_version, rewrap, unseal
from vault.accounts import account_aad, connection_secret_aad
from vault.models import ConnectedAccount, Connection


def _blobs(factory) -> dict[str, list[bytes]]:
    """Every stored ciphertext, by `table.column`."""
    found: dict[str, list[bytes]] = {}
    with factory() as session:
        for model, attribute in rotation.sealed_columns():
            values = session.scalars(select(getattr(model, attribute)))
            found[f"{model.__tablename__}.{attribute}"] = [v for v in values if v is not None]
    return found


def _versions(factory) -> Counter[int]:
    return Counter(key_version(blob) for blobs in _blobs(factory).values() for blob in blobs)


@contextmanager
def _rotation_scene(database_url: str, tmp_path: Path, ring: KeyRing) -> Iterator[VaultScene]:
    """A live scene on its own database, restartable on the same port (same issuer)."""
    with isolated_database(database_url, tmp_path) as url:
        setup = build_test_app(url, vault_keys=ring.serialize())
        try:
            with vault_scene(
                setup, url, tmp_path, port=free_port(), vault_keys=ring.serialize()
            ) as scene:
                yield scene
        finally:
            setup.extensions["authserver"].engine.dispose()


def _connect_both(scene: VaultScene) -> dict[str, str]:
    """Alice and bob connected and served once; a connect left half-way (a live state)."""
    scene.connect("alice")
    scene.connect("bob", "calendar.freebusy calendar.read")
    scene.browser("alice").get(
        f"{scene.url}/connections/calendar/connect", allow_redirects=False, timeout=10
    )
    subjects = {name: scene.subject_token(name) for name in ("alice", "bob")}
    for subject in subjects.values():
        assert scene.federated(subject).status_code == 200
    return subjects


def _all_serve(scene: VaultScene, subjects: dict[str, str], refresh: bool = True) -> None:
    """Every account serves its cached token and, after expiry, a refreshed one."""
    for name, subject in subjects.items():
        cached = scene.federated(subject)
        assert cached.status_code == 200, cached.text
        if refresh:
            scene.expire_cached(name)
            refreshed = scene.federated(subject)
            assert refreshed.status_code == 200, refreshed.text
            assert refreshed.json()["access_token"] != cached.json()["access_token"]
            assert scene.freebusy(refreshed.json()["access_token"]).status_code == 200


def test_ciphertext_moved_to_another_row_user_or_connection_does_not_open(
    app, migrated_database, tmp_path, monkeypatch, caplog
):
    """DESIGN token vault: associated data binds each ciphertext to its row, user and
    connection. Alice's sealed tokens copied into bob's row fail to open: bob gets 503
    temporarily_unavailable (the detail is logged), never alice's token, and the lease is
    released."""
    spy = UpstreamSpy.install(monkeypatch)
    with vault_scene(app, migrated_database, tmp_path) as scene:
        _connect_both(scene)
        alice, bob = scene.account("alice"), scene.account("bob")
        keyring = scene.server.runtime.keyring
        token = alice.refresh_token_sealed
        assert unseal(keyring, token, account_aad(alice, "refresh_token"))
        for moved in (
            {"id": bob.id},
            {"user_id": bob.user_id},
            {"connection_name": "other"},
        ):
            elsewhere = SimpleNamespace(
                **{k: getattr(alice, k) for k in ("id", "user_id", "connection_name")} | moved
            )
            with pytest.raises(DecryptionError):
                unseal(keyring, token, account_aad(elsewhere, "refresh_token"))
        with pytest.raises(DecryptionError):
            unseal(keyring, token, account_aad(alice, "access_token"))
        with scene.server.runtime.session_factory() as session:
            secret = session.get(Connection, "calendar").client_secret_sealed
        with pytest.raises(DecryptionError):
            unseal(keyring, secret, connection_secret_aad("other"))

        bob_subject = scene.subject_token("bob")
        factory = scene.app.extensions["authserver"].session_factory  # outlives restarts
        with transaction(factory) as session:
            session.execute(
                update(ConnectedAccount)
                .where(ConnectedAccount.id == bob.id)
                .values(access_token_sealed=alice.access_token_sealed)
            )
        caplog.clear()
        stats = scene.calendar.stats()
        cached = scene.federated(bob_subject)
        assert cached.status_code == 503
        assert cached.json()["error"] == "temporarily_unavailable"
        assert leaks(cached.content, spy.secrets()) == []

        with transaction(factory) as session:
            session.execute(
                update(ConnectedAccount)
                .where(ConnectedAccount.id == bob.id)
                .values(
                    refresh_token_sealed=alice.refresh_token_sealed,
                    access_token_expires_at=time.time() - 60,
                )
            )
        started = time.monotonic()
        for _ in range(2):  # the second would wait out a leaked lease, then say "timeout"
            refreshed = scene.federated(bob_subject)
            assert refreshed.status_code == 503
            assert refreshed.json()["error"] == "temporarily_unavailable"
            assert leaks(refreshed.content, spy.secrets()) == []
        assert time.monotonic() - started < 10
        assert scene.calendar.stats() == stats, "alice's refresh token never went upstream"
        assert scene.account("bob").refresh_lease is None
        failures = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
        assert len(failures) == 3
        assert all(r.exc_info[0] is DecryptionError for r in failures)

        served = scene.federated(scene.subject_token("alice"))
        assert served.status_code == 200, "alice's own account is unaffected"
        http = scene.browser("bob")
        page = http.get(f"{scene.url}/account/connections", timeout=10).text
        gone = http.post(
            f"{scene.url}/account/connections/calendar/disconnect",
            data={"csrf_token": csrf_token(page)},
            allow_redirects=False,
            timeout=10,
        )
        assert gone.status_code == 302, "a broken account can still be removed"
        assert scene.account("bob") is None
        assert scene.calendar.stats()["revocations"] == stats["revocations"]


def test_rewrap_all_moves_every_record_to_the_new_kek(migrated_database, tmp_path):
    """DESIGN token vault: after adding a KEK, rewrap_all puts every sealed column under it
    (vault.key_version); every account still serves, also once the old KEK is removed."""
    ring1 = KeyRing.generate()
    ring2 = ring1.with_new_key()
    with _rotation_scene(migrated_database, tmp_path, ring1) as scene:
        subjects = _connect_both(scene)
        factory = scene.app.extensions["authserver"].session_factory  # outlives restarts
        before = _blobs(factory)
        for column in (
            "vault_accounts.refresh_token_sealed",
            "vault_accounts.access_token_sealed",
            "vault_connections.client_secret_sealed",
            "vault_connect_states.verifier_sealed",
            "signing_keys.private_sealed",
            "server_secrets.sealed",
        ):
            assert before[column], f"nothing sealed in {column}"
        assert _versions(factory) == Counter({1: sum(map(len, before.values()))})

        report = rotation.rewrap_all(factory, ring2)
        assert report == {
            "rewrapped": sum(map(len, before.values())),
            "remaining": 0,
            "active_version": 2,
        }
        assert set(_versions(factory)) == {2}
        after = _blobs(factory)
        for column, blobs in before.items():
            # Only the wrap changes: the record's nonce and ciphertext stay as they were.
            assert sorted(b[65:] for b in after[column]) == sorted(b[65:] for b in blobs), column

        scene.restart(vault_keys=ring2.serialize())
        _all_serve(scene, subjects)
        scene.restart(vault_keys=ring2.without_key(1).serialize())
        _all_serve(scene, subjects)
        assert scene.subject_token("alice"), "the re-wrapped signing keys still sign"
        assert rotation.rewrap_all(factory, ring2.without_key(1))["remaining"] == 0


def test_rotate_kek_cli_with_a_key_ring_file(migrated_database, tmp_path):
    """`authserver vault rotate-kek` (DESIGN CLI) against AUTHSERVER_VAULT_KEYS_FILE, run as
    an operator would, in its own working directory; rerunning it is harmless."""
    ring1 = KeyRing.generate()
    ring2 = ring1.with_new_key()
    with _rotation_scene(migrated_database, tmp_path, ring1) as scene:
        subjects = _connect_both(scene)
        workdir = tmp_path / "operator"
        workdir.mkdir()
        keys = workdir / "vault-keys.txt"
        keys.write_text(ring2.serialize())
        env = server_env(scene.server.runtime.settings.database_url, scene.url)
        env.pop("AUTHSERVER_VAULT_KEYS")
        env["AUTHSERVER_VAULT_KEYS_FILE"] = str(keys)
        done = run_cli(["vault", "rotate-kek", "--json"], env, workdir)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["remaining"] == 0 and report["active_version"] == 2
        assert report["rewrapped"] > 0
        factory = scene.app.extensions["authserver"].session_factory  # outlives restarts
        assert set(_versions(factory)) == {2}
        with factory() as session:  # an operator's key change is on the audit record
            [event] = session.scalars(
                select(AuditEvent).where(AuditEvent.event == "vault.kek_rotated")
            )
        assert event.details == report

        again = run_cli(["vault", "rotate-kek", "--json"], env, workdir)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["rewrapped"] == 0

        keys.write_text(ring2.without_key(1).serialize())
        final = run_cli(["vault", "rotate-kek", "--json"], env, workdir)
        assert final.returncode == 0, final.stderr
        assert json.loads(final.stdout) == {"rewrapped": 0, "remaining": 0, "active_version": 2}
        scene.restart(vault_keys=ring2.without_key(1).serialize())
        _all_serve(scene, subjects)


class Killed(BaseException):
    """The process died (like KeyboardInterrupt or SIGKILL, not an ordinary error)."""


def test_interrupted_rotation_resumes_without_loss(migrated_database, tmp_path, monkeypatch):
    """DESIGN token vault: rotate-kek "can resume after a crash": a run that dies mid-way
    (one row per batch; it dies between alice's and bob's refresh tokens, mid-batch) leaves
    every record usable, and the next run finishes the job; then the old KEK can go."""
    ring1 = KeyRing.generate()
    ring2 = ring1.with_new_key()
    with _rotation_scene(migrated_database, tmp_path, ring1) as scene:
        subjects = _connect_both(scene)
        factory = scene.app.extensions["authserver"].session_factory  # outlives restarts
        blobs = _blobs(factory)
        total = sum(map(len, blobs.values()))
        columns = [f"{m.__tablename__}.{a}" for m, a in rotation.sealed_columns()]
        first = columns.index("vault_accounts.refresh_token_sealed")
        done_before_death = sum(len(blobs[c]) for c in columns[:first]) + 1
        monkeypatch.setattr(rotation, "BATCH", 1)
        calls = {"n": 0}

        def dying(keyring, blob, **kwargs):
            calls["n"] += 1
            if calls["n"] > done_before_death:
                raise Killed
            return rewrap(keyring, blob, **kwargs)

        monkeypatch.setattr(rotation, "rewrap", dying)
        with pytest.raises(Killed):
            rotation.rewrap_all(factory, ring2)
        half = _versions(factory)
        assert half == Counter({2: done_before_death, 1: total - done_before_death})
        accounts = Counter(key_version(b) for b in _blobs(factory)[columns[first]])
        assert accounts == Counter({1: 1, 2: 1}), "one account re-wrapped, the other not"
        for column_blobs in _blobs(factory).values():
            for blob in column_blobs:
                rewrap(ring2, blob)  # every wrap still authenticates under the new ring
        scene.restart(vault_keys=ring2.serialize())
        _all_serve(scene, subjects)

        monkeypatch.setattr(rotation, "rewrap", rewrap)
        report = rotation.rewrap_all(factory, ring2)
        assert report["remaining"] == 0
        assert set(_versions(factory)) == {2}
        assert sum(_versions(factory).values()) == total
        scene.restart(vault_keys=ring2.without_key(1).serialize())
        _all_serve(scene, subjects)


def test_refresh_saved_while_rotating_is_not_overwritten(migrated_database, tmp_path, monkeypatch):
    """DESIGN token vault: a rotated upstream refresh token "is saved atomically ... a race
    must never lose the account", and rotate-kek must lose nothing. A refresh that saves a
    rotated refresh token while rotate-kek holds the old ciphertext in its batch must not
    be overwritten by the re-wrap of the old one (RFC 9700 §4.14.2: the old refresh token
    is dead upstream once rotated)."""
    ring1 = KeyRing.generate()
    ring2 = ring1.with_new_key()
    with _rotation_scene(migrated_database, tmp_path, ring1) as scene:
        subject = scene.subject_token("alice")
        scene.connect("alice")
        assert scene.federated(subject).status_code == 200
        old_refresh_token = scene.stored_refresh_token("alice")
        scene.restart(vault_keys=ring2.serialize())  # servers get the new KEK first
        scene.expire_cached("alice")
        account = scene.account("alice")
        assert account is not None
        target = account.refresh_token_sealed
        factory = scene.app.extensions["authserver"].session_factory
        served: list[Any] = []
        racer = threading.Thread(target=lambda: served.append(scene.federated(subject)))

        def racing(keyring, blob, **kwargs):
            if blob == target and not racer.is_alive() and not served:
                racer.start()  # a refresh of alice's account, from another request
                racer.join(timeout=3)  # it finishes now unless the row is locked
            return rewrap(keyring, blob, **kwargs)

        monkeypatch.setattr(rotation, "rewrap", racing)
        rotation.rewrap_all(factory, ring2)
        racer.join(timeout=30)
        assert served and served[0].status_code == 200, "the racing refresh was served"
        rotated = scene.stored_refresh_token("alice")
        assert rotated != old_refresh_token, "the rotated refresh token was kept"
        monkeypatch.setattr(rotation, "rewrap", rewrap)
        assert rotation.rewrap_all(factory, ring2)["remaining"] == 0

        scene.restart(vault_keys=ring2.without_key(1).serialize())
        scene.expire_cached("alice")
        again = scene.federated(subject)
        assert again.status_code == 200, again.text
        assert scene.freebusy(again.json()["access_token"]).status_code == 200
