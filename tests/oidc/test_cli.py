"""The `authserver` console script (DESIGN.md "CLI"), run as an operator runs it: a
subprocess in a temporary working directory, so `instance/` is temporary too.

One workspace per module (`authserver init` once); each test uses its own names.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import click
import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from authserver import create_app, rotation
from authserver.audit import AuditEntry, make_row, verify_chain
from authserver.cli import main as cli_main
from authserver.db import transaction
from authserver.keys import SUPPORTED_ALGS
from authserver.models import AuditEvent, SigningKey
from authserver.runtime import build_runtime
from authserver.settings import check_settings, load_settings
from tests.support.apps import FAST_ARGON2, scratch_database
from tests.support.ciba_live import serve_wsgi
from tests.support.live import ServerProcess, free_port, run_cli, server_env
from vault import KeyRing, key_version

PASSWORD = "cli-user-password-1"


class Workspace:
    """A temporary working directory with its database, as `authserver init` left it."""

    def __init__(self, cwd, database_url: str) -> None:
        self.cwd = cwd
        self.database_url = database_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
        self.env.update(
            AUTHSERVER_DATABASE_URL=database_url,
            AUTHSERVER_AUDIT_LINK_INTERVAL="0",
            AUTHSERVER_ARGON2_TIME_COST=str(FAST_ARGON2["argon2_time_cost"]),
            AUTHSERVER_ARGON2_MEMORY_KIB=str(FAST_ARGON2["argon2_memory_kib"]),
            AUTHSERVER_ARGON2_PARALLELISM=str(FAST_ARGON2["argon2_parallelism"]),
        )
        self.init_output = ""

    @property
    def vault_keys(self):
        return self.cwd / "instance" / "vault_keys"

    def run(self, *args: str):
        return run_cli(list(args), self.env, self.cwd)

    def run_many(self, *commands: list[str]):
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda args: self.run(*args), commands))

    def json(self, *args: str):
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def invoke(self, *args: str):
        """The same command in this process (click's runner): for the cheaper extra checks."""
        env = {**self.env, "AUTHSERVER_INSTANCE_PATH": str(self.cwd / "instance")}
        result = CliRunner().invoke(cli_main, list(args), env=env)
        return InProcessResult(result.exit_code, result.stdout, result.stderr)

    def runtime_settings(self):
        """This workspace's settings as the CLI reads them."""
        environ = {**self.env, "AUTHSERVER_INSTANCE_PATH": str(self.cwd / "instance")}
        return check_settings(load_settings(environ))

    def runtime(self):
        return build_runtime(self.runtime_settings())


@dataclass
class InProcessResult:
    returncode: int
    stdout: str
    stderr: str


def assert_clean_failure(result, message: str) -> None:
    """Operator errors: non-zero exit, the reason on stderr, no traceback."""
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def workspace(database_url, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    if make_url(database_url).get_backend_name() == "sqlite":
        yield _initialised(Workspace(cwd, f"sqlite:///{cwd / 'instance' / 'authserver.db'}"))
        return
    with scratch_database(database_url) as url:
        yield _initialised(Workspace(cwd, url))


def _initialised(space: Workspace) -> Workspace:
    result = space.run("init")
    assert result.returncode == 0, result.stderr
    space.init_output = result.stdout
    return space


def test_init_generates_private_dev_secrets(workspace):
    """DESIGN.md: `authserver init` generates dev secrets under instance/ and says so."""
    for name in ("secret_key", "vault_keys"):
        path = workspace.cwd / "instance" / name
        assert path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert f"generated development secret {os.path.join('instance', name)}" in (
            workspace.init_output
        )
    assert "created signing key" in workspace.init_output
    assert "database ready" in workspace.init_output
    KeyRing.from_file(workspace.vault_keys)  # a usable key ring


def test_init_creates_the_sqlite_database_private(tmp_path):
    """The embedded database holds password hashes, emails and the audit log, and instance/
    the dev secrets: `init` creates both readable by their owner alone under the usual
    umask 022 (SQLite gives the WAL the database file's mode)."""
    instance = tmp_path / "instance"
    space = Workspace(tmp_path, f"sqlite:///{instance / 'authserver.db'}")
    previous = os.umask(0o022)
    try:
        result = space.run("init")
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    database = instance / "authserver.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    wal = instance / "authserver.db-wal"
    assert not wal.exists() or stat.S_IMODE(wal.stat().st_mode) == 0o600


def test_users_create_prints_json_and_refuses_duplicates(workspace):
    """`users create --json`; a duplicate is a clear error, not a traceback."""
    created = workspace.json(
        "users", "create", "--username", "carol", "--password", PASSWORD, "--json"
    )
    assert created["username"] == "carol" and created["id"]
    assert PASSWORD not in json.dumps(created)
    duplicate = workspace.run("users", "create", "--username", "carol", "--password", PASSWORD)
    assert_clean_failure(duplicate, "user 'carol' already exists")
    short = workspace.invoke("users", "create", "--username", "dave", "--password", "short")
    assert_clean_failure(short, "password: at least 8 characters")
    # The address becomes a mail header (approval emails): one plain addr-spec, nothing else.
    for bad in ("dave", "dave@example.com\r\nBcc: eve@example.com", "Dave <dave@example.com>"):
        refused = workspace.invoke(
            "users", "create", "--username", "dave", "--password", PASSWORD, "--email", bad
        )
        assert_clean_failure(refused, "email: a single address")
    listed = workspace.invoke("users", "list", "--json")
    assert {user["username"] for user in json.loads(listed.stdout)} >= {"carol"}
    assert "dave" not in {user["username"] for user in json.loads(listed.stdout)}


def test_client_secret_is_printed_once(workspace):
    """`clients create --json` shows client_secret once; `clients list` never does."""
    created = workspace.json(
        "clients",
        "create",
        "--name",
        "CLI Web",
        "--client-id",
        "cli-web",
        "--redirect-uri",
        "https://app.example.com/callback",
        "--json",
    )
    secret = created["client_secret"]
    assert created["client_id"] == "cli-web" and len(secret) >= 43
    assert created["require_pushed_authorization_requests"] is False
    assert created["redirect_uris"] == ["https://app.example.com/callback"]
    listing, bad_uri = workspace.run_many(
        ["clients", "list", "--json"],
        ["clients", "create", "--name", "Bad", "--redirect-uri", "http://evil.example.com/cb"],
    )
    taken = workspace.invoke(
        "clients",
        "create",
        "--name",
        "Again",
        "--client-id",
        "cli-web",
        "--redirect-uri",
        "https://app.example.com/callback",
    )
    assert listing.returncode == 0
    listed = {client["client_id"]: client for client in json.loads(listing.stdout)}
    assert "client_secret" not in listed["cli-web"]
    assert secret not in listing.stdout
    assert_clean_failure(bad_uri, "http is only allowed on loopback")
    assert_clean_failure(taken, "client id 'cli-web' is invalid or taken")


def test_clients_audiences_changes_what_a_client_may_get_tokens_for(workspace):
    """`clients audiences ID --allow/--disallow URI`: the APIs a client may get tokens for;
    each change is an audit row; a mistyped API, an unknown client or a contradiction is
    refused with nothing changed."""
    api = "https://audiences.example.com"
    assert (
        workspace.invoke(
            "resources", "create", "--identifier", api, "--name", "Aud API", "--scope", "read"
        ).returncode
        == 0
    )
    created = workspace.invoke(
        "clients",
        "create",
        "--name",
        "Job",
        "--client-id",
        "aud-job",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
    )
    assert created.returncode == 0, created.stderr

    def audiences(*args: str) -> list[str]:
        result = workspace.invoke("clients", "audiences", "aud-job", *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["allowed_audiences"]

    def audit_rows() -> list[dict]:
        listed = workspace.invoke("audit", "list", "--event", "clients.audiences_changed", "--json")
        return [row for row in json.loads(listed.stdout) if row["client_id"] == "aud-job"]

    assert audiences() == []
    assert audiences("--allow", api) == [api]
    assert audiences("--allow", api) == [api]  # already allowed: no change, no row
    [allowed] = audit_rows()
    assert allowed["details"] == {"client_id": "aud-job", "allowed": [api], "disallowed": []}

    for args, message in (
        (["aud-job", "--allow", "https://typo.example.com"], "is not a registered resource server"),
        (["aud-job", "--allow", "not a uri"], "an absolute URI without fragment"),
        (["aud-job", "--allow", api, "--disallow", api], "both allowed and disallowed"),
        (["no-such-client", "--allow", api], "no client 'no-such-client'"),
    ):
        assert_clean_failure(workspace.invoke("clients", "audiences", *args), message)
    assert audiences() == [api] and len(audit_rows()) == 1

    assert audiences("--disallow", api) == []
    newest, _ = audit_rows()  # newest first
    assert newest["details"] == {"client_id": "aud-job", "allowed": [], "disallowed": [api]}


def test_clients_create_allows_only_registered_audiences(workspace):
    """`clients create --allowed-audience URI` checks what `clients audiences --allow`
    checks: a URI that names no registered resource server (a typo) is refused and no
    client is created; a registered one is allowed."""
    api = "https://create-audience.example.com"
    created_api = workspace.invoke(
        "resources", "create", "--identifier", api, "--name", "API", "--scope", "read"
    )
    assert created_api.returncode == 0, created_api.stderr

    def create(client_id: str, audience: str) -> InProcessResult:
        return workspace.invoke(
            "clients",
            "create",
            "--name",
            "Job",
            "--client-id",
            client_id,
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
            "--allowed-audience",
            audience,
            "--json",
        )

    typo = create("typo-job", "https://create-audiense.example.com")
    assert_clean_failure(typo, "is not a registered resource server")
    good = create("good-job", api)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["allowed_audiences"] == [api]
    listed = {c["client_id"] for c in workspace.json("clients", "list", "--json")}
    assert "good-job" in listed and "typo-job" not in listed


def test_resources_create_and_list(workspace):
    """`resources create|list`: identifier, scopes, the API's introspecting client."""
    api_client = workspace.invoke(
        "clients",
        "create",
        "--name",
        "API",
        "--client-id",
        "cli-api",
        "--grant-type",
        "client_credentials",
        "--scope",
        "",
        "--json",
    )
    assert api_client.returncode == 0, api_client.stderr
    created = workspace.json(
        "resources",
        "create",
        "--identifier",
        "https://api.cli.example",
        "--name",
        "CLI API",
        "--scope",
        "read",
        "--scope",
        "write",
        "--client-id",
        "cli-api",
        "--json",
    )
    assert {k: created[k] for k in ("identifier", "name", "scopes", "client_id")} == {
        "identifier": "https://api.cli.example",
        "name": "CLI API",
        "scopes": ["read", "write"],
        "client_id": "cli-api",
    }
    listed = workspace.invoke("resources", "list", "--json")
    bad = workspace.invoke("resources", "create", "--identifier", "not-a-uri", "--name", "Bad")
    found = [r for r in json.loads(listed.stdout) if r["identifier"] == "https://api.cli.example"]
    assert found and found[0]["scopes"] == ["read", "write"] and found[0]["client_id"] == "cli-api"
    assert_clean_failure(bad, "resource identifier")


def test_demo_seed_only_json_is_complete_and_idempotent(workspace):
    """`demo --seed-only --json`: issuer, users with passwords, clients with ids, secrets
    and redirect URIs, resources, connections; the same output when run again."""
    first = workspace.json("demo", "--seed-only", "--json")
    second = workspace.json("demo", "--seed-only", "--json")
    assert first == second
    assert first["issuer"].startswith("http://127.0.0.1")
    assert all(user["username"] and user["password"] for user in first["users"])
    clients = {client["client_id"]: client for client in first["clients"]}
    assert clients
    for client in clients.values():
        assert "redirect_uris" in client
        if client["token_endpoint_auth_method"] != "none":
            assert client["client_secret"]
    assert first["resources"] and all(r["identifier"] for r in first["resources"])
    assert isinstance(first["connections"], list)


def test_keys_rotate_adds_keys_and_is_audited(workspace):
    """`keys rotate --json` adds a key per algorithm and writes a key-rotation audit row."""
    runtime = workspace.runtime()
    try:
        with runtime.session_factory() as session:
            before = {row.kid for row in session.scalars(select(SigningKey))}
        report = workspace.json("keys", "rotate", "--json")
        with runtime.session_factory() as session:
            rows = {row.kid: row for row in session.scalars(select(SigningKey))}
    finally:
        runtime.engine.dispose()
    assert set(report["new_kids"]) == set(rows) - before
    assert all(rows[kid].retired_at is None for kid in report["new_kids"])
    assert all(rows[kid].retired_at is not None for kid in before)
    events = json.loads(
        workspace.invoke("audit", "list", "--event", "keys.rotated", "--json").stdout
    )
    assert events and events[0]["details"]["new_kids"] == report["new_kids"]
    hand_over = report["signing_from"]
    assert hand_over >= int(time.time()) + report["activate_after_seconds"] - 5
    assert all(rows[kid].retired_at == hand_over for kid in before)


def test_keys_rotate_activate_after(workspace):
    """`--activate-after 0` hands over at once; a negative or over-a-day delay is a usage
    error that changes no key."""
    runtime = workspace.runtime()

    def key_states():
        with runtime.session_factory() as session:
            rows = session.scalars(select(SigningKey))
            return {row.kid: (row.retired_at, row.expires_at) for row in rows}

    try:
        before = key_states()
        for bad in ("-1", "86401", "soon"):
            result = workspace.invoke("keys", "rotate", "--activate-after", bad)
            assert result.returncode == 2 and "--activate-after" in result.stderr, bad
        assert key_states() == before
        started = int(time.time())
        report = workspace.json("keys", "rotate", "--activate-after", "0", "--json")
        with runtime.session_factory() as session:
            rows = {row.kid: row for row in session.scalars(select(SigningKey))}
    finally:
        runtime.engine.dispose()
    assert report["activate_after_seconds"] == 0
    current_before = [kid for kid, (retired_at, _) in before.items() if retired_at is None]
    assert current_before and set(rows) - set(before) == set(report["new_kids"])
    for kid in current_before:
        assert started <= rows[kid].retired_at <= int(time.time())


def write_audit(workspace, *entries: AuditEntry) -> None:
    runtime = workspace.runtime()
    try:
        key = runtime.audit_key
        with transaction(runtime.session_factory) as session:
            session.add_all([make_row(key, entry) for entry in entries])
    finally:
        runtime.engine.dispose()


def test_audit_list_filters(workspace):
    """`audit list --json` filters by --event, --client and --user."""
    write_audit(
        workspace,
        AuditEntry("login", user_id="u-list-1", client_id="c-list-1"),
        AuditEntry("token.issued", user_id="u-list-1", client_id="c-list-2"),
        AuditEntry("login", user_id="u-list-2", client_id="c-list-1"),
    )
    by_event = workspace.json("audit", "list", "--event", "token.issued", "--json")
    by_client, by_user = (
        json.loads(workspace.invoke("audit", "list", *args, "--json").stdout)
        for args in (("--client", "c-list-1"), ("--user", "u-list-1"))
    )
    assert {row["event"] for row in by_event} == {"token.issued"}
    assert {row["client_id"] for row in by_event} >= {"c-list-2"}
    assert [(r["event"], r["user_id"]) for r in by_client] == [
        ("login", "u-list-2"),
        ("login", "u-list-1"),
    ]
    assert [(r["event"], r["client_id"]) for r in by_user] == [
        ("token.issued", "c-list-2"),
        ("login", "c-list-1"),
    ]


def test_audit_verify_exits_1_after_tampering(workspace):
    """`audit verify`: exit 0 on an intact log, 1 once a row was edited in the database."""
    write_audit(workspace, AuditEntry("login", user_id="u-verify", details={"ok": True}))
    intact = workspace.run("audit", "verify", "--json")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert json.loads(intact.stdout)["ok"] is True
    runtime = workspace.runtime()
    try:
        with transaction(runtime.session_factory) as session:
            session.execute(
                update(AuditEvent)
                .where(AuditEvent.user_id == "u-verify")
                .values(details={"ok": False})
            )
        tampered = workspace.run("audit", "verify")
        assert tampered.returncode == 1
        assert "edited" in tampered.stdout and "Traceback" not in tampered.stderr
    finally:
        with transaction(runtime.session_factory) as session:  # leave the log usable
            session.execute(
                update(AuditEvent)
                .where(AuditEvent.user_id == "u-verify")
                .values(details={"ok": True})
            )
        runtime.engine.dispose()


def sealed_versions(runtime) -> list[int]:
    """The KEK version of every sealed value in every table that holds vault ciphertext."""
    with runtime.session_factory() as session:
        blobs = [
            blob
            for model, attribute in rotation.sealed_columns()
            for blob in session.scalars(select(getattr(model, attribute)))
            if blob is not None
        ]
    return [key_version(blob) for blob in blobs]


def assert_server_starts_and_signs(workspace) -> None:
    """The app builds from this workspace's settings, unseals its keys and signs with each;
    the audit key unseals too (the chain still verifies)."""
    settings = workspace.runtime_settings()
    overrides = {field.name: getattr(settings, field.name) for field in fields(settings)}
    # No background threads: they would outlive this check (and the workspace database).
    overrides.update(audit_link_interval=0, notification_poll_interval=0)
    app = create_app(overrides)
    runtime = app.extensions["authserver"]
    try:
        jwks = app.test_client().get("/jwks.json").get_json()
        assert {key["alg"] for key in jwks["keys"]} == set(SUPPORTED_ALGS)
        for alg in SUPPORTED_ALGS:
            token = runtime.minter.id_token(
                client_id="cli-check",
                alg=alg,
                subject="someone",
                auth_time=None,
                nonce=None,
                access_token=None,
            )
            assert runtime.minter.verify(token)["sub"] == "someone"
        with runtime.session_factory() as session:
            assert verify_chain(session, runtime.audit_key) == []
    finally:
        runtime.engine.dispose()


def test_vault_rotate_kek_rewraps_everything(workspace):
    """`vault rotate-kek`: every sealed row moves to the new KEK; the old KEK can go."""
    ring = KeyRing.from_file(workspace.vault_keys)
    grown = ring.with_new_key()
    workspace.vault_keys.write_text(grown.serialize())
    report = workspace.json("vault", "rotate-kek", "--json")
    assert report["remaining"] == 0 and report["active_version"] == grown.active_version
    assert report["rewrapped"] >= 4  # signing keys and the audit key at least
    runtime = workspace.runtime()
    try:
        assert set(sealed_versions(runtime)) == {grown.active_version}
    finally:
        runtime.engine.dispose()
    assert_server_starts_and_signs(workspace)
    shrunk = grown
    for version in ring.versions:
        shrunk = shrunk.without_key(version)
    workspace.vault_keys.write_text(shrunk.serialize())
    assert_server_starts_and_signs(workspace)
    again = json.loads(workspace.invoke("vault", "rotate-kek", "--json").stdout)
    assert again["rewrapped"] == 0 and again["remaining"] == 0


def test_interrupted_rotate_kek_resumes(workspace, monkeypatch):
    """DESIGN.md: rotate-kek can resume after a crash; nothing is lost meanwhile."""
    ring = KeyRing.from_file(workspace.vault_keys)
    grown = ring.with_new_key()
    workspace.vault_keys.write_text(grown.serialize())
    runtime = workspace.runtime()
    real_batch = rotation._rewrap_batch
    calls = []

    def crash_after_first_batch(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("killed half-way")
        calls.append(1)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(rotation, "BATCH", 1)
    monkeypatch.setattr(rotation, "_rewrap_batch", crash_after_first_batch)
    try:
        with pytest.raises(KeyboardInterrupt):
            rotation.rewrap_all(runtime.session_factory, runtime.keyring)
        versions = sealed_versions(runtime)
    finally:
        runtime.engine.dispose()
    assert grown.active_version in versions and len(set(versions)) == 2  # half done
    assert_server_starts_and_signs(workspace)  # both KEKs still in the ring
    report = workspace.json("vault", "rotate-kek", "--json")
    assert report["remaining"] == 0
    assert report["rewrapped"] == len(versions) - 1
    runtime = workspace.runtime()
    try:
        assert set(sealed_versions(runtime)) == {grown.active_version}
    finally:
        runtime.engine.dispose()
    assert_server_starts_and_signs(workspace)


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_help_on_every_command(workspace):
    """DESIGN.md: --help on every command and subcommand."""
    top = workspace.run("--help")
    assert top.returncode == 0 and "Usage: authserver" in top.stdout
    runner = CliRunner()
    paths = command_paths(cli_main)
    assert ("vault", "rotate-kek") in paths and ("audit", "verify") in paths
    for path in paths:
        result = runner.invoke(cli_main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output and "Show this message and exit." in result.output


def test_unusable_key_ring_or_secret_file_is_a_clear_error(workspace, tmp_path):
    """A key ring that does not parse, a well-formed ring that is not the one this database
    was sealed with, or a `*_FILE` that cannot be read: a message naming the setting, no
    traceback, and nothing written (no new key, no audit row)."""
    runtime = workspace.runtime()
    try:
        with runtime.session_factory() as session:
            kids_before = set(session.scalars(select(SigningKey.kid)))
            audit_rows_before = len(session.scalars(select(AuditEvent.id)).all())
    finally:
        runtime.engine.dispose()
    malformed = {"AUTHSERVER_VAULT_KEYS": "not-a-key-ring"}
    other_ring = {"AUTHSERVER_VAULT_KEYS": KeyRing.generate().serialize()}
    absent_file = {"AUTHSERVER_SECRET_KEY_FILE": str(tmp_path / "absent")}
    cases = [
        (malformed, ["keys", "rotate"], "AUTHSERVER_VAULT_KEYS"),
        (other_ring, ["keys", "rotate"], "AUTHSERVER_VAULT_KEYS"),
        (other_ring, ["audit", "verify"], "AUTHSERVER_VAULT_KEYS"),
        (absent_file, ["keys", "rotate"], "AUTHSERVER_SECRET_KEY_FILE"),
    ]
    for overrides, args, message in cases:
        result = run_cli(args, {**workspace.env, **overrides}, workspace.cwd)
        assert_clean_failure(result, message)
        assert "not-a-key-ring" not in result.stderr
        if overrides is other_ring:
            assert overrides["AUTHSERVER_VAULT_KEYS"] not in result.stderr + result.stdout
    runtime = workspace.runtime()
    try:
        with runtime.session_factory() as session:
            assert set(session.scalars(select(SigningKey.kid))) == kids_before
            assert len(session.scalars(select(AuditEvent.id)).all()) == audit_rows_before
    finally:
        runtime.engine.dispose()


def connection_names(workspace) -> list[str]:
    listed = json.loads(workspace.invoke("connections", "list", "--json").stdout)
    return sorted(item["name"] for item in listed)


CONNECTION = [
    "connections", "create", "--name", "drive", "--client-id", "vault-client",
    "--client-secret", "upstream-secret-0123456789",
    "--authorize-url", "https://accounts.example.com/o/authorize",
    "--token-url", "https://accounts.example.com/o/token",
    "--scope", "files.read", "--scope", "files.write",
]  # fmt: skip


def test_connections_create_prints_everything_but_the_secret(workspace):
    """The control case: explicit https endpoints; the client secret is stored sealed."""
    before = connection_names(workspace)
    created = workspace.invoke(*CONNECTION, "--authorize-param", "access_type=offline", "--json")
    assert created.returncode == 0, created.stderr
    data = json.loads(created.stdout)
    assert data["token_url"] == "https://accounts.example.com/o/token"
    assert "upstream-secret" not in created.stdout
    assert connection_names(workspace) == sorted([*before, "drive"])


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--token-url", "accounts.example.com/o/token", "token URL must be an absolute https"),
        ("--token-url", "ftp://accounts.example.com/token", "token URL must be an absolute"),
        ("--token-url", "http://accounts.example.com/token", "token URL must use https"),
        ("--token-url", "https://accounts.example.com/token#frag", "without fragment"),
        ("--token-url", "https://user:pw@accounts.example.com/token", "credentials"),
        ("--token-url", "https://accounts.example.com/to\nken", "token URL must be"),
        ("--token-url", "https://accounts.example.com:99999/token", "token URL must be"),
        ("--authorize-url", "javascript:alert(1)", "authorize URL must be"),
        ("--revocation-url", "not a url", "revocation URL must be"),
        # Checked before anything is fetched from it (not "discovery failed").
        ("--discovery-url", "file:///etc/passwd", "discovery URL must be"),
        (
            "--discovery-url",
            "http://metadata.example.com/.well-known/openid-configuration",
            "discovery URL must use https",
        ),
        ("--scope", "two words", "scope tokens"),
        ("--authorize-param", "state=fixed", "set by the vault itself: state"),
        ("--authorize-param", "code_challenge_method=plain", "code_challenge_method"),
    ],
)
def test_connections_create_refuses_bad_endpoints_scopes_and_params(workspace, option, value, says):
    """RFC 6749 §3.1/§3.2 endpoints (absolute, no fragment, TLS except on loopback), §3.3
    scope tokens, and no extra parameter that would replace what the vault sets itself:
    a clear error, and no connection is created."""
    before = connection_names(workspace)
    name = f"bad-{secrets.token_hex(4)}"  # a name clash must not be what refuses it
    args = [a if a != "drive" else name for a in CONNECTION]
    result = workspace.invoke(*args, option, value)
    assert result.returncode == 1, (value, result.stdout)
    assert "Error:" in result.stderr and "Traceback" not in result.stderr
    assert says in result.stderr, result.stderr
    assert value not in result.stderr and "pw@" not in result.stderr  # never echoed
    assert connection_names(workspace) == before


def test_connections_create_refuses_a_malformed_authorize_param(workspace):
    before = connection_names(workspace)
    result = workspace.invoke(*CONNECTION, "--authorize-param", "access_type")
    assert result.returncode == 2 and "key=value" in result.stderr
    assert connection_names(workspace) == before


def test_connections_create_accepts_http_on_loopback(workspace):
    """A provider on this machine (the demo calendar) may use plain http."""
    args = [a.replace("https://accounts.example.com", "http://127.0.0.1:8766") for a in CONNECTION]
    result = workspace.invoke(*[a if a != "drive" else "local" for a in args])
    assert result.returncode == 0, result.stderr
    assert "local" in connection_names(workspace)


def _metadata_server(issuer_of: Callable[[str], str], **extra: object):
    """An upstream's RFC 8414 document on loopback; `issuer_of(url)` is the issuer it names."""

    def build(url: str) -> Any:
        document = {
            "issuer": issuer_of(url),
            "authorization_endpoint": f"{url}/authorize",
            "token_endpoint": f"{url}/token",
            **extra,
        }

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(document).encode()]

        return app

    return serve_wsgi(build)


DISCOVERED = [
    "connections", "create", "--client-id", "vault-client", "--client-secret", "s3cret-0123456789",
    "--scope", "files.read", "--json",
]  # fmt: skip


def test_connections_create_by_discovery_records_the_issuer_and_its_iss_promise(workspace):
    """RFC 8414 §3.3: the document's issuer is the one its URL was built from; it is
    recorded with the promise of `iss` in authorization responses (RFC 9207 §3), which
    the callback then enforces."""
    with _metadata_server(lambda url: url, authorization_response_iss_parameter_supported=True) as (
        url,
        _,
    ):
        discovery = f"{url}/.well-known/oauth-authorization-server"
        created = workspace.invoke(*DISCOVERED, "--name", "found", "--discovery-url", discovery)
    assert created.returncode == 0, created.stderr
    data = json.loads(created.stdout)
    assert (data["issuer"], data["require_iss"]) == (url, True)
    assert data["token_url"] == f"{url}/token"


@pytest.mark.parametrize(
    ("issuer_of", "extra_args", "says"),
    [
        (lambda url: "http://127.0.0.1:1", [], "issuer does not match its URL"),
        (lambda url: f"{url}/tenant", [], "issuer does not match its URL"),
        (lambda url: None, [], "names no issuer"),
        (lambda url: url, ["--issuer", "https://other.example.com"], "--issuer differs"),
    ],
    ids=["another_host", "another_path", "none", "differs_from_option"],
)
def test_connections_create_refuses_metadata_of_another_issuer(
    workspace, issuer_of, extra_args, says
):
    """RFC 8414 §3.3: if the issuer in the document is not the one its URL was built from,
    nothing in it may be used (another provider's metadata would pass as this one's); no
    connection is created."""
    before = connection_names(workspace)
    with _metadata_server(issuer_of) as (url, _):
        discovery = f"{url}/.well-known/oauth-authorization-server"
        result = workspace.invoke(
            *DISCOVERED, "--name", "mixed", "--discovery-url", discovery, *extra_args
        )
    assert result.returncode == 1, result.stdout
    assert says in result.stderr and "Traceback" not in result.stderr
    assert connection_names(workspace) == before


def test_connections_create_requiring_iss_needs_the_issuer(workspace):
    before = connection_names(workspace)
    args = [a if a != "drive" else "strict" for a in CONNECTION]
    result = workspace.invoke(*args, "--require-iss")
    assert result.returncode == 1 and "needs the issuer" in result.stderr
    assert connection_names(workspace) == before


def test_a_database_error_never_repeats_the_url_password(monkeypatch):
    """Should a driver's message contain the password of AUTHSERVER_DATABASE_URL (as given,
    percent-encoded, or decoded), the CLI's one-line reason masks it."""
    from sqlalchemy.exc import OperationalError as DatabaseError

    from authserver.cli.common import database_reason

    url = "postgresql+psycopg://admin:S3cret%2FPW@127.0.0.1:1/db"
    monkeypatch.setenv("AUTHSERVER_DATABASE_URL", url)
    driver_said = Exception("connect failed for dsn password=S3cret/PW and S3cret%2FPW\nmore")
    reason = database_reason(DatabaseError("SELECT 1", {}, driver_said))
    assert reason == "connect failed for dsn password=*** and ***"
    monkeypatch.setenv("AUTHSERVER_DATABASE_URL", "not a url")
    assert database_reason(DatabaseError("SELECT 1", {}, Exception("down"))) == "down"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "AUTHSERVER_DATABASE_URL is not a database URL"),
        ("mysql://admin:S3cretPW@127.0.0.1/db", "only SQLite and PostgreSQL"),
        ("postgresql+nodriver://admin:S3cretPW@127.0.0.1/db", "is not installed"),
        ("postgresql+psycopg://admin:S3cretPW@127.0.0.1:1/db", "database error: connection"),
        ("sqlite:///{tmp}/empty.db", "database error: no such table"),
    ],
    ids=["unparsable", "unsupported", "no_driver", "unreachable", "not_initialised"],
)
def test_database_url_problems_are_operator_errors(workspace, tmp_path, url, message):
    """A wrong AUTHSERVER_DATABASE_URL or a database that is down or empty: one line that
    says so, exit status 1, no traceback, and never the password from the URL."""
    env = {
        **workspace.env,
        "AUTHSERVER_INSTANCE_PATH": str(workspace.cwd / "instance"),
        "AUTHSERVER_DATABASE_URL": url.format(tmp=tmp_path),
    }
    result = CliRunner().invoke(cli_main, ["users", "list"], env=env)
    output = result.stdout + result.stderr
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught error
    assert result.exit_code == 1, output
    assert message in result.stderr
    assert "Traceback" not in output and "S3cretPW" not in output


