"""No token plaintext at rest or in the logs (DESIGN "Token vault").

"Upstream refresh tokens and cached upstream access tokens are stored only as
ciphertext ... No token plaintext ever reaches the database, the logs or an error."
The plaintext is captured on its way into the vault (a spy on vault.upstream, the
calendar keeps only digests), then looked for, plain, base64 (standard and
urlsafe, padded or not) and hex, in the raw bytes of the SQLite database and its
write-ahead log, in a pg_dump of the PostgreSQL database, and in every log record.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.calendar import CLIENT_SECRET
from tests.support.live import is_postgres
from tests.support.vault_live import UpstreamSpy, VaultScene, leaks, vault_scene

READ_FILE = "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, from before the servers start (SQLAlchemy decides per
    connection whether to log statements and their parameters)."""
    caplog.set_level(logging.DEBUG)
    # Libraries that set their own level (SQLAlchemy sets "sqlalchemy" to WARN) too.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG:
            caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def spy(monkeypatch) -> UpstreamSpy:
    return UpstreamSpy.install(monkeypatch)


@pytest.fixture
def scene(debug_logs, spy, app, migrated_database, tmp_path) -> Iterator[VaultScene]:
    with vault_scene(app, migrated_database, tmp_path) as scene:
        yield scene
        scene.calendar.fault("none")


def _exercise(scene: VaultScene) -> list[str]:
    """Connect two accounts, serve from the cache, refresh with rotation (twice) and without;
    returns the access tokens the agent was given."""
    scene.connect("alice")
    scene.connect("bob", "calendar.freebusy calendar.read")
    alice, bob = scene.subject_token("alice"), scene.subject_token("bob")
    served = [scene.federated(alice), scene.federated(bob)]
    for fault in ("none", "none", "omit_refresh_token"):
        scene.calendar.fault(fault)
        scene.expire_cached("alice")
        served.append(scene.federated(alice))
    scene.calendar.fault("none")
    assert [r.status_code for r in served] == [200] * 5, [r.text for r in served]
    return [r.json()["access_token"] for r in served]


def _secrets(spy: UpstreamSpy, served: list[str]) -> list[str]:
    assert len(spy.access_tokens) == 5 and len(spy.refresh_tokens) == 4, "nothing to look for"
    return list(dict.fromkeys([*spy.access_tokens, *spy.refresh_tokens, CLIENT_SECRET, *served]))


def _sealed(scene: VaultScene) -> list[bytes]:
    """The ciphertexts as stored now, to prove the bytes searched hold the vault's rows."""
    blobs = []
    for name in ("alice", "bob"):
        account = scene.account(name)
        assert account is not None and account.access_token_sealed is not None
        blobs += [account.refresh_token_sealed, account.access_token_sealed]
    return blobs


def _pg_dump(database_url: str, directory: Path) -> bytes:
    executable = shutil.which("pg_dump")
    assert executable, "pg_dump comes with the PostgreSQL client, which the PostgreSQL run needs"
    url = make_url(database_url).set(drivername="postgresql")
    output = directory / "dump.sql"
    subprocess.run(  # noqa: S603 (fixed program, arguments built here)
        [executable, "--no-owner", "--file", str(output), url.render_as_string(False)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return output.read_bytes()


def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, read by another process: closing a descriptor of a SQLite file
    drops every POSIX lock this process holds on it (SQLite's documented caveat), which
    would let other connections corrupt the database the rest of the suite uses."""
    done = subprocess.run(  # noqa: S603 (fixed program)
        [sys.executable, "-c", READ_FILE, str(path)], check=True, capture_output=True
    )
    return done.stdout


def test_database_holds_no_token_or_secret_plaintext(scene, spy, migrated_database, tmp_path):
    """DESIGN token vault: tokens and the connection's client secret are only ciphertext
    in the database: SQLite file and WAL read raw, or PostgreSQL's pg_dump."""
    served = _exercise(scene)
    secrets = _secrets(spy, served)
    sealed = _sealed(scene)
    if is_postgres(migrated_database):
        dump = _pg_dump(migrated_database, tmp_path)
        for blob in sealed:
            assert blob.hex().encode() in dump, "the dump holds the vault's rows"
        assert leaks(dump, secrets) == []
        return
    database = Path(make_url(migrated_database).database or "")
    wal = database.with_name(database.name + "-wal")
    files = {path: _raw_bytes(path) for path in (database, wal) if path.exists()}
    assert wal in files, "the server is running: SQLite keeps its write-ahead log"
    everything = b"".join(files.values())
    for blob in sealed:
        assert blob in everything, "the files read hold the vault's rows"
    for path, data in files.items():
        assert leaks(data, secrets) == [], path.name


def test_logs_hold_no_token_or_secret_plaintext(scene, spy, debug_logs):
    """DESIGN token vault / STYLE errors: "Never log a token, secret or code"; every logger
    at DEBUG (werkzeug, urllib3, Authlib, SQLAlchemy statements with parameters, ours),
    through connect, cached serving, rotating and non-rotating refreshes and a failure."""
    served = _exercise(scene)
    scene.calendar.fault("server_error")
    scene.expire_cached("alice")
    failed = scene.federated(scene.subject_token("alice"))
    assert failed.status_code == 503
    secrets = _secrets(spy, served)
    records = debug_logs.records
    text = "\n".join(
        [record.getMessage() for record in records]
        + [logging.Formatter().format(record) for record in records]
        + [debug_logs.text]
    )
    assert "POST /token" in text, "the servers' request logs were captured"
    assert "vault_accounts" in text, "SQL statements were captured"
    assert leaks(text, secrets) == []
