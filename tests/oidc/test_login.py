"""Sign-in: sessions, safe return paths, CSRF, throttling, password storage and audit.

RFC 9700 §4.11 (open redirectors), OWASP ASVS V2.2 (anti-automation: throttle
failed sign-ins per account and per address, answer 429 with Retry-After per
RFC 6585 §4), V2.4 (argon2id at RFC 9106 parameters), V2.2.1/V3 (identical
answers for unknown users and wrong passwords), V4.2.2 (CSRF).
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
import redis
from sqlalchemy import update

from authserver.db import transaction
from authserver.models import AuditEvent, RateLimitCounter, User
from authserver.passwords import Passwords
from authserver.settings import Settings, load_settings
from tests.support.apps import build_test_app
from tests.support.db import audit_events, count, rows
from tests.support.factories import DEFAULT_PASSWORD, make_user
from tests.support.flows import csrf_token
from tests.support.responses import assert_html_page, signed_in_user

LIMIT = 10  # "10/5 minutes", the default AUTHSERVER_LOGIN_RATE_LIMIT
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def alice(app):
    return make_user(app, "alice")


def attempt(client, username, password, next_url=None, address="198.51.100.7", **extra):
    """One sign-in through the page, as a browser would: GET the form, POST it."""
    environ = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=environ).get_data(as_text=True)
    form = {"username": username, "password": password, "csrf_token": csrf_token(page), **extra}
    if next_url is not None:
        form["next"] = next_url
    return client.post("/login", data=form, environ_base=environ)


def normalised(response, username: str) -> str:
    """The page without what legitimately differs: the CSRF token and the typed username."""
    page = response.get_data(as_text=True).replace(username, "USERNAME")
    return re.sub(r'name="csrf_token" value="[^"]*"', "", page)


def test_success_sets_session_and_redirects_to_next(app, client, alice):
    """A correct password starts a session (flask-login user id plus auth_time for OIDC
    max_age) and returns to the relative `next`."""
    response = attempt(client, "alice", DEFAULT_PASSWORD, next_url="/authorize?client_id=x&a=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/authorize?client_id=x&a=1"
    assert signed_in_user(client) == alice.id
    with client.session_transaction() as session:
        assert isinstance(session.get("auth_time"), int)
    assert "Signed in as" in client.get("/").get_data(as_text=True)


def test_sign_in_by_email_address(app, client, alice):
    """DESIGN: the username field takes the username or the email address."""
    response = attempt(client, "ALICE@example.com", DEFAULT_PASSWORD)
    assert response.status_code == 302 and signed_in_user(client) == alice.id


UNSAFE_NEXT = {
    "absolute": "https://evil.example/steal",
    "scheme_relative": "//evil.example/steal",
    "backslash": "/\\evil.example/steal",
    "backslash_only": "\\\\evil.example",
    "javascript": "javascript:alert(1)",
    "data": "data:text/html,<script>alert(1)</script>",
    "crlf_header": "/ok\r\nSet-Cookie: pwned=1",
    "tab": "/\t/evil.example",
    "newline": "/\n/evil.example",
    "del": "/ok\x7f",
    "no_leading_slash": "evil.example/steal",
    "scheme_without_slashes": "https:evil.example",
    "too_long": "/" + "a" * 5000,
}


@pytest.mark.parametrize("case", list(UNSAFE_NEXT))
def test_unsafe_next_falls_back_to_root(app, client, alice, case):
    """RFC 9700 §4.11.1 (open redirector): `next` is accepted only as a path on this server;
    anything a browser could resolve elsewhere, or that carries control characters, is
    replaced by "/" both in the form and in the redirect after sign-in."""
    value = UNSAFE_NEXT[case]
    page = client.get("/login", query_string={"next": value}).get_data(as_text=True)
    assert 'name="next" value="/"' in page
    response = attempt(client, "alice", DEFAULT_PASSWORD, next_url=value)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert signed_in_user(client) == alice.id


def test_next_with_nul_is_refused(app, client, alice):
    """A NUL anywhere in the form is a malformed request: 400, and no session."""
    response = attempt(client, "alice", DEFAULT_PASSWORD, next_url="/ok\x00")
    assert_html_page(response, 400)
    assert signed_in_user(client) is None


def test_wrong_password_and_unknown_user_look_the_same(app, client, alice):
    """ASVS V2.2 / V3: the same status and the same page whether the account exists or the
    password is wrong, so sign-in cannot be used to enumerate accounts."""
    wrong = attempt(client, "alice", "not the password")
    unknown = attempt(client, "mallory", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Incorrect username or password." in wrong.get_data(as_text=True)
    assert normalised(wrong, "alice") == normalised(unknown, "mallory")
    assert signed_in_user(client) is None


@pytest.mark.parametrize("token", ["missing", "wrong", "other_session"])
def test_csrf_is_required(app, client, alice, token):
    """ASVS V4.2.2: a sign-in POST without this browser's CSRF token is refused (400) and
    starts no session, so a cross-site form cannot sign a victim into an attacker account."""
    form = {"username": "alice", "password": DEFAULT_PASSWORD}
    client.get("/login")  # this browser has a session and a token of its own
    if token == "wrong":
        form["csrf_token"] = "IjAwMDAi.Zz.forged"
    elif token == "other_session":
        other = app.test_client()
        form["csrf_token"] = csrf_token(other.get("/login").get_data(as_text=True))
    response = client.post("/login", data=form)
    page = assert_html_page(response, 400)
    assert "Location" not in response.headers
    assert "The form expired" in page
    assert signed_in_user(client) is None


def assert_throttled(response) -> int:
    assert_html_page(response, 429)
    assert "Too many failed attempts" in response.get_data(as_text=True)
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 0 < int(retry_after) <= 300
    return int(retry_after)


def test_throttled_per_username(app, client, alice):
    """ASVS V2.2.1: after 10 failures for one username in the window (from any addresses)
    the next attempt gets 429 with Retry-After; a correct password is refused too."""
    for index in range(LIMIT):
        response = attempt(client, "alice", "wrong password", address=f"203.0.113.{index}")
        assert response.status_code == 401, index
    assert_throttled(attempt(client, "alice", "wrong password", address="192.0.2.200"))
    assert_throttled(attempt(client, "ALICE", DEFAULT_PASSWORD, address="192.0.2.201"))
    assert signed_in_user(client) is None
    # Another account is not affected by alice's lockout.
    make_user(app, "bob")
    assert attempt(client, "bob", DEFAULT_PASSWORD, address="192.0.2.202").status_code == 302


def test_username_and_email_share_one_account_counter(app, client, alice):
    """ASVS V2.2.1: failures are counted per account; signing in by email address names the
    same account, so alternating username and email must not double the attempts allowed."""
    names = ["alice", "alice@example.com"]
    for index in range(LIMIT):
        name = names[index % 2]
        response = attempt(client, name, "wrong password", address=f"203.0.113.{index}")
        assert response.status_code == 401, index
    assert_throttled(attempt(client, "alice@example.com", "wrong password", address="192.0.2.9"))
    assert_throttled(attempt(client, "Alice", DEFAULT_PASSWORD, address="192.0.2.10"))
    assert signed_in_user(client) is None


def test_throttled_per_address(app, client, alice):
    """ASVS V2.2.1: 10 failures from one address, each for a different username, block that
    address, even for a correct password; other addresses can still sign in."""
    for index in range(LIMIT):
        assert attempt(client, f"user{index}", "wrong password").status_code == 401
    assert_throttled(attempt(client, "someone-else", "wrong password"))
    assert_throttled(attempt(client, "alice", DEFAULT_PASSWORD))
    assert signed_in_user(client) is None
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="192.0.2.99")
    assert response.status_code == 302 and signed_in_user(client) == alice.id


def test_throttled_per_ipv6_network(app, client, alice):
    """An IPv6 host usually holds a whole /64: failures from addresses of one /64 are counted
    together, as for registration and PAR; another /64 can still sign in."""
    for index in range(LIMIT):
        address = f"2001:db8:0:1::{index + 1:x}"
        assert attempt(client, f"user{index}", "wrong password", address=address).status_code == 401
    assert_throttled(attempt(client, "alice", DEFAULT_PASSWORD, address="2001:db8:0:1::ffff"))
    assert signed_in_user(client) is None
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="2001:db8:0:2::1")
    assert response.status_code == 302 and signed_in_user(client) == alice.id


@pytest.mark.parametrize("prefix", ["::ffff:", "64:ff9b::"])
def test_ipv4_clients_seen_as_ipv6_count_as_their_ipv4_address(app, client, alice, prefix):
    """A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d, a NAT64 gateway as
    64:ff9b::a.b.c.d (RFC 6052): each is its own IPv4 address, not one shared /64 that one
    client could lock for everyone."""
    for index in range(LIMIT):
        failed = attempt(client, f"user{index}", "wrong password", address=prefix + "198.51.100.7")
        assert failed.status_code == 401
    assert_throttled(attempt(client, "alice", DEFAULT_PASSWORD, address="198.51.100.7"))
    response = attempt(client, "alice", DEFAULT_PASSWORD, address=prefix + "203.0.113.9")
    assert response.status_code == 302 and signed_in_user(client) == alice.id


def test_successes_do_not_count(app, client, alice):
    """Only failures are counted: a person who signs in often is never throttled."""
    for _ in range(LIMIT + 2):
        assert attempt(client, "alice", DEFAULT_PASSWORD).status_code == 302
        client.post("/logout/confirm", data={"csrf_token": csrf_token(client.get("/").text)})


def test_counter_is_shared_through_the_database(app, alice, migrated_database):
    """DESIGN: nothing a request needs lives in one process's memory: two app instances on
    the same database (two workers) share the failure counter."""
    other = build_test_app(migrated_database)
    try:
        first, second = app.test_client(), other.test_client()
        for _ in range(LIMIT):
            assert attempt(first, "alice", "wrong password").status_code == 401
        assert count(app, RateLimitCounter) >= 2  # one row per username, one per address
        assert_throttled(attempt(second, "alice", DEFAULT_PASSWORD, address="192.0.2.50"))
        assert_throttled(attempt(second, "nobody", "wrong password"))
    finally:
        other.extensions["authserver"].engine.dispose()


@pytest.fixture
def redis_db():
    """Redis db 15 (kept for tests), flushed before and after."""
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


def test_counter_is_shared_through_redis(app, alice, migrated_database, redis_db):
    """DESIGN: with AUTHSERVER_REDIS_URL set, the counters live in Redis: two app instances
    configured with it share them, and the database table stays empty."""
    first = build_test_app(migrated_database, redis_url=REDIS_URL)
    second = build_test_app(migrated_database, redis_url=REDIS_URL)
    # Names and addresses of this run only, should another run share the Redis server.
    user, address = f"alice-{secrets.token_hex(3)}", f"10.{secrets.randbelow(250)}.0.1"
    make_user(app, user)
    try:
        for _ in range(LIMIT):
            response = attempt(first.test_client(), user, "wrong password", address=address)
            assert response.status_code == 401
        assert redis_db.keys(f"*login-user/{user}*") and redis_db.keys(f"*login-addr/{address}*")
        assert count(app, RateLimitCounter) == 0
        assert_throttled(attempt(second.test_client(), user, DEFAULT_PASSWORD, address="192.0.2.5"))
        assert_throttled(attempt(second.test_client(), "nobody", "wrong", address=address))
    finally:
        for built in (first, second):
            built.extensions["authserver"].engine.dispose()


def test_a_redis_refund_after_the_window_ended_gives_no_extra_attempt(
    app, migrated_database, redis_db, monkeypatch
):
    """Redis: the attempt is given back after a correct password. If the window ends just
    after the counter was last read as live (a stale read), the refund must not create the
    next window at -1, which would be an eleventh guess."""
    from limits.storage import RedisStorage

    built = build_test_app(migrated_database, redis_url=REDIS_URL)
    user, address = f"alice-{secrets.token_hex(3)}", f"10.{secrets.randbelow(250)}.0.2"
    make_user(app, user)
    passwords = built.extensions["authserver"].passwords
    verify = passwords.verify

    def window_ends_during_the_check(stored, given):
        for key in redis_db.keys(f"*{user}*") + redis_db.keys(f"*{address}*"):
            redis_db.delete(key)
        return verify(stored, given)

    real_get = RedisStorage.get
    monkeypatch.setattr(passwords, "verify", window_ends_during_the_check)
    monkeypatch.setattr(RedisStorage, "get", lambda self, key: 1)  # read just before the end
    try:
        client = built.test_client()
        assert attempt(client, user, DEFAULT_PASSWORD, address=address).status_code == 302
        assert [int(redis_db.get(key)) for key in redis_db.keys(f"*{user}*")] in ([], [0])
        monkeypatch.setattr(passwords, "verify", verify)
        monkeypatch.setattr(RedisStorage, "get", real_get)
        client = built.test_client()
        for index in range(LIMIT):
            response = attempt(client, user, "wrong password", address=address)
            assert response.status_code == 401, index
        assert_throttled(attempt(client, user, "wrong password", address=address))
    finally:
        built.extensions["authserver"].engine.dispose()


def test_password_stored_as_argon2id(app, alice):
    """ASVS V2.4.1 / RFC 9106: passwords are stored as argon2id hashes, never in clear."""
    stored = rows(app, User, User.username == "alice")[0].password_hash
    assert stored.startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in stored


def test_production_argon2_parameters_are_the_defaults():
    """RFC 9106 §4 second recommended option: argon2id, t=3, 64 MiB, p=4 by default (the
    test suite lowers them for speed; the defaults are what a deployment gets)."""
    defaults = Settings()
    assert (defaults.argon2_time_cost, defaults.argon2_memory_kib, defaults.argon2_parallelism) == (
        3,
        64 * 1024,
        4,
    )
    loaded = load_settings({"AUTHSERVER_VAULT_KEYS": "unused"})
    assert (loaded.argon2_time_cost, loaded.argon2_memory_kib, loaded.argon2_parallelism) == (
        3,
        65536,
        4,
    )
    stored = Passwords(defaults).hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), stored


def test_weaker_hash_is_upgraded_on_sign_in(app, client, alice):
    """ASVS V2.4: a hash made with older (weaker) parameters is re-hashed at the current ones
    on the next successful sign-in."""
    old = Passwords(Settings(argon2_time_cost=1, argon2_memory_kib=16, argon2_parallelism=2))
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(
            update(User).where(User.id == alice.id).values(password_hash=old.hash(DEFAULT_PASSWORD))
        )
    assert attempt(client, "alice", DEFAULT_PASSWORD).status_code == 302
    stored = rows(app, User, User.id == alice.id)[0].password_hash
    assert not runtime.passwords.needs_rehash(stored)


def test_disabled_user_cannot_sign_in(app, client, alice):
    """A disabled account is refused with the generic failure (it does not reveal that the
    account exists), and an existing session of that user stops working."""
    browser = app.test_client()
    assert attempt(browser, "alice", DEFAULT_PASSWORD).status_code == 302
    runtime = app.extensions["authserver"]
    with transaction(runtime.session_factory) as session:
        session.execute(update(User).where(User.id == alice.id).values(disabled=True))
    response = attempt(client, "alice", DEFAULT_PASSWORD)
    assert response.status_code == 401
    assert "Incorrect username or password." in response.get_data(as_text=True)
    assert signed_in_user(client) is None
    assert "Signed in as" not in browser.get("/").get_data(as_text=True)
    assert audit_events(app, "login")[-1].outcome == "failure"


def test_every_attempt_is_audited_without_the_password(app, client, alice):
    """DESIGN (Audit): each sign-in attempt is one row, outcome success, failure or
    throttled, with the user when known, and no row holds the password."""
    secret_wrong = "wrong-password-" + secrets.token_hex(4)
    assert attempt(client, "alice", DEFAULT_PASSWORD).status_code == 302
    assert attempt(app.test_client(), "alice", secret_wrong).status_code == 401
    assert attempt(app.test_client(), "ghost", secret_wrong).status_code == 401
    for _ in range(LIMIT - 2):
        attempt(app.test_client(), "alice", secret_wrong)
    assert attempt(app.test_client(), "alice", DEFAULT_PASSWORD).status_code == 429
    events = audit_events(app, "login")
    outcomes = [event.outcome for event in events]
    assert outcomes[:3] == ["success", "failure", "failure"]
    assert outcomes[-1] == "throttled"
    assert set(outcomes) == {"success", "failure", "throttled"}
    assert events[0].user_id == alice.id and events[1].user_id == alice.id
    assert events[1].details == {"username": "alice"}
    # An unknown name is never stored as typed (it may be a password typed in the wrong
    # field): only a keyed fingerprint, the same for the same name.
    assert events[2].user_id is None and set(events[2].details) == {"unknown_username_hmac"}
    assert re.fullmatch(r"[0-9a-f]{16}", events[2].details["unknown_username_hmac"])
    assert attempt(app.test_client(), "Ghost ", secret_wrong).status_code == 429
    assert audit_events(app, "login")[-1].details == events[2].details
    for event in rows(app, AuditEvent):
        dumped = json.dumps(
            {column: str(getattr(event, column)) for column in AuditEvent.__table__.columns.keys()}
        )
        assert DEFAULT_PASSWORD not in dumped and secret_wrong not in dumped, dumped
        assert "ghost" not in dumped.lower(), dumped


def test_missing_fields_are_refused_without_counting(app, client, alice):
    """An empty username or password is a form error (400), not a failed sign-in."""
    response = attempt(client, "alice", "")
    assert_html_page(response, 400)
    assert "Enter your username and password." in response.get_data(as_text=True)
    assert count(app, RateLimitCounter) == 0
    assert signed_in_user(client) is None


def test_a_refund_at_the_end_of_a_window_gives_no_extra_attempt(app, client, alice, monkeypatch):
    """Each attempt is counted before the password check and given back when it succeeds.
    If the window ends during the check (argon2 takes a while), the refund must not leave
    the next window at -1: that would be an eleventh guess."""
    passwords = app.extensions["authserver"].passwords
    verify = passwords.verify

    def window_ends_during_the_check(stored, given):
        from authserver.web import context

        # In the request's own transaction (it holds the SQLite write lock).
        context.db().execute(update(RateLimitCounter).values(expires_at=0))
        return verify(stored, given)

    monkeypatch.setattr(passwords, "verify", window_ends_during_the_check)
    assert attempt(client, "alice", DEFAULT_PASSWORD).status_code == 302
    monkeypatch.setattr(passwords, "verify", verify)
    client.post("/logout/confirm", data={"csrf_token": csrf_token(client.get("/").text)})
    for index in range(LIMIT):
        assert attempt(client, "alice", "wrong password").status_code == 401, index
    assert_throttled(attempt(client, "alice", "wrong password"))
