"""The tamper-evident audit log (DESIGN.md "Audit"): flows write rows, the linker chains
them, `verify_chain` and `authserver audit verify` detect edits, forgeries, deletions
and truncation, several writer processes at once leave one intact chain, and no row
ever holds a password, code, token or secret.
"""

from __future__ import annotations

import json
import subprocess
from urllib.parse import urlencode

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update

from authserver import audit
from authserver.cli import main as cli
from authserver.db import transaction
from authserver.models import AuditEvent, AuditHead
from tests.support import apps
from tests.support.apps import reset_database
from tests.support.db import audit_events, link_and_verify
from tests.support.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.support.flows import Pkce, code_params, csrf_token, query_of
from tests.support.live import (
    LiveBrowser,
    audit_worker_command,
    live_server,
    server_env,
)

WRITERS = 4
ROWS_PER_WRITER = 200


@pytest.fixture(scope="module")
def server(migrated_database):
    with live_server(migrated_database) as running:
        yield running


@pytest.fixture
def live(server):
    reset_database(server.app)
    return server


def full_flow(live) -> dict[str, str]:
    """Sign-in (one failure first), consent, code, refresh, introspection, revocation,
    client credentials; returns every secret value that crossed the wire."""
    make_user(live.app, "alice")
    rp = make_client(live.app, "audit-rp")
    service = make_client(
        live.app, "audit-svc", grant_types=["client_credentials"], redirect_uris=[], scope="jobs"
    )
    wrong_password = "wrong-password-" + Pkce.new().verifier[:12]
    browser = LiveBrowser(live.url, "alice", wrong_password)
    page = browser.http.get(f"{live.url}/login", timeout=10).text
    failed = browser.http.post(
        f"{live.url}/login",
        data={"username": "alice", "password": wrong_password, "csrf_token": csrf_token(page)},
        timeout=10,
    )
    assert failed.status_code == 401
    browser.password = DEFAULT_PASSWORD
    pkce = Pkce.new()
    params = code_params(rp.client_id, rp.redirect_uri, pkce)
    callback = browser.authorize(f"{live.url}/authorize?{urlencode(params)}")
    code = query_of(callback)["code"]
    token_url = f"{live.url}/token"

    def post(url, data, auth=rp.basic_auth):
        response = requests.post(url, data=data, auth=auth, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    tokens = post(
        token_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": pkce.verifier,
        },
    )
    refreshed = post(
        token_url, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    post(f"{live.url}/introspect", {"token": refreshed["access_token"]})
    post(f"{live.url}/revoke", {"token": refreshed["refresh_token"]})
    machine = post(token_url, {"grant_type": "client_credentials"}, auth=service.basic_auth)
    bad_secret = "not-the-secret-" + Pkce.new().verifier[:12]
    refused = requests.post(
        token_url,
        data={"grant_type": "client_credentials"},
        auth=(service.client_id, bad_secret),
        timeout=10,
    )
    assert refused.status_code == 401
    return {
        "password": DEFAULT_PASSWORD,
        "wrong password": wrong_password,
        "client secret": rp.client_secret,
        "service secret": service.client_secret,
        "bad secret": bad_secret,
        "code": code,
        "code verifier": pkce.verifier,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "id token": tokens["id_token"],
        "rotated refresh token": refreshed["refresh_token"],
        "rotated access token": refreshed["access_token"],
        "service token": machine["access_token"],
    }


def test_flow_events_are_written_linked_and_verified(live):
    """Every security event of a flow is one row; linking chains each exactly once."""
    full_flow(live)
    events = [row.event for row in audit_events(live.app)]
    for name in ("login", "consent", "authorize", "token.issued", "token.refreshed"):
        assert name in events, events
    assert {"token.revoked", "token.introspected"} <= set(events)
    outcomes = {(row.event, row.outcome) for row in audit_events(live.app)}
    assert ("login", "failure") in outcomes
    assert link_and_verify(live.app) == []
    seqs = sorted(row.chain_seq for row in audit_events(live.app))
    assert seqs == list(range(1, len(events) + 1))


def test_audit_rows_never_hold_secret_values(live):
    """DESIGN.md Audit: details without secrets; STYLE.md: never log a token or secret."""
    secrets_used = full_flow(live)
    with live.runtime.session_factory() as session:
        dumped = [
            json.dumps(
                [
                    row.event,
                    row.outcome,
                    row.user_id,
                    row.client_id,
                    row.ip,
                    row.actor_chain,
                    row.details,
                ]
            )
            for row in session.scalars(select(AuditEvent))
        ]
    assert len(dumped) >= 10
    for label, value in secrets_used.items():
        leaks = [row for row in dumped if value in row]
        assert not leaks, f"the {label} appears in audit rows: {leaks[:1]}"


def write_rows(app, count: int) -> list[int]:
    runtime = app.extensions["authserver"]
    ids = []
    for index in range(count):
        with transaction(runtime.session_factory) as session:
            row = audit.make_row(
                runtime.audit_key, audit.AuditEntry(event="test.event", details={"n": index})
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
    audit.link_all(runtime.session_factory, runtime.audit_key)
    return ids


def tamper(app, *statements) -> None:
    with transaction(app.extensions["authserver"].session_factory) as session:
        for statement in statements:
            session.execute(statement)


def problems(app) -> list[audit.Problem]:
    return link_and_verify(app)


def cli_verify(live, database_url: str, *extra: str) -> dict:
    """`authserver audit verify --json`, run through the console entry point."""
    env = server_env(database_url, live.url)
    result = CliRunner().invoke(cli, ["audit", "verify", "--json", *extra], env=env)
    report = json.loads(result.output)
    assert result.exit_code == (0 if report["ok"] else 1)
    return report


def test_edited_row_is_detected(live, migrated_database):
    """Changing a row's details breaks its row MAC: kind `edited`."""
    ids = write_rows(live.app, 6)
    assert problems(live.app) == [] and cli_verify(live, migrated_database)["ok"]
    tamper(live.app, update(AuditEvent).where(AuditEvent.id == ids[2]).values(details={"n": 99}))
    found = problems(live.app)
    assert [p.kind for p in found] == ["edited"]
    assert f"id={ids[2]}" in found[0].detail
    report = cli_verify(live, migrated_database)
    assert not report["ok"] and [p["kind"] for p in report["problems"]] == ["edited"]


def test_inserted_forged_row_is_detected(live, migrated_database):
    """A row added with SQL cannot carry a valid row MAC, even once the linker chains it."""
    write_rows(live.app, 4)
    forged = AuditEvent(
        event_id="00000000-0000-4000-8000-000000000000",
        occurred_at_us=1,
        event="login",
        outcome="success",
        user_id="someone",
        details={},
        row_mac="ab" * 32,
    )
    with transaction(live.runtime.session_factory) as session:
        session.add(forged)
    found = problems(live.app)
    assert [p.kind for p in found] == ["edited"]
    assert f"id={forged.id}" in found[0].detail
    assert cli_verify(live, migrated_database)["problems"][0]["kind"] == "edited"


def test_deleted_middle_row_is_detected(live, migrated_database):
    """A row deleted from the middle leaves a gap in chain positions: kind `missing`."""
    ids = write_rows(live.app, 6)
    tamper(live.app, delete(AuditEvent).where(AuditEvent.id == ids[2]))
    kinds = [p.kind for p in problems(live.app)]
    assert kinds[0] == "missing" and set(kinds) == {"missing", "chain_broken"}
    report = cli_verify(live, migrated_database)
    assert not report["ok"] and report["problems"][0]["kind"] == "missing"


def test_truncated_tail_is_detected(live, migrated_database):
    """Deleting the newest rows leaves the head pointing past the end: kind `truncated`."""
    ids = write_rows(live.app, 6)
    tamper(live.app, delete(AuditEvent).where(AuditEvent.id.in_(ids[-2:])))
    assert [p.kind for p in problems(live.app)] == ["truncated"]
    assert [p["kind"] for p in cli_verify(live, migrated_database)["problems"]] == ["truncated"]


def test_truncated_tail_with_head_removed_is_detected(live):
    """Deleting the tail and the head record too is still truncation."""
    ids = write_rows(live.app, 4)
    tamper(
        live.app,
        delete(AuditEvent).where(AuditEvent.id == ids[-1]),
        delete(AuditHead),
    )
    runtime = live.runtime
    with runtime.session_factory() as session:
        found = audit.verify_chain(session, runtime.audit_key)
    assert [p.kind for p in found] == ["truncated"]


def test_emptied_log_is_detected(live, migrated_database):
    """Every row and the head record deleted: the head of the chain is made with the key
    when the key is, so an empty log without it was cut, not new."""
    write_rows(live.app, 3)
    tamper(live.app, delete(AuditEvent), delete(AuditHead))
    report = cli_verify(live, migrated_database)
    assert not report["ok"] and [p["kind"] for p in report["problems"]] == ["truncated"]
    assert report["events"] == 0 and report["head"] is None


def test_a_fresh_log_is_intact(live, migrated_database):
    """Control for the above: no rows yet, the head made with the key, nothing to report."""
    report = cli_verify(live, migrated_database)
    assert report["ok"] and report["events"] == 0
    assert report["head"] == "0:" + audit.GENESIS_MAC


def test_rewinding_to_an_older_head_is_detected_by_an_exported_head(live, migrated_database):
    """docs/deploying.md: restoring an older head record (anyone with database access can
    keep a copy) and deleting the rows after it breaks no MAC; the head exported since
    (`head` of `audit verify --json`, kept outside the database) shows it: `rewound`."""
    write_rows(live.app, 3)
    older = cli_verify(live, migrated_database)["head"]
    with live.runtime.session_factory() as session:
        saved = session.get(AuditHead, 1)
        copy = {"chain_seq": saved.chain_seq, "chain_mac": saved.chain_mac}
        copy["head_mac"] = saved.head_mac
    write_rows(live.app, 3)
    exported = cli_verify(live, migrated_database)["head"]
    assert cli_verify(live, migrated_database, "--since", older)["ok"]  # still in the chain
    tamper(
        live.app,
        delete(AuditEvent).where(AuditEvent.chain_seq > copy["chain_seq"]),
        update(AuditHead).values(**copy),
    )
    assert cli_verify(live, migrated_database)["ok"]  # what the database alone can show
    report = cli_verify(live, migrated_database, "--since", exported)
    assert not report["ok"] and [p["kind"] for p in report["problems"]] == ["rewound"]


@pytest.mark.parametrize(
    "value",
    ["latest", "²:" + "a" * 64, "9" * 30 + ":" + "a" * 64, "3:" + "é" * 64, "3:" + "A" * 64],
)
def test_since_must_be_a_head(live, migrated_database, value):
    """A usage error (exit 2), never a traceback: digits only, a 64-digit lowercase MAC."""
    env = server_env(migrated_database, live.url)
    result = CliRunner().invoke(cli, ["audit", "verify", "--since", value], env=env)
    assert result.exit_code == 2 and "POSITION:MAC" in result.output


def test_a_damaged_chain_reports_no_head_to_export(live, migrated_database):
    """Only an intact chain's head is worth keeping as an anchor."""
    ids = write_rows(live.app, 3)
    tamper(live.app, update(AuditEvent).where(AuditEvent.id == ids[0]).values(details={}))
    report = cli_verify(live, migrated_database)
    assert not report["ok"] and report["head"] is None


def test_deleting_the_audit_key_too_is_detected_not_reset(migrated_database, tmp_path):
    """Deleting the rows, the head and the audit key itself must not let a new key and an
    empty chain look intact: a key is made only for a database without audit rows, users
    or clients (a new one, as `authserver init` makes it)."""
    from authserver.models import ServerSecret
    from tests.support.live import isolated_database

    with isolated_database(migrated_database, tmp_path) as url:
        app = apps.build_test_app(url)
        make_user(app, "alice")
        write_rows(app, 3)
        tamper(app, delete(AuditEvent), delete(AuditHead), delete(ServerSecret))
        env = server_env(url, "http://127.0.0.1:9")
        result = CliRunner().invoke(cli, ["audit", "verify", "--json"], env=env)
        report = json.loads(result.output)
        assert result.exit_code == 1 and not report["ok"]
        assert [p["kind"] for p in report["problems"]] == ["key_missing"]
        with app.extensions["authserver"].session_factory() as session:
            assert session.get(ServerSecret, audit.AUDIT_KEY_NAME) is None  # not made again
        app.extensions["authserver"].engine.dispose()


def test_concurrent_writer_processes_and_linker_leave_one_chain(live, migrated_database, tmp_path):
    """Four writer processes and a linker process at once: every row linked exactly once,
    positions 1..N without gaps, the chain verifies."""
    runtime = live.runtime
    assert runtime.audit_key  # created before the children start, as `authserver init` does
    env = server_env(migrated_database, live.url)
    stop = tmp_path / "stop"
    linker = subprocess.Popen(
        audit_worker_command("linker", str(stop)),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    writers = [
        subprocess.Popen(
            audit_worker_command("writer", str(ROWS_PER_WRITER), f"writer-{n}"), env=env
        )
        for n in range(WRITERS)
    ]
    try:
        assert [writer.wait(timeout=120) for writer in writers] == [0] * WRITERS
    finally:
        stop.touch()
        linked_by_child = int(linker.communicate(timeout=60)[0].strip() or 0)
    assert linker.returncode == 0
    assert linked_by_child > 0  # the linker really ran beside the writers
    assert link_and_verify(live.app) == []
    with runtime.session_factory() as session:
        total = session.scalar(select(func.count()).select_from(AuditEvent))
        seqs = list(session.scalars(select(AuditEvent.chain_seq).order_by(AuditEvent.chain_seq)))
        head = session.get(AuditHead, 1)
        per_writer = dict(
            session.execute(
                select(AuditEvent.client_id, func.count()).group_by(AuditEvent.client_id)
            ).all()
        )
    assert total == WRITERS * ROWS_PER_WRITER
    assert per_writer == {f"writer-{n}": ROWS_PER_WRITER for n in range(WRITERS)}
    assert seqs == list(range(1, total + 1))
    assert head.chain_seq == total


def test_verify_reads_one_snapshot_while_a_linker_commits(live, monkeypatch):
    """DESIGN.md Audit, several workers: a worker's linker that commits while `audit verify`
    reads must not make an intact log look truncated. The rows and the head are judged
    from one snapshot (REPEATABLE READ on PostgreSQL; a WAL read transaction on SQLite),
    here on a read-only session, which takes no lock the linker would wait for."""
    runtime = live.runtime
    write_rows(live.app, 3)
    with transaction(runtime.session_factory) as session:
        for index in range(2):
            entry = audit.AuditEntry(event="test.event", details={"late": index})
            session.add(audit.make_row(runtime.audit_key, entry))
    check_head = audit._check_head

    def another_worker_links_first(session, key, last_seq, last_mac):
        assert audit.link_all(runtime.session_factory, runtime.audit_key) == 2
        return check_head(session, key, last_seq, last_mac)

    monkeypatch.setattr(audit, "_check_head", another_worker_links_first)
    with runtime.read_session_factory() as session:
        assert audit.verify_chain(session, runtime.audit_key) == []
    monkeypatch.undo()
    assert problems(live.app) == []
    with runtime.session_factory() as session:
        assert session.get(AuditHead, 1).chain_seq == 5
