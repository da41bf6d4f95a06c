"""The CLI's reporting surface: --version, shell completion, and --json on every command that reports
something (click's CliRunner; the engines under the commands are replaced where they would need a
running cluster, and are real where they need none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from kubesim import cli, cluster, components
from kubesim import policy as queries
from kubesim.graph import facts as graph_facts
from kubesim.state import ClusterState
from netpol.decide import ClusterView
from netpol.model import parse_namespace, parse_pod
from netsim.topology import load_topology
from tests.netpol_cases import cluster_objects, default_addresses
from tests.unit.graph.graph_sample import NODES, PODS, facts

REPO = Path(__file__).resolve().parents[3]
NAME = "reports"
# Commands that report nothing of their own: they run another program (whose output is the point) or
# print text that is its own format (a log's tail, a completion script, kubectl port-forward's lines).
NO_JSON = {"exec", "kubectl", "proxy", "capture", "logs", "completion", "port-forward"}


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state root holding one cluster, NAME, as `up --network-only` records it (nothing running)."""
    root = tmp_path / "state"
    monkeypatch.setenv("KUBESIM_STATE_DIR", str(root))
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # the commands' root check; nothing here needs root
    state = ClusterState(NAME, root)
    with state.locked(create=True):
        state.save_topology(load_topology(REPO / "topologies" / "two-node.yaml").with_name(NAME))
    yield root


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), prog_name="kubesim", env=env, catch_exceptions=False)


def as_json(*args: str) -> Any:
    done = invoke(*args)
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_every_reporting_command_has_json() -> None:
    commands = [(name, c) for name, c in cli.main.commands.items() if not isinstance(c, click.Group)]
    commands += [(f"{name} {sub}", c) for name, g in cli.main.commands.items() if isinstance(g, click.Group)
                 for sub, c in g.commands.items()]  # a group's subcommands each report for themselves
    for name, command in commands:
        flags = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}
        wrong = "unexpected (it is in NO_JSON)" if name in NO_JSON else "missing"
        assert ("--json" in flags) != (name in NO_JSON), f"`kubesim {name}`: --json {wrong}"


def test_version_is_the_package_metadata() -> None:
    done = invoke("--version")
    assert done.exit_code == 0 and done.output == f"kubesim {version('kubesim')}\n"


@pytest.mark.parametrize(("shell", "mark"), [
    ("bash", "complete -o nosort -F _kubesim_completion kubesim"),
    ("zsh", "#compdef kubesim"),
    ("fish", "complete --no-files --command kubesim"),
])
def test_completion_prints_the_shells_script(shell: str, mark: str) -> None:
    done = invoke("completion", shell)
    assert done.exit_code == 0
    assert mark in done.output and f"_KUBESIM_COMPLETE={shell}_complete" in done.output


def test_completion_refuses_an_unknown_shell() -> None:
    done = invoke("completion", "tcsh")
    assert done.exit_code == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in done.output


