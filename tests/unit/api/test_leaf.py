"""control.api is a leaf: every component may import it, so it may import nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import control.api

PROJECT_PACKAGES = ("control", "kubesim", "netsim", "proxy")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside the package only if it climbs no higher
                names.append("control.api" if node.level == 1 else "control")
            elif node.module:
                names.append(node.module)
    return names


def test_control_api_imports_nothing_of_the_project() -> None:
    root = Path(control.api.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 3
    offending = [f"{path.relative_to(root)}: {name}" for path in files for name in _imports(path)
                 if name.split(".")[0] in PROJECT_PACKAGES
                 and name != "control.api" and not name.startswith("control.api.")]
    assert offending == []
