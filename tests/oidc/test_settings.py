"""Settings from AUTHSERVER_* variables: development defaults warn, production refuses them.

STYLE (Configuration): "Dev defaults warn when used; production mode refuses to start
with them (an http issuer outside loopback, a generated key, the dev session secret)."
OIDC Discovery §4.3 / RFC 8414 §3.3: the issuer is compared character for character,
so it is normalised (no trailing slash) once, at startup.
"""

from __future__ import annotations

import logging

import pytest

from authserver import create_app
from authserver.settings import Settings, SettingsError, check_settings, load_settings
from tests.support.apps import TEST_KEYRING

GOOD_SECRET = "s" * 32


@pytest.fixture
def instance(tmp_path):
    """An empty instance folder, so no dev secret files from elsewhere are picked up."""
    return tmp_path / "instance"


def production_env(instance, **overrides: str) -> dict[str, str]:
    env = {
        "AUTHSERVER_ENV": "production",
        "AUTHSERVER_INSTANCE_PATH": str(instance),
        "AUTHSERVER_ISSUER": "https://auth.example.com",
        "AUTHSERVER_SECRET_KEY": GOOD_SECRET,
        "AUTHSERVER_VAULT_KEYS": TEST_KEYRING.serialize(),
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value != "<unset>"}


def test_production_with_real_settings_starts(instance):
    """The control case: production accepts an https issuer and configured secrets."""
    settings = check_settings(load_settings(production_env(instance)))
    assert settings.is_production and settings.issuer == "https://auth.example.com"
    assert settings.dev_defaults_used == ()


@pytest.mark.parametrize(
    "issuer", ["http://auth.example.com", "http://127.0.0.1:8000", "http://localhost"]
)
def test_production_refuses_http_issuer(instance, issuer):
    """Production needs https, even on loopback (tokens and cookies would travel in clear)."""
    with pytest.raises(SettingsError, match="https"):
        check_settings(load_settings(production_env(instance, AUTHSERVER_ISSUER=issuer)))


def test_production_refuses_default_issuer(instance):
    """Without AUTHSERVER_ISSUER the dev default (http loopback) is refused."""
    env = production_env(instance, AUTHSERVER_ISSUER="<unset>")
    with pytest.raises(SettingsError, match="https"):
        check_settings(load_settings(env))


@pytest.mark.parametrize("name", ["AUTHSERVER_SECRET_KEY", "AUTHSERVER_VAULT_KEYS"])
def test_production_refuses_missing_secrets(instance, name):
    """A missing session secret or vault key ring is a development default: refused, and
    the message names the variable to set."""
    with pytest.raises(SettingsError, match=name):
        check_settings(load_settings(production_env(instance, **{name: "<unset>"})))


@pytest.mark.parametrize(
    ("name", "file"), [("SECRET_KEY", "secret_key"), ("VAULT_KEYS", "vault_keys")]
)
def test_production_refuses_dev_secret_files(instance, name, file):
    """The secrets `authserver init` writes under instance/ are for development: production
    refuses them even though they exist."""
    instance.mkdir()
    (instance / "secret_key").write_text("d" * 64, encoding="utf-8")
    (instance / "vault_keys").write_text(TEST_KEYRING.serialize(), encoding="utf-8")
    env = production_env(instance, **{f"AUTHSERVER_{name}": "<unset>"})
    assert (instance / file).exists()
    with pytest.raises(SettingsError, match=f"AUTHSERVER_{name}"):
        check_settings(load_settings(env))


def test_secrets_from_files_are_not_dev_defaults(instance, tmp_path):
    """`*_FILE` variables (container secrets) count as configured, not as dev defaults."""
    secret_file = tmp_path / "session-secret"
    secret_file.write_text(GOOD_SECRET + "\n", encoding="utf-8")
    env = production_env(
        instance, AUTHSERVER_SECRET_KEY="<unset>", AUTHSERVER_SECRET_KEY_FILE=str(secret_file)
    )
    settings = check_settings(load_settings(env))
    assert settings.secret_key == GOOD_SECRET


@pytest.mark.parametrize("length", [1, 16, 31])
def test_production_refuses_short_secret_key(instance, length):
    """A session secret under 32 characters (about 190 bits of base64) is refused."""
    env = production_env(instance, AUTHSERVER_SECRET_KEY="k" * length)
    with pytest.raises(SettingsError, match="at least 32"):
        check_settings(load_settings(env))


def test_development_warns_but_runs(instance, caplog):
    """Development starts with defaults, and says which ones it used."""
    env = {
        "AUTHSERVER_INSTANCE_PATH": str(instance),
        "AUTHSERVER_VAULT_KEYS": TEST_KEYRING.serialize(),
    }
    with caplog.at_level(logging.WARNING, logger="authserver.settings"):
        settings = check_settings(load_settings(env))
    assert settings.env == "development"
    assert settings.issuer == "http://127.0.0.1:8000"
    assert len(settings.secret_key) >= 32  # an ephemeral one
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "AUTHSERVER_ISSUER" in warnings and "AUTHSERVER_SECRET_KEY" in warnings
    assert "ephemeral" in warnings


