"""Broker wiring: settings precedence, CLI options, layering, and PyJWT cross-checks."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests

from demo_agent.broker import create_app
from demo_agent.broker.__main__ import config_from_args, parse_args
from demo_agent.broker.settings import DEV_AUDIENCE, DEV_DATABASE_URL, DEV_ISSUER, BrokerSettings
from demo_agent.broker.tokens import TokenVerifier
from tests.demo import broker_fixtures as fixtures
from tests.demo.broker_fixtures import BROKER_AUDIENCE, StubIssuer, bearer, trade

stub_issuer = fixtures.stub_issuer

REPO = Path(__file__).resolve().parents[2]


def test_dev_defaults() -> None:
    """DESIGN "Configuration": every setting has a dev default."""
    settings = BrokerSettings.load({}, environ={})
    assert (settings.issuer, settings.audience) == (DEV_ISSUER, DEV_AUDIENCE)
    assert settings.database_url == DEV_DATABASE_URL == "sqlite:///instance/broker.db"
    assert settings.jwks_refetch_interval == 60.0


def test_env_then_config_precedence() -> None:
    """BROKER_* env vars override defaults; explicit config overrides env."""
    environ = {"BROKER_ISSUER": "https://idp.example", "BROKER_JWKS_REFETCH_INTERVAL": "5"}
    settings = BrokerSettings.load({"BROKER_AUDIENCE": "https://broker.example"}, environ)
    assert settings.issuer == "https://idp.example"
    assert settings.audience == "https://broker.example"
    assert settings.jwks_refetch_interval == 5.0
    config = {"BROKER_ISSUER": "https://other.example"}
    assert BrokerSettings.load(config, environ).issuer == "https://other.example"


@pytest.mark.parametrize(
    "config",
    [{"BROKER_ISSUER": "not a url"}, {"BROKER_AUDIENCE": "ftp://x"}, {"BROKER_HTTP_TIMEOUT": 0}],
)
def test_invalid_settings_refused(config: dict) -> None:
    """Settings that cannot work stop startup with a clear error."""
    with pytest.raises(ValueError, match="BROKER_"):
        BrokerSettings.load(config, environ={})


def test_cli_options() -> None:
    """python -m demo_agent.broker [--port] [--host] [--issuer] [--audience] [--database]."""
    args = parse_args(["--port", "9001", "--issuer", "http://127.0.0.1:9000", "--database", "x"])
    assert config_from_args(args, {}) == {
        "BROKER_ISSUER": "http://127.0.0.1:9000",
        "BROKER_DATABASE_URL": "x",
        "BROKER_AUDIENCE": "http://127.0.0.1:9001",
    }
    assert config_from_args(parse_args([]), {"BROKER_AUDIENCE": "https://b"}) == {}
    explicit = parse_args(["--audience", "https://broker.example"])
    assert config_from_args(explicit, {})["BROKER_AUDIENCE"] == "https://broker.example"


def test_cli_help() -> None:
    """The module runs as a program and documents its options."""
    result = subprocess.run(
        [sys.executable, "-m", "demo_agent.broker", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--issuer" in result.stdout and "--audience" in result.stdout


CORE_MODULES = ["errors", "jwks", "ledger", "market", "models", "tokens", "trading"]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_modules_do_not_import_flask(module: str) -> None:
    """STYLE "Architecture": the broker core imports neither Flask nor the authserver."""
    source = (REPO / "demo_agent" / "broker" / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"flask", "werkzeug", "authserver"}


def test_create_app_from_env(
    tmp_path: Path,
    stub_issuer: StubIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """create_app() with no config reads BROKER_ISSUER, BROKER_AUDIENCE, BROKER_DATABASE_URL."""
    monkeypatch.setenv("BROKER_ISSUER", stub_issuer.url)
    monkeypatch.setenv("BROKER_AUDIENCE", "https://broker.example")
    monkeypatch.setenv("BROKER_DATABASE_URL", f"sqlite:///{tmp_path}/nested/dir/broker.db")
    app = create_app()
    try:
        client = app.test_client()
        token = stub_issuer.mint(aud="https://broker.example")
        assert client.get("/portfolio", headers=bearer(token)).status_code == 200
        assert client.get("/portfolio", headers=bearer(stub_issuer.mint())).status_code == 401
    finally:
        app.extensions["broker"].close()
    assert (tmp_path / "nested/dir/broker.db").exists()


def test_agrees_with_pyjwt_decode(stub_issuer: StubIssuer) -> None:
    """The fast path returns exactly what PyJWT's jwt.decode returns for valid tokens."""
    verifier = TokenVerifier(stub_issuer.url, BROKER_AUDIENCE)
    try:
        for key in stub_issuer.keys.values():
            act = {"sub": "agent", "act": {"sub": "planner"}}
            token = stub_issuer.mint(key, act=act, authorization_details=[trade()])
            reference = jwt.decode(
                token,
                key=jwt.PyJWK(key.jwk),
                algorithms=[key.alg],
                audience=BROKER_AUDIENCE,
                issuer=stub_issuer.url,
            )
            assert verifier.verify(token) == reference
    finally:
        verifier.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[str]) -> None:
    for _ in range(100):
        assert process.poll() is None, "broker exited early"
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("broker did not start")


def test_cli_serves_end_to_end(tmp_path: Path, stub_issuer: StubIssuer) -> None:
    """python -m demo_agent.broker serves on loopback and never logs a token, even in a URL."""
    port = free_port()
    audience = f"http://127.0.0.1:{port}"
    argv = ["--port", str(port), "--issuer", stub_issuer.url]
    argv += ["--database", f"sqlite:///{tmp_path}/broker.db"]
    process = subprocess.Popen(
        [sys.executable, "-m", "demo_agent.broker", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    token = stub_issuer.mint(aud=audience)
    try:
        wait_until_up(f"{audience}/quotes/NET", process)
        with requests.Session() as http:
            assert http.get(f"{audience}/quotes/NET", timeout=5).json()["price"] == 118.5
            portfolio = http.get(f"{audience}/portfolio", headers=bearer(token), timeout=5)
            assert portfolio.status_code == 200 and portfolio.json()["sub"] == "alice"
            leaked = http.get(f"{audience}/portfolio?access_token={token}", timeout=5)
            assert leaked.status_code == 400
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "GET /portfolio" in output
    assert token not in output and token.split(".")[2] not in output
