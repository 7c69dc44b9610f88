"""Group commit (authserver.group_commit): write-only requests share a transaction.

A client-credentials grant or a token exchange reads nothing in its own transaction and
writes two rows (the token's record, its audit row). Requests that reach their commit at
the same time commit together, one sync for all. What must not change: a token is handed
out only once its rows are committed, a request's rows commit all or none, and one
request's failure is not another's. Real database (SQLite file or PostgreSQL), real
threads, real HTTP for the end-to-end checks.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError

from authserver import audit
from authserver.group_commit import GroupCommit, GroupCommitFailed
from authserver.models import AccessTokenRecord, AuditEvent, now
from authserver.tokens import INSERT_ACCESS_TOKEN
from authserver.web.context import INSERT_AUDIT_ROWS
from tests.support.apps import reset_database
from tests.support.db import audit_events, count, link_and_verify, rows
from tests.support.factories import make_machine_client, make_resource
from tests.support.live import live_server

API = "https://api.example.com"
FOLLOWERS = 5


def _record(jti: str | None = None) -> dict:
    return {
        "jti": jti or secrets.token_urlsafe(18),
        "grant_id": None,
        "client_id": "batch-job",
        "expires_at": now() + 300,
    }


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


class _HeldCommit:
    """Holds the first COMMIT of a transaction that wrote token records until released, so
    other requests queue meanwhile (other writers, such as the audit linker, pass)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.entered = threading.Event()
        self.release = threading.Event()
        self.first = True
        event.listen(engine, "before_cursor_execute", self._on_execute)
        event.listen(engine, "commit", self._on_commit)

    def _on_execute(self, conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ACCESS_TOKENS"):
            conn.info["wrote_tokens"] = True

    def _on_commit(self, conn) -> None:
        if conn.info.pop("wrote_tokens", False) and self.first:
            self.first = False
            self.entered.set()
            assert self.release.wait(10)

    def remove(self) -> None:
        self.release.set()
        event.remove(self.engine, "before_cursor_execute", self._on_execute)
        event.remove(self.engine, "commit", self._on_commit)


@contextmanager
def held_commit(engine) -> Iterator[_HeldCommit]:
    holder = _HeldCommit(engine)
    try:
        yield holder
    finally:
        holder.remove()


def _leader_then_followers(runtime, follower_writes):
    """One request commits (held); the others queue behind it; then all are released."""
    group = runtime.group_commit
    with held_commit(runtime.engine) as held, ThreadPoolExecutor(1 + len(follower_writes)) as pool:
        leader = pool.submit(group.insert, [(INSERT_ACCESS_TOKEN, _record())])
        assert held.entered.wait(10)
        followers = [pool.submit(group.insert, writes) for writes in follower_writes]
        _wait_for(lambda: group.waiting() == len(follower_writes))
        held.release.set()
        return leader, followers


def test_requests_that_commit_together_share_one_transaction(app, runtime):
    before = runtime.group_commit.transactions
    writes = [[(INSERT_ACCESS_TOKEN, _record())] for _ in range(FOLLOWERS)]
    leader, followers = _leader_then_followers(runtime, writes)
    assert leader.result() == 1
    # Everything that queued during the first commit went in the next one, together.
    assert [f.result() for f in followers] == [FOLLOWERS] * FOLLOWERS
    assert runtime.group_commit.transactions - before == 2
    assert count(app, AccessTokenRecord) == 1 + FOLLOWERS


def test_a_request_whose_rows_fail_fails_alone_and_writes_nothing(app, runtime):
    taken = _record()
    runtime.group_commit.insert([(INSERT_ACCESS_TOKEN, taken)])
    good = [_record() for _ in range(FOLLOWERS - 1)]
    half_written = _record()  # committed only with its duplicate partner: so never
    writes = [[(INSERT_ACCESS_TOKEN, row)] for row in good]
    writes.insert(2, [(INSERT_ACCESS_TOKEN, half_written), (INSERT_ACCESS_TOKEN, dict(taken))])
    leader, followers = _leader_then_followers(runtime, writes)
    leader.result()
    failed = followers.pop(2)
    with pytest.raises(IntegrityError):
        failed.result()
    assert all(f.result() == 1 for f in followers)  # retried alone, each committed
    stored = {r.jti for r in rows(app, AccessTokenRecord)}
    assert {r["jti"] for r in good} <= stored
    assert half_written["jti"] not in stored


def _issued_row(runtime) -> dict:
    return audit.row_values(runtime.audit_key, audit.AuditEntry("token.issued", client_id="x"))


def test_a_first_statement_that_fails_fails_only_its_own_request(app, runtime):
    """On PostgreSQL a batch is pipelined, and the error of its first INSERT may reach Python
    at the second. It must still be the row's own error (IntegrityError, not the pipeline's
    abort), so the batch is retried request by request and the others commit. Repeated:
    where the error surfaces varies from run to run."""
    for _ in range(10):
        taken = _record()
        runtime.group_commit.insert([(INSERT_ACCESS_TOKEN, taken)])
        bad_audit_row = _issued_row(runtime)
        bad = [(INSERT_ACCESS_TOKEN, dict(taken)), (INSERT_AUDIT_ROWS, bad_audit_row)]
        good = [[(INSERT_ACCESS_TOKEN, _record()), (INSERT_AUDIT_ROWS, _issued_row(runtime))]]
        leader, followers = _leader_then_followers(runtime, [bad, *good])
        leader.result()
        with pytest.raises(IntegrityError):
            followers[0].result()
        assert followers[1].result() == 1  # retried alone, committed
        stored = {r.jti for r in rows(app, AccessTokenRecord)}
        assert good[0][0][1]["jti"] in stored
        events = {r.event_id for r in audit_events(app, "token.issued")}
        assert good[0][1][1]["event_id"] in events
        assert bad_audit_row["event_id"] not in events


def test_a_failed_insert_does_not_carry_the_rows_values_into_its_message(runtime, engine):
    """A 500's log line prints the database error; SQLAlchemy would append the statement's
    parameters (in a group commit, other requests' rows). The engine hides them."""
    taken = _record()
    runtime.group_commit.insert([(INSERT_ACCESS_TOKEN, taken)])
    marker = "client-" + secrets.token_hex(8)
    with pytest.raises(IntegrityError) as failed, engine.begin() as connection:
        connection.execute(INSERT_ACCESS_TOKEN, [{**taken, "client_id": marker}])
    assert "INSERT INTO access_tokens" in str(failed.value)  # the statement's own error
    assert marker not in str(failed.value)


def test_a_batch_that_fails_for_the_database_fails_once_for_all(app, runtime, engine):
    """An error that no row caused (the file locked past its timeout, a lost connection)
    would fail each request's retry too, after as long again: every request of the batch
    gets it from the one attempt (GroupCommitFailed, the database's error as its cause)."""
    attempts: list[str] = []
    locked = engine.dialect.loaded_dbapi.OperationalError

    def database_locked(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ACCESS_TOKENS"):
            attempts.append(statement)
            if len(attempts) > 1:  # the first batch (the held leader's) commits
                raise locked("simulated: database is locked")

    event.listen(engine, "before_cursor_execute", database_locked)
    try:
        writes = [[(INSERT_ACCESS_TOKEN, _record())] for _ in range(FOLLOWERS)]
        leader, followers = _leader_then_followers(runtime, writes)
        assert leader.result() == 1
        for follower in followers:
            with pytest.raises(GroupCommitFailed) as failed:
                follower.result()
            assert isinstance(failed.value.__cause__, OperationalError)
    finally:
        event.remove(engine, "before_cursor_execute", database_locked)
    assert len(attempts) == 2  # the leader's batch, then the followers' once: no retries
    assert count(app, AccessTokenRecord) == 1


def test_an_interrupted_commit_still_answers_every_request_it_took(app, engine):
    """Whatever escapes a commit (here an exception thrown past it), each request it had
    taken is answered, rather than its thread waiting, or leading empty commits, for ever."""
    group = GroupCommit(engine)
    release, calls = threading.Event(), []
    commit = group._commit

    def first_held_then_interrupted(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            assert release.wait(10)
            return commit(batch)
        raise RuntimeError("interrupted")

    group._commit = first_held_then_interrupted
    with ThreadPoolExecutor(1 + FOLLOWERS) as pool:
        leader = pool.submit(group.insert, [(INSERT_ACCESS_TOKEN, _record())])
        _wait_for(lambda: len(calls) == 1)
        followers = [
            pool.submit(group.insert, [(INSERT_ACCESS_TOKEN, _record())]) for _ in range(FOLLOWERS)
        ]
        _wait_for(lambda: group.waiting() == FOLLOWERS)
        release.set()
        assert leader.result(timeout=10) == 1
        outcomes = []
        for follower in followers:
            try:
                follower.result(timeout=10)
                outcomes.append("committed")
            except RuntimeError:
                outcomes.append("interrupted")  # the follower that led the second commit
            except GroupCommitFailed:
                outcomes.append("failed")
    assert sorted(outcomes) == ["failed"] * (FOLLOWERS - 1) + ["interrupted"]
    assert calls == [1, FOLLOWERS]
    assert count(app, AccessTokenRecord) == 1


def test_a_lone_request_commits_at_once(app, runtime):
    row = _record()
    assert runtime.group_commit.insert([(INSERT_ACCESS_TOKEN, row)]) == 1
    assert [r.jti for r in rows(app, AccessTokenRecord)] == [row["jti"]]


def _audit_rows(runtime, note: str) -> list[dict]:
    """Two audit rows: one with a delegation chain and nested details, one with neither."""
    return [
        audit.row_values(
            runtime.audit_key,
            audit.AuditEntry(
                "token.exchanged",
                client_id="agent",
                user_id="u-1",
                actor_chain=["agent", "planner"],
                ip="127.0.0.1",
                details={"note": note, "scope": ["read"], "n": 3, "nested": {"ok": True}},
            ),
        ),
        audit.row_values(runtime.audit_key, audit.AuditEntry("token.issued", details={})),
    ]


def test_rows_are_stored_as_sqlalchemy_itself_stores_them(app, runtime, engine):
    """A batch's INSERTs go to the driver with SQL compiled once: each value must still pass
    through its column's type (JSON serialised, None as SQL NULL rather than JSON null), so
    the stored rows equal those SQLAlchemy's own execute stores, and their MACs verify."""
    by_group, by_sqlalchemy = _audit_rows(runtime, "group"), _audit_rows(runtime, "execute")
    runtime.group_commit.insert([(INSERT_AUDIT_ROWS, row) for row in by_group])
    with engine.begin() as connection:
        connection.execute(INSERT_AUDIT_ROWS, by_sqlalchemy)

    columns = [c for c in AuditEvent.__table__.c if c.key not in ("id", "event_id", "row_mac")]
    with engine.connect() as connection:
        stored = {
            row.event_id: row
            for row in connection.execute(
                select(
                    AuditEvent.event_id, AuditEvent.actor_chain.is_(None).label("null"), *columns
                )
            )
        }
    for mine, theirs in zip(by_group, by_sqlalchemy, strict=True):
        ours, reference = stored[mine["event_id"]], stored[theirs["event_id"]]
        assert ours.null == reference.null
        for column in columns:
            if column.key in ("details", "occurred_at_us"):
                continue
            assert getattr(ours, column.key) == getattr(reference, column.key), column.key
    assert stored[by_group[0]["event_id"]].details["nested"] == {"ok": True}
    assert stored[by_group[0]["event_id"]].actor_chain == ["agent", "planner"]
    assert stored[by_group[1]["event_id"]].null  # SQL NULL: "IS NULL" finds it
    assert link_and_verify(app) == []


def test_a_column_the_rows_leave_to_its_default_gets_the_default(app, runtime):
    """Rows without `details` (its default is `dict`) cannot use SQL compiled for the rows'
    columns alone: that statement runs through SQLAlchemy, which fills the default in."""
    row = _audit_rows(runtime, "")[1]
    del row["details"]  # not covered by the MAC check below: the content changed
    runtime.group_commit.insert([(INSERT_AUDIT_ROWS, row)])
    [stored] = audit_events(app, "token.issued")
    assert stored.details == {}


@pytest.fixture
def server(migrated_database):
    with live_server(migrated_database) as running:
        yield running


def test_concurrent_grants_each_get_a_committed_record_and_audit_row(server):
    """Over HTTP, 24 grants at once: each token is introspected active right after its
    response (its record was committed before it was sent), and each has its audit row."""
    reset_database(server.app)
    make_resource(server.app, API, scopes=("read",))
    service = make_machine_client(server.app, "batch-job", "read", [API])
    session = requests.Session()

    def grant_then_introspect(_: int) -> tuple[str, bool]:
        token = session.post(
            f"{server.url}/token",
            data={"grant_type": "client_credentials", "scope": "read", "resource": API},
            auth=service.basic_auth,
            timeout=30,
        ).json()["access_token"]
        answer = session.post(
            f"{server.url}/introspect",
            data={"token": token},
            auth=service.basic_auth,
            timeout=30,
        ).json()
        return token, answer["active"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(grant_then_introspect, range(24)))
    assert all(active for _, active in results)
    assert count(server.app, AccessTokenRecord) == 24
    issued = audit_events(server.app, "token.issued")
    assert len(issued) == 24
    assert server.app.extensions["authserver"].engine.pool.checkedout() == 0


def test_a_grant_whose_commit_fails_hands_out_no_token(app, client, engine):
    """The record's INSERT is refused by the database: 500 server_error, no token, nothing
    written (the audit row went in the same transaction)."""
    make_resource(app, API, scopes=("read",))
    service = make_machine_client(app, "batch-job", "read", [API])

    def refuse_token_records(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ACCESS_TOKENS"):
            raise RuntimeError("disk full")

    event.listen(engine, "before_cursor_execute", refuse_token_records)
    try:
        response = client.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "read", "resource": API},
            auth=service.basic_auth,
        )
    finally:
        event.remove(engine, "before_cursor_execute", refuse_token_records)
    assert response.status_code == 500
    assert response.get_json()["error"] == "server_error"
    assert "access_token" not in response.get_json()
    assert count(app, AccessTokenRecord) == 0
    assert audit_events(app, "token.issued") == []
