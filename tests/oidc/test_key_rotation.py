"""Signing-key rotation (DESIGN.md Tokens; RFC 7517 §4.5 `kid`; OIDC Core §10.1.1).

A rotation adds new keys, published at once, that take over signing at the hand-over
time (by default two reload intervals later, so that no process signs with a key
another process does not publish yet); the retired keys stay in the JWKS, and tokens
they signed keep verifying, until the overlap after the hand-over ends. Other
processes pick the rotation up on their reload interval, or at once when they meet an
unknown `kid`.
Runs on its own database: the shared one keeps its signing keys between tests.
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
import requests
from sqlalchemy import delete, func, select, update

from authserver import keys as keys_module
from authserver.db import transaction
from authserver.keys import (
    SUPPORTED_ALGS,
    ensure_signing_keys,
    rotate_signing_keys,
    withdraw_signing_key,
)
from authserver.models import AuditEvent, SigningKey, now
from authserver.runtime import build_runtime
from authserver.settings import Settings
from authserver.tokens import AccessTokenSpec
from tests.support import apps
from tests.support.apps import reset_database
from tests.support.factories import make_client
from tests.support.live import isolated_database, live_server, run_cli, server_env

OVERLAP = 600


class Clock:
    """Stands in for `time` in authserver.keys: a frozen monotonic clock the test moves."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.offset = 0.0

    def monotonic(self) -> float:
        return self.start + self.offset


@pytest.fixture(scope="module")
def rotation_db(database_url, tmp_path_factory):
    with isolated_database(database_url, tmp_path_factory.mktemp("rotation")) as url:
        yield url


@pytest.fixture(scope="module")
def server(rotation_db):
    with live_server(rotation_db) as running:
        yield running


@pytest.fixture
def live(server):
    """Fresh rows and one fresh key per algorithm for every test."""
    reset_database(server.app)
    runtime = server.runtime
    with transaction(runtime.session_factory) as session:
        session.execute(delete(SigningKey))
    with transaction(runtime.session_factory) as session:
        ensure_signing_keys(session, runtime.keyring)
    runtime.signing_keys.invalidate()
    return server


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(keys_module, "time", fake)
    return fake


@pytest.fixture
def service(live):
    return make_client(
        live.app, "rot-svc", grant_types=["client_credentials"], redirect_uris=[], scope="jobs"
    )


def published_kids(live) -> set[str]:
    jwks = requests.get(live.endpoint("jwks_uri"), timeout=10).json()
    return {key["kid"] for key in jwks["keys"]}


def current_kids(live) -> dict[str, str]:
    with live.runtime.session_factory() as session:
        rows = session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))
        return {row.alg: row.kid for row in rows}