def test_clients_create_require_par(workspace):
    """`clients create --require-par` registers a client whose requests must be pushed
    (RFC 9126 §6); the listing shows it."""
    created = workspace.json(
        "clients",
        "create",
        "--name",
        "Pushed only",
        "--client-id",
        "pushed-only",
        "--redirect-uri",
        "https://pushed.example.com/callback",
        "--require-par",
        "--json",
    )
    assert created["require_pushed_authorization_requests"] is True
    listed = {c["client_id"]: c for c in workspace.json("clients", "list", "--json")}
    assert listed["pushed-only"]["require_pushed_authorization_requests"] is True


def test_run_logs_requests_without_their_query_strings(migrated_database, tmp_path):
    """`authserver run` (the development server) logs each request's method, path and
    status, never its query: an upstream provider's authorization code arrives in one."""
    port = free_port()
    server = ServerProcess(
        port, server_env(migrated_database, f"http://127.0.0.1:{port}"), tmp_path
    )
    try:
        server.wait_until_up()
        requests.get(
            f"{server.url}/connections/calendar/callback?code=UPSTREAM-CODE-123&state=s",
            timeout=10,
        )
    finally:
        server.stop()
    log = server.log.read_text()
    assert '"GET /connections/calendar/callback"' in log
    assert "UPSTREAM-CODE-123" not in log and "state=s" not in log
