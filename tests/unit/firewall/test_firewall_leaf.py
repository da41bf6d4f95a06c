"""firewall is neutral ground between kube-proxy and the network-policy agent: it imports neither of
them, nor the control plane or the CLI, so both can build on it without an arrow between them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import firewall

FORBIDDEN = ("proxy", "netpol", "kubesim", "control")


def _module(root: Path, path: Path) -> str:
    parts = ("firewall", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(root: Path, path: Path) -> list[str]:
    """Absolute names of everything PATH imports (relative imports resolved against its package)."""
    package = _module(root, path) if path.name == "__init__.py" else _module(root, path).rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                names.append(".".join([*base, node.module] if node.module else base) or "<above the repository>")
            elif node.module:
                names.append(node.module)
    return names


def test_no_module_of_firewall_imports_proxy_netpol_kubesim_or_control() -> None:
    root = Path(firewall.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 10  # the whole package is scanned, not just its __init__
    offending = [f"{path.relative_to(root)}: {name}" for path in files for name in _imports(root, path)
                 if name.split(".")[0] in FORBIDDEN or name.startswith("<")]
    assert offending == []


def test_importing_every_module_of_firewall_loads_none_of_them() -> None:
    # Also catches an import hidden from the parser (importlib, __import__) or pulled in indirectly.
    root = Path(firewall.__file__).parent
    modules = sorted(_module(root, p) for p in root.rglob("*.py"))
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & {set(FORBIDDEN)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=root.parent)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