def machine_token(live, service) -> str:
    response = requests.post(
        live.endpoint("token_endpoint"),
        data={"grant_type": "client_credentials"},
        auth=service.basic_auth,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def verifies_against_jwks(live, token: str) -> bool:
    """A relying party's check: the key by kid from jwks_uri, ES256 only, iss and aud."""
    client = jwt.PyJWKClient(live.endpoint("jwks_uri"), cache_jwk_set=False)
    try:
        key = client.get_signing_key_from_jwt(token)
    except jwt.PyJWKClientError:
        return False
    jwt.decode(token, key.key, algorithms=["ES256"], audience=live.url, issuer=live.url)
    return True


def active(live, service, token: str) -> bool:
    response = requests.post(
        live.endpoint("introspection_endpoint"),
        data={"token": token},
        auth=service.basic_auth,
        timeout=10,
    )
    assert response.status_code == 200
    return bool(response.json()["active"])


def rotate(live, overlap: int = OVERLAP, activate_after: int = 0) -> list[str]:
    runtime = live.runtime
    with transaction(runtime.session_factory) as session:
        return rotate_signing_keys(session, runtime.keyring, overlap, activate_after).new_kids


def test_immediate_rotation_signs_with_new_kid_and_keeps_old_published(live, service):
    """`--activate-after 0`: new tokens carry the new kid; the old kid stays in the JWKS
    and its tokens verify and introspect as active during the overlap."""
    before = current_kids(live)
    old_token = machine_token(live, service)
    assert kid_of(old_token) == before["ES256"]
    new_kids = rotate(live)
    live.runtime.signing_keys.invalidate()
    after = current_kids(live)
    assert sorted(new_kids) == sorted(after.values()) and set(after) == set(SUPPORTED_ALGS)
    assert not set(new_kids) & set(before.values())
    assert published_kids(live) == set(before.values()) | set(new_kids)
    new_token = machine_token(live, service)
    assert kid_of(new_token) == after["ES256"]
    for token in (old_token, new_token):
        assert verifies_against_jwks(live, token)
        assert active(live, service, token)
    with live.runtime.session_factory() as session:
        retired = session.scalars(select(SigningKey).where(SigningKey.retired_at.is_not(None)))
        for row in retired:
            assert row.kid in before.values()
            assert row.expires_at == row.retired_at + OVERLAP


def test_immediate_rotation_overrides_a_pending_one(live, service):
    """docs/deploying.md: "For a key that must not sign again, `--activate-after 0` hands
    over at once", also while an earlier rotation still lets the current key sign for a
    day: the keys of this rotation sign now, neither the current nor the pending ones."""

    def signing() -> dict[str, str]:
        live.runtime.signing_keys.invalidate()
        return {alg: live.runtime.signing_keys.signing_key(alg).kid for alg in SUPPORTED_ALGS}

    before = signing()
    pending = rotate(live, activate_after=86400)
    assert signing() == before  # the current keys still sign, for a day
    immediate = rotate(live)
    now_signing = signing()
    assert sorted(now_signing.values()) == sorted(immediate)
    assert not set(now_signing.values()) & (set(before.values()) | set(pending))
    token = machine_token(live, service)
    assert kid_of(token) == now_signing["ES256"] and verifies_against_jwks(live, token)
    with live.runtime.session_factory() as session:
        for kid in [*before.values(), *pending]:
            row = session.get(SigningKey, kid)
            assert row.retired_at <= now() and row.expires_at <= now() + OVERLAP


def test_published_keys_come_from_the_sealed_private_keys(live, service):
    """The JWKS is derived from each sealed private key (its kid and alg bound to it), not
    from the stored public copy: a row edited in the database publishes nothing else."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    kid = current_kids(live)["ES256"]
    forged = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    with transaction(live.runtime.session_factory) as session:
        row = session.get(SigningKey, kid)
        genuine = dict(row.public_jwk)
        row.public_jwk = {**genuine, "x": forged["x"], "y": forged["y"]}
    # A process loading the keys now (the running one reloads on its schedule).
    loaded = keys_module.SigningKeys(live.runtime.session_factory, live.runtime.keyring)
    [published] = [key for key in loaded.jwks()["keys"] if key["kid"] == kid]
    assert (published["x"], published["y"]) == (genuine["x"], genuine["y"])
    assert published == genuine


def test_new_keys_are_published_before_they_sign(live, service, monkeypatch):
    """Default rotation: the new kids are in the JWKS at once, but every process keeps
    signing with the old keys until the hand-over, so a relying party that reads the JWKS
    from any process finds the kid of every token; from the hand-over on the new keys
    sign and tokens of the old ones keep verifying."""
    before = current_kids(live)
    runtime = live.runtime
    with transaction(runtime.session_factory) as session:
        rotation = rotate_signing_keys(session, runtime.keyring, OVERLAP)
    assert rotation.hand_over >= now() + keys_module.RELOAD_INTERVAL_SECONDS
    runtime.signing_keys.invalidate()  # this process has reloaded since the rotation
    assert published_kids(live) == set(before.values()) | set(rotation.new_kids)
    before_hand_over = machine_token(live, service)
    assert kid_of(before_hand_over) == before["ES256"]
    stale = keys_module.SigningKeys(runtime.session_factory, runtime.keyring)
    assert stale.signing_key("RS256").kid == before["RS256"]
    with runtime.session_factory() as session:
        old_rows = session.scalars(select(SigningKey).where(SigningKey.kid.in_(before.values())))
        for row in old_rows:
            assert row.retired_at == rotation.hand_over
            assert row.expires_at == rotation.hand_over + OVERLAP
    monkeypatch.setattr(keys_module, "now", lambda: rotation.hand_over)
    after_hand_over = machine_token(live, service)
    assert kid_of(after_hand_over) in rotation.new_kids
    for alg in SUPPORTED_ALGS:
        assert runtime.signing_keys.signing_key(alg).kid in rotation.new_kids
    for token in (before_hand_over, after_hand_over):
        assert verifies_against_jwks(live, token)
        assert active(live, service, token)


def test_rotation_refuses_negative_durations(live):
    """A hand-over in the past or a negative overlap is refused and writes nothing."""
    runtime = live.runtime
    before = current_kids(live)
    for overlap, activate_after in ((OVERLAP, -1), (-1, 0)):
        with pytest.raises(ValueError), transaction(runtime.session_factory) as session:
            rotate_signing_keys(session, runtime.keyring, overlap, activate_after)
    assert current_kids(live) == before
    with runtime.session_factory() as session:
        assert all(row.retired_at is None for row in session.scalars(select(SigningKey)))


def test_old_key_leaves_jwks_after_overlap(live, service):
    """Once expires_at has passed, the retired key is no longer published or trusted."""
    before = current_kids(live)
    old_token = machine_token(live, service)
    rotate(live)
    with transaction(live.runtime.session_factory) as session:
        session.execute(
            update(SigningKey)
            .where(SigningKey.retired_at.is_not(None))
            .values(expires_at=now() - 1)
        )
    live.runtime.signing_keys.invalidate()
    kids = published_kids(live)
    assert not kids & set(before.values()) and len(kids) == len(SUPPORTED_ALGS)
    assert not verifies_against_jwks(live, old_token)
    assert not active(live, service, old_token)
    assert active(live, service, machine_token(live, service))


def test_cli_rotation_reaches_a_running_server_on_reload(
    live, service, clock, tmp_path, monkeypatch
):
    """`authserver keys rotate` in another process: the running server keeps its cache
    until the reload interval, then publishes both and signs with the new kid from the
    hand-over time on."""
    before = current_kids(live)
    assert kid_of(machine_token(live, service)) == before["ES256"]  # cache loaded
    result = run_cli(
        ["keys", "rotate", "--json"],
        server_env(live.runtime.settings.database_url, live.url),
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    settings = live.runtime.settings
    longest = max(settings.access_token_ttl, settings.id_token_ttl, settings.delegated_token_ttl)
    assert report["old_keys_published_for_seconds"] > longest
    assert len(report["new_kids"]) == len(SUPPORTED_ALGS)
    new_es256 = current_kids(live)["ES256"]
    assert new_es256 in report["new_kids"]
    # Within the reload interval this process still signs with what it loaded.
    assert kid_of(machine_token(live, service)) == before["ES256"]
    # After it, it publishes the new keys but signs with the old ones until the hand-over.
    clock.offset = keys_module.RELOAD_INTERVAL_SECONDS + 1
    assert published_kids(live) == set(before.values()) | set(report["new_kids"])
    assert kid_of(machine_token(live, service)) == before["ES256"]
    assert report["activate_after_seconds"] == keys_module.PUBLISH_BEFORE_SIGNING_SECONDS
    monkeypatch.setattr(keys_module, "now", lambda: report["signing_from"])
    assert kid_of(machine_token(live, service)) == new_es256


def test_unknown_kid_from_another_process_is_picked_up(live, service, clock):
    """A token minted by another process with a key this process has not loaded yet
    verifies: an unknown kid triggers a reload (rate-limited to one per second)."""
    published_kids(live)  # this process has loaded its cache
    other = build_runtime(
        Settings(**apps.test_settings(live.runtime.settings.database_url, issuer=live.url))
    )
    try:
        with transaction(other.session_factory) as session:
            new_kids = rotate_signing_keys(session, other.keyring, OVERLAP, 0).new_kids
        with transaction(other.session_factory) as session:
            issued = other.minter.access_token(
                session,
                AccessTokenSpec(
                    client_id=service.client_id,
                    subject=service.client_id,
                    audience=live.url,
                    scope="jobs",
                    ttl=60,
                ),
            )
    finally:
        other.engine.dispose()
    assert kid_of(issued.token) in new_kids
    clock.offset = keys_module.UNKNOWN_KID_RELOAD_SECONDS + 0.5
    assert active(live, service, issued.token)
    assert set(new_kids) <= published_kids(live)


def withdraw(live, kid: str):
    runtime = live.runtime
    with transaction(runtime.session_factory) as session:
        return withdraw_signing_key(session, runtime.keyring, kid)


def test_withdrawn_key_stops_signing_and_verifying_at_once(live, service):
    """A key that may be compromised: withdrawn, it leaves the JWKS, its tokens stop
    verifying and introspect as inactive, and a new key of its algorithm signs; the other
    algorithms' keys are untouched."""
    before = current_kids(live)
    old_token = machine_token(live, service)
    assert active(live, service, old_token)
    withdrawal = withdraw(live, before["ES256"])
    live.runtime.signing_keys.invalidate()  # as every process does at its next reload
    assert withdrawal.replacement_kid is not None
    after = current_kids(live)
    assert after["ES256"] == withdrawal.replacement_kid
    assert {alg: kid for alg, kid in after.items() if alg != "ES256"} == {
        alg: kid for alg, kid in before.items() if alg != "ES256"
    }
    assert before["ES256"] not in published_kids(live)
    assert not verifies_against_jwks(live, old_token)
    assert not active(live, service, old_token)
    new_token = machine_token(live, service)
    assert kid_of(new_token) == withdrawal.replacement_kid
    assert verifies_against_jwks(live, new_token)


def test_withdrawing_a_key_during_a_rotation_hands_over_to_the_new_one(live, service):
    """Withdrawing the old key while a rotation is pending: the new key signs at once and
    no extra key is created."""
    before = current_kids(live)
    runtime = live.runtime
    with transaction(runtime.session_factory) as session:
        rotation = rotate_signing_keys(session, runtime.keyring, OVERLAP)
    withdrawal = withdraw(live, before["ES256"])
    runtime.signing_keys.invalidate()
    assert withdrawal.replacement_kid is None
    assert kid_of(machine_token(live, service)) in rotation.new_kids
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(SigningKey)) == 2 * len(
            SUPPORTED_ALGS
        )


