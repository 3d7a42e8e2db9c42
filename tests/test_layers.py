"""The ground floor stays the ground floor: `vigil/` (config, bus, logs, health, TLS, embedded servers,
exit codes, bindings) imports no service, and no service imports the command line or the all-in-one
(`vigil/cli/`), which sit on top of them all."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

SERVICES = ("sensor", "master", "responder")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _modules(package: str) -> list[Path]:
    return [p for p in sorted((REPO / package).rglob("*.py")) if "/v1/" not in p.as_posix()]


def test_the_shared_runtime_imports_no_service_and_not_the_cli() -> None:
    floor = [p for p in _modules("vigil") if "vigil/cli" not in p.as_posix()]
    assert len(floor) >= 8
    offending = {
        str(p.relative_to(REPO)): sorted(
            m for m in _imports(p) if m.split(".")[0] in SERVICES or m.startswith("vigil.cli")
        )
        for p in floor
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_no_service_imports_the_cli() -> None:
    offending = {
        str(p.relative_to(REPO)): sorted(m for m in _imports(p) if m.startswith("vigil.cli"))
        for service in SERVICES
        for p in _modules(service)
    }
    assert {k: v for k, v in offending.items() if v} == {}