def test_development_app_starts_with_defaults(instance, migrated_database, monkeypatch, caplog):
    """`create_app()` in development with only a database and a key ring: it warns, starts
    and serves pages."""
    for name in ("AUTHSERVER_ENV", "AUTHSERVER_ISSUER", "AUTHSERVER_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(instance))
    monkeypatch.setenv("AUTHSERVER_DATABASE_URL", migrated_database)
    monkeypatch.setenv("AUTHSERVER_VAULT_KEYS", TEST_KEYRING.serialize())
    with caplog.at_level(logging.WARNING, logger="authserver.settings"):
        app = create_app({"audit_link_interval": 0})
    try:
        assert app.extensions["authserver"].settings.env == "development"
        assert any("development default" in r.getMessage() for r in caplog.records)
        assert app.test_client().get("/login").status_code == 200
    finally:
        # The first request started the outbox dispatcher (the default interval polls):
        # stop it before the database goes, or it polls a dropped one after the run.
        app.extensions["authserver"].dispatcher.stop()
        app.extensions["authserver"].engine.dispose()


def test_development_needs_a_key_ring(instance):
    """Even development cannot invent a vault key ring (data sealed with it would be lost):
    a clear error says how to create one."""
    env = {"AUTHSERVER_INSTANCE_PATH": str(instance)}
    with pytest.raises(SettingsError, match="authserver init"):
        check_settings(load_settings(env))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://auth.example.com/", "https://auth.example.com"),
        ("https://auth.example.com//", "https://auth.example.com"),
        ("https://auth.example.com/tenant/", "https://auth.example.com/tenant"),
        ("https://auth.example.com", "https://auth.example.com"),
    ],
)
def test_issuer_trailing_slash_is_normalised(instance, given, expected):
    """RFC 8414 §3.3: `iss` is compared exactly, so the issuer loses any trailing slash,
    whether it comes from the environment or from overrides."""
    from_env = check_settings(load_settings(production_env(instance, AUTHSERVER_ISSUER=given)))
    assert from_env.issuer == expected
    overridden = Settings(
        issuer=given, vault_keys=TEST_KEYRING.serialize(), database_url="sqlite://"
    )
    assert check_settings(overridden).issuer == expected


def test_issuer_must_be_absolute_http_url(instance):
    """An issuer that is not an absolute http(s) URL (or has a query) is refused."""
    for bad in ("auth.example.com", "ftp://auth.example.com", "https://auth.example.com?x=1"):
        with pytest.raises(SettingsError, match="ISSUER"):
            check_settings(load_settings(production_env(instance, AUTHSERVER_ISSUER=bad)))


@pytest.mark.parametrize(
    "issuer",
    ["https://auth.example.com#top", "https://auth.example.com/#", "https://auth.example.com?"],
)
def test_issuer_with_fragment_or_empty_query_is_refused(instance, issuer):
    """OIDC Discovery §3 / RFC 8414 §2: the issuer is an https URL with no query or
    fragment component, not even an empty one (`iss` is compared character for character)."""
    with pytest.raises(SettingsError, match="AUTHSERVER_ISSUER"):
        check_settings(load_settings(production_env(instance, AUTHSERVER_ISSUER=issuer)))


@pytest.mark.parametrize(
    "name", ["SECRET_KEY", "VAULT_KEYS", "APPROVAL_WEBHOOK_SECRET", "SMTP_PASSWORD"]
)
def test_unreadable_secret_file_gives_clear_error(instance, tmp_path, name):
    """A `*_FILE` variable naming a file that cannot be read stops startup with a
    SettingsError naming the variable (not a FileNotFoundError traceback)."""
    absent = tmp_path / "absent"
    env = production_env(
        instance, **{f"AUTHSERVER_{name}": "<unset>", f"AUTHSERVER_{name}_FILE": str(absent)}
    )
    with pytest.raises(SettingsError, match=f"AUTHSERVER_{name}_FILE"):
        load_settings(env)
    assert not absent.exists()


INTEGER_SETTINGS = [
    "ACCESS_TOKEN_TTL",
    "DELEGATED_TOKEN_TTL",
    "ID_TOKEN_TTL",
    "REFRESH_TOKEN_TTL",
    "AUTHORIZATION_CODE_TTL",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_KIB",
    "ARGON2_PARALLELISM",
    "PROXY_HOPS",
]