def key_states(live) -> dict[str, tuple]:
    with live.runtime.session_factory() as session:
        rows = session.scalars(select(SigningKey))
        return {row.kid: (row.retired_at, row.expires_at) for row in rows}


def test_withdrawing_an_unknown_or_unpublished_key_changes_nothing(live):
    before = key_states(live)
    with pytest.raises(LookupError):
        withdraw(live, "es256-no-such-key")
    assert key_states(live) == before
    eddsa = current_kids(live)["EdDSA"]
    withdraw(live, eddsa)
    withdrawn = key_states(live)
    with pytest.raises(LookupError):  # already withdrawn: no longer published
        withdraw(live, eddsa)
    assert key_states(live) == withdrawn


def test_cli_withdraw_asks_then_audits(live, tmp_path):
    """`authserver keys withdraw KID` asks for confirmation (tokens signed with it stop
    verifying); `--yes` withdraws it and writes a keys.withdrawn audit row."""
    before = current_kids(live)
    env = server_env(live.runtime.settings.database_url, live.url)
    declined = run_cli(["keys", "withdraw", before["RS256"]], env, tmp_path, input="n\n")
    assert declined.returncode == 1 and current_kids(live) == before
    unknown = run_cli(["keys", "withdraw", "rs256-unknown", "--yes"], env, tmp_path)
    assert unknown.returncode == 1 and "no published signing key" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    done = run_cli(["keys", "withdraw", before["RS256"], "--yes", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["withdrawn_kid"] == before["RS256"] and report["replacement_kid"]
    assert current_kids(live)["RS256"] == report["replacement_kid"]
    with live.runtime.session_factory() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.event == "keys.withdrawn"))
        assert [row.details["withdrawn_kid"] for row in rows][-1] == before["RS256"]


