"""kube-proxy's process entry is `python -m proxy` (proxy/__main__.py); `kubesim proxy` hands on to it,
and nothing in proxy/ imports kubesim (the proxy is a component, kubesim the tool that runs it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from netsim import namespaces
from proxy.__main__ import build_parser, config_from

REPO = Path(__file__).resolve().parents[3]


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_nothing_in_proxy_imports_kubesim() -> None:
    sources = sorted((REPO / "proxy").rglob("*.py"))
    assert len(sources) > 10  # the walk found the package
    offenders = {str(p.relative_to(REPO)): sorted(m for m in _imported_modules(p) if m.split(".")[0] == "kubesim")
                 for p in sources}
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, timeout=60, check=False)


def test_python_m_proxy_needs_its_credentials_and_node() -> None:
    done = _run("-m", "proxy", "--mode", "iptables")
    assert done.returncode == 2
    assert "--kubeconfig and --node-name are required (or --cleanup)" in done.stderr


def test_python_m_proxy_refuses_an_unknown_mode() -> None:
    done = _run("-m", "proxy", "--mode", "ipvs", "--cleanup")
    assert done.returncode == 2
    assert "invalid choice: 'ipvs'" in done.stderr


def test_kubesim_proxy_hands_its_arguments_to_the_proxy() -> None:
    done = _run("-m", "kubesim", "proxy", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: kube-proxy")
    assert "--metrics-bind-address" in done.stdout
    refused = _run("-m", "kubesim", "proxy", "--mode", "nft")
    assert refused.returncode == 2 and "invalid choice: 'nft'" in refused.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--node", "worker-1"], "--node goes with --cleanup"),
    (["--cleanup", "--name", "kubesim"], "--name goes with --cleanup --node NODE"),
    (["--cleanup", "--node"], "--node needs a value"),
    (["--cleanup", "--node=worker-1", "--name=../x"], "a cluster name is never a path"),
])
def test_kubesim_proxy_node_flags_are_checked_before_anything_runs(argv: list[str], message: str) -> None:
    done = _run("-m", "kubesim", "proxy", *argv)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_flags_become_the_proxy_config() -> None:
    args = build_parser().parse_args(["--node-name", "worker-1", "--mode", "iptables", "--nodeport-addresses",
                                      "10.0.0.0/8,,192.168.0.0/16", "--min-sync-period", "0.5"])
    config = config_from(args)
    assert (config.node_name, config.mode, config.min_sync_period) == ("worker-1", "iptables", 0.5)
    assert config.nodeport_addresses == ("10.0.0.0/8", "192.168.0.0/16")


def test_one_helper_builds_commands_inside_a_namespace() -> None:
    assert namespaces.command_in("ksim-a.node.n1", ["nft", "list", "ruleset"]) == [
        "nsenter", "--net=/run/netns/ksim-a.node.n1", "--", "nft", "list", "ruleset"]