@pytest.mark.parametrize("name", INTEGER_SETTINGS)
@pytest.mark.parametrize("value", ["ten", "1.5", "0x10", "12abc"])
def test_bad_integer_gives_clear_error(instance, name, value):
    """A value that is not an integer stops startup with a SettingsError naming the variable
    (not a bare ValueError traceback)."""
    env = production_env(instance, **{f"AUTHSERVER_{name}": value})
    with pytest.raises(SettingsError, match=f"AUTHSERVER_{name} must be an integer"):
        load_settings(env)


@pytest.mark.parametrize("name", INTEGER_SETTINGS)
def test_negative_integer_gives_clear_error(instance, name):
    """A negative lifetime, cost or hop count is never meant: refused, naming the variable."""
    env = production_env(instance, **{f"AUTHSERVER_{name}": "-5"})
    with pytest.raises(SettingsError, match=f"AUTHSERVER_{name} must not be negative"):
        load_settings(env)


def test_integer_settings_are_read(instance):
    """The control case: well-formed integers are taken as given."""
    settings = load_settings(
        production_env(instance, AUTHSERVER_ACCESS_TOKEN_TTL="120", AUTHSERVER_PROXY_HOPS="1")
    )
    assert settings.access_token_ttl == 120 and settings.proxy_hops == 1


def test_unknown_environment_is_refused(instance):
    """AUTHSERVER_ENV is development or production, nothing else (a typo must not run a
    production deployment with development leniency)."""
    with pytest.raises(SettingsError, match="AUTHSERVER_ENV"):
        check_settings(load_settings(production_env(instance, AUTHSERVER_ENV="prod")))


def _synchronous(engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA synchronous").scalar_one())


def test_sqlite_commits_are_durable_by_default(instance, tmp_path):
    """AUTHSERVER_SQLITE_SYNCHRONOUS defaults to FULL (SQLite's 2): a committed token record or
    audit row survives a power loss; NORMAL (1) is an explicit choice; anything else refused."""
    from authserver.db import make_engine

    url = f"sqlite:///{tmp_path / 'durable.db'}"
    default = load_settings(production_env(instance, AUTHSERVER_DATABASE_URL=url))
    assert check_settings(default).sqlite_synchronous == "FULL"
    chosen = load_settings(
        production_env(
            instance, AUTHSERVER_DATABASE_URL=url, AUTHSERVER_SQLITE_SYNCHRONOUS="normal"
        )
    )
    assert chosen.sqlite_synchronous == "NORMAL"
    for settings, expected in ((default, 2), (chosen, 1)):
        engine = make_engine(url, sqlite_synchronous=settings.sqlite_synchronous)
        try:
            assert _synchronous(engine) == expected
        finally:
            engine.dispose()
    with pytest.raises(SettingsError, match="AUTHSERVER_SQLITE_SYNCHRONOUS"):
        check_settings(load_settings(production_env(instance, AUTHSERVER_SQLITE_SYNCHRONOUS="OFF")))


DURATION_SETTINGS = {
    "NOTIFICATION_TIMEOUT": "notification_timeout",
    "NOTIFICATION_POLL_INTERVAL": "notification_poll_interval",
    "APPROVAL_STREAM_POLL_INTERVAL": "approval_stream_poll_interval",
    "UPSTREAM_TIMEOUT": "upstream_timeout",
}


@pytest.mark.parametrize("name", sorted(DURATION_SETTINGS))
def test_durations_are_read_from_the_environment(instance, name):
    """Timeouts and poll intervals are operator settings, not constants in the code."""
    settings = load_settings(production_env(instance, **{f"AUTHSERVER_{name}": "2.5"}))
    assert getattr(settings, DURATION_SETTINGS[name]) == 2.5


@pytest.mark.parametrize("name", sorted(DURATION_SETTINGS))
@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_unusable_durations_are_refused(instance, name, value):
    """A zero, negative or infinite timeout or poll interval cannot work (a busy loop, or a
    call that never gives up): refused at startup, naming the variable."""
    env = production_env(instance, **{f"AUTHSERVER_{name}": value})
    with pytest.raises(SettingsError, match=f"AUTHSERVER_{name} must"):
        load_settings(env)


def test_negative_client_cache_ttl_is_refused(instance):
    """0 turns the cache off; a negative value has no meaning and is refused."""
    env = production_env(instance, AUTHSERVER_CLIENT_CACHE_TTL="-5")
    with pytest.raises(SettingsError, match="AUTHSERVER_CLIENT_CACHE_TTL must"):
        load_settings(env)


def test_mail_settings_from_the_environment(instance, tmp_path):
    """The SMTP password comes from AUTHSERVER_SMTP_PASSWORD or its _FILE, like other secrets."""
    password_file = tmp_path / "smtp_password"
    password_file.write_text("relay-password-0123\n")
    env = production_env(
        instance,
        AUTHSERVER_SMTP_URL="smtps://mail.example.com",
        AUTHSERVER_APPROVAL_EMAIL_FROM="approvals@auth.example.com",
        AUTHSERVER_SMTP_USERNAME="mailer",
        AUTHSERVER_SMTP_PASSWORD_FILE=str(password_file),
    )
    settings = check_settings(load_settings(env))
    assert settings.smtp_url == "smtps://mail.example.com"
    assert settings.approval_email_from == "approvals@auth.example.com"
    assert (settings.smtp_username, settings.smtp_password) == ("mailer", "relay-password-0123")


@pytest.mark.parametrize("interval", ["0", "0.0", "61", "86400"])
def test_production_refuses_audit_link_interval_off_or_long(instance, interval):
    """Audit rows are tamper-evident only once linked into the chain: production refuses a
    linker switched off (0) or one that leaves rows unlinked for more than a minute."""
    env = production_env(instance, AUTHSERVER_AUDIT_LINK_INTERVAL=interval)
    with pytest.raises(SettingsError, match="AUDIT_LINK_INTERVAL"):
        check_settings(load_settings(env))


@pytest.mark.parametrize("interval", ["0.2", "60"])
def test_production_accepts_audit_link_interval_up_to_a_minute(instance, interval):
    env = production_env(instance, AUTHSERVER_AUDIT_LINK_INTERVAL=interval)
    assert check_settings(load_settings(env)).audit_link_interval == float(interval)


def test_development_accepts_audit_linker_off(instance):
    """Tests and one-shot commands run without the background linker."""
    env = production_env(instance, AUTHSERVER_ENV="development", AUTHSERVER_AUDIT_LINK_INTERVAL="0")
    assert check_settings(load_settings(env)).audit_link_interval == 0


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("http://hooks.example.com/approvals", GOOD_SECRET, "APPROVAL_WEBHOOK_URL must use https"),
        ("https://hooks.example.com/approvals", "<unset>", "APPROVAL_WEBHOOK_SECRET"),
        ("https://hooks.example.com/approvals", "short", "APPROVAL_WEBHOOK_SECRET"),
    ],
    ids=["plain_http", "no_secret", "short_secret"],
)
def test_production_approval_webhook_is_tls_and_signed(instance, url, secret, message):
    """The webhook carries who must approve what: in production it must be https and signed
    (X-Authserver-Signature), or a receiver could not tell it from a forgery."""
    env = production_env(
        instance, AUTHSERVER_APPROVAL_WEBHOOK_URL=url, AUTHSERVER_APPROVAL_WEBHOOK_SECRET=secret
    )
    with pytest.raises(SettingsError, match=message):
        check_settings(load_settings(env))