def test_cli_keys_list_shows_each_keys_state(live, tmp_path):
    """`keys list --json`: signing, next (published before its hand-over), retired
    (published, no longer signing) and unpublished (withdrawn or expired)."""
    env = server_env(live.runtime.settings.database_url, live.url)
    before = current_kids(live)

    def states() -> dict[str, str]:
        listed = run_cli(["keys", "list", "--json"], env, tmp_path)
        assert listed.returncode == 0, listed.stderr
        return {key["kid"]: key["state"] for key in json.loads(listed.stdout)}

    assert states() == dict.fromkeys(before.values(), "signing")
    runtime = live.runtime
    with transaction(runtime.session_factory) as session:
        rotation = rotate_signing_keys(session, runtime.keyring, OVERLAP)
    listed = states()
    assert {listed[kid] for kid in before.values()} == {"signing"}
    assert {listed[kid] for kid in rotation.new_kids} == {"next"}
    withdraw(live, before["EdDSA"])
    with transaction(runtime.session_factory) as session:  # the hand-over has passed
        session.execute(
            update(SigningKey)
            .where(SigningKey.kid.in_([before["ES256"], before["RS256"]]))
            .values(retired_at=now() - 1)
        )
    listed = states()
    assert listed[before["EdDSA"]] == "unpublished"
    assert listed[before["ES256"]] == listed[before["RS256"]] == "retired"
    assert {listed[kid] for kid in rotation.new_kids} == {"signing"}