def test_the_completion_variable_answers_with_commands_and_options() -> None:
    def complete(*words: str) -> list[str]:
        # COMP_CWORD: the index of the word being completed (the last, maybe empty, one).
        env = {"_KUBESIM_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(words), "COMP_CWORD": str(len(words) - 1)}
        return invoke(env=env).output.splitlines()

    assert "plain,graph" in complete("kubesim", "gr") and "plain,completion" in complete("kubesim", "com")
    assert "plain,--format" in complete("kubesim", "graph", "--fo")
    assert complete("kubesim", "graph", "--format", "") == ["plain,mermaid", "plain,dot", "plain,html"]


def test_bash_completes_through_the_printed_script(tmp_path: Path) -> None:
    # `kubesim` as the shell would find it, running this checkout: a script like the console entry point.
    launcher = tmp_path / "bin" / "kubesim"
    launcher.parent.mkdir()
    launcher.write_text(f"#!{sys.executable}\nfrom kubesim.cli import main\nmain()\n")
    launcher.chmod(0o755)
    script = ('source <(kubesim completion bash); COMP_WORDS=(kubesim gra); COMP_CWORD=1; '
              '_kubesim_completion kubesim; printf "%s\\n" "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{launcher.parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["graph"]


# -- kubesim graph -------------------------------------------------------------------------------------


@pytest.fixture
def sample_facts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    def gather(name: str, *, root: Path | None = None) -> dict[str, Any]:
        asked.append(name)
        return facts()

    monkeypatch.setattr(graph_facts, "gather", gather)
    return asked


def test_graph_prints_mermaid_by_default_and_dot_on_request(state_root: Path, sample_facts: list[str]) -> None:
    mermaid = invoke("graph")
    assert mermaid.exit_code == 0 and mermaid.output.startswith("---\ntitle: kubesim cluster demo (vxlan)")
    assert sample_facts == [NAME]  # the only cluster there is
    dot = invoke("graph", "--format", "dot", "--name", NAME)
    assert dot.output.startswith('graph "kubesim cluster demo (vxlan)" {')
    for name in (*NODES, *PODS):
        assert name in mermaid.output and name in dot.output


def test_graph_writes_the_html_page(state_root: Path, sample_facts: list[str], tmp_path: Path) -> None:
    page = tmp_path / "cluster.html"
    done = invoke("graph", "--html", str(page))
    assert done.exit_code == 0 and f"wrote {page}" in done.output
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and all(name in text for name in (*NODES, *PODS))
    other = tmp_path / "cluster.dot"
    assert invoke("graph", "--format", "dot", "-o", str(other)).exit_code == 0
    assert other.read_text().startswith("graph ")


def test_graph_refuses_html_with_another_format(state_root: Path, sample_facts: list[str], tmp_path: Path) -> None:
    done = invoke("graph", "--html", str(tmp_path / "x.html"), "--format", "dot")
    assert done.exit_code == 2 and "--html FILE writes the HTML page" in done.output


def test_graph_json_holds_the_facts_and_the_model(state_root: Path, sample_facts: list[str]) -> None:
    found = as_json("graph", "--json")
    assert found["facts"] == facts()
    assert {v["label"] for v in found["graph"]["vertices"] if v["kind"] == "pod"} == set(PODS)


def test_graph_of_a_cluster_with_no_control_plane_is_its_network(state_root: Path) -> None:
    found = as_json("graph", "--json")  # the real gatherer: the recorded topology, no kubeconfig
    assert [n["name"] for n in found["facts"]["nodes"]] == ["control-plane", "worker-1", "worker-2"]
    assert "no control plane" in found["facts"]["notes"][0]


def test_graph_without_read_access_to_the_state_says_to_use_sudo(state_root: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(name: str, *, root: Path | None = None) -> dict[str, Any]:
        raise PermissionError(13, "Permission denied", str(state_root / NAME / "topology.yaml"))

    monkeypatch.setattr(graph_facts, "gather", refused)
    done = invoke("graph")
    assert done.exit_code == 1 and "kubesim's state directory is root's; run it with sudo" in done.output


def test_graph_of_an_unknown_cluster_says_so(state_root: Path) -> None:
    done = invoke("graph", "--name", "nope")
    assert done.exit_code == 1 and "cluster 'nope' does not exist; bring it up with `kubesim up`" in done.output


# -- --json of the other commands -----------------------------------------------------------------------


def test_down_and_clean_json(state_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "down", lambda name: [f"netns ksim-{name}.fabric", "link ksim-0a1b2c"])
    assert as_json("down", "--json") == [{"name": NAME, "removed": [f"netns ksim-{NAME}.fabric", "link ksim-0a1b2c"]}]
    monkeypatch.setattr(cluster, "clean", lambda: ["netns ksim-old.fabric"])
    assert as_json("clean", "--json") == {"removed": ["netns ksim-old.fabric"]}


def test_kubeconfig_json(state_root: Path) -> None:
    assert as_json("kubeconfig", "--json") == {"name": NAME, "kubeconfig": str(state_root / NAME / "kubeconfig")}


def test_apply_json(state_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("kind: ConfigMap\n")
    monkeypatch.setattr(components, "apply_manifests",
                        lambda state, paths: ["deployment/echo created", "service/echo configured"])
    assert as_json("apply", "-f", str(manifest), "--json") == [
        {"object": "deployment/echo", "result": "created"}, {"object": "service/echo", "result": "configured"}]


def test_stop_start_restart_and_add_scheduler_json(state_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        ClusterState(NAME, state_root).record_process(sleeper.pid, "sleeper", ["sleep", "60"])
        assert as_json("stop", "sleeper", "--json") == {"component": "sleeper", "pid": sleeper.pid,
                                                        "wasRunning": True}
        sleeper.wait(timeout=10)  # really stopped, by its pid (TimeoutExpired if it were not)
        assert as_json("stop", "sleeper", "--json")["wasRunning"] is False
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    monkeypatch.setattr(components, "restart", lambda state, role, stop_first=True: 4242)
    assert as_json("start", "sleeper", "--json") == {"component": "sleeper", "pid": 4242}
    assert as_json("restart", "sleeper", "--json") == {"component": "sleeper", "pid": 4242}
    monkeypatch.setattr(components, "start_scheduler", lambda state, topology, name, profile: 4343)
    assert as_json("add-scheduler", "packer", "--json") == {
        "scheduler": "packer", "profile": "most-allocated", "component": "scheduler-packer", "pid": 4343}


def test_policy_matrix_json(state_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespaces, pods = cluster_objects(*default_addresses())
    view = ClusterView(policies=[], pods=[p for p in (parse_pod(o) for o in pods) if p],
                       namespaces=[parse_namespace(o) for o in namespaces])
    monkeypatch.setattr(queries, "snapshot", lambda kubeconfig: queries.Snapshot(view, [], []))
    found = as_json("policy", "--matrix", "x", "--port", "80", "--json")
    assert found["pods"] == ["a", "b", "c"] and found["namespace"] == "x" and found["port"] == 80
    assert all(all(row.values()) for row in found["allowed"].values())  # no policy: everyone may talk
