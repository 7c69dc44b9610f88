"""Import boundary: the vault imports neither Flask nor the authserver package.

STYLE.md "Architecture": imports point one way; ``vault/`` imports neither Flask
nor ``authserver``, and a test proves it. DESIGN.md: the vault is importable
without Flask.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAULT = ROOT / "vault"
FORBIDDEN = ("flask", "werkzeug", "authserver")

PROBE = """
import importlib, pkgutil, sys
import vault
for module in pkgutil.walk_packages(vault.__path__, "vault."):
    importlib.import_module(module.name)
forbidden = {FORBIDDEN!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(",".join(loaded))
"""


def test_importing_vault_loads_no_flask_or_authserver() -> None:
    """In a fresh interpreter, importing vault and all its modules loads none of them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(FORBIDDEN=FORBIDDEN)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_vault_sources_do_not_import_flask_or_authserver() -> None:
    """Statically, no vault/*.py has an import of flask, werkzeug or authserver."""
    sources = sorted(VAULT.rglob("*.py"))
    assert VAULT / "envelope.py" in sources
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & set(FORBIDDEN))
        for path in sources
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_static_scan_detects_forbidden_imports(tmp_path: Path) -> None:
    """The scanner itself catches plain, dotted and from-imports (no false pass)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import flask\nimport werkzeug.security\nfrom authserver.db import x\nfrom . import y\n",
        encoding="utf-8",
    )
    assert imported_top_levels(sample) >= set(FORBIDDEN)