def test_production_approval_webhook_with_tls_and_secret_starts(instance):
    """The control case: https and a 32-character secret are accepted."""
    env = production_env(
        instance,
        AUTHSERVER_APPROVAL_WEBHOOK_URL="https://hooks.example.com/approvals",
        AUTHSERVER_APPROVAL_WEBHOOK_SECRET=GOOD_SECRET,
    )
    assert check_settings(load_settings(env)).approval_webhook_url.startswith("https://")


@pytest.mark.parametrize(
    "name",
    [
        "AUTHSERVER_LOGIN_RATE_LIMIT",
        "AUTHSERVER_REGISTRATION_RATE_LIMIT",
        "AUTHSERVER_REGISTRATION_GLOBAL_RATE_LIMIT",
        "AUTHSERVER_PAR_RATE_LIMIT",
    ],
)
@pytest.mark.parametrize("value", ["often", "10 per", "-1/hour"])
def test_unreadable_rate_limits_are_refused_at_startup(instance, name, value):
    """A rate the limiter cannot read stops the server before it serves anything, not at
    the first sign-in or registration."""
    with pytest.raises(SettingsError, match=name):
        check_settings(load_settings(production_env(instance, **{name: value})))


def test_registration_settings_are_read(instance):
    env = production_env(
        instance,
        AUTHSERVER_REGISTRATION_ENABLED="true",
        AUTHSERVER_REGISTRATION_RATE_LIMIT="5/minute",
        AUTHSERVER_REGISTRATION_GLOBAL_RATE_LIMIT="50/minute",
    )
    settings = check_settings(load_settings(env))
    assert settings.registration_enabled and settings.registration_rate_limit == "5/minute"
    assert settings.registration_global_rate_limit == "50/minute"
    default = check_settings(load_settings(production_env(instance)))
    assert default.registration_global_rate_limit == "500/hour"


def test_require_par_is_read(instance):
    """AUTHSERVER_REQUIRE_PAR (RFC 9126 §5), off unless set."""
    assert check_settings(load_settings(production_env(instance))).require_par is False
    env = production_env(instance, AUTHSERVER_REQUIRE_PAR="true")
    assert check_settings(load_settings(env)).require_par is True
    assert not check_settings(load_settings(production_env(instance))).registration_enabled
