"""The user's path through the CLI on the shipped default topology: up, status, exec, down, clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from kubesim.state import is_running
from netsim import names, namespaces

REPO = Path(__file__).resolve().parents[2]


def test_default_cluster_lifecycle(kubesim):
    up = kubesim("up")  # no argument: topologies/two-node.yaml
    assert "cluster kubesim is up (host-gw, proxy mode nftables)" in up.stdout
    assert "worker-2       worker         172.18.0.4  10.244.2.0/24" in up.stdout

    ping = kubesim("exec", "worker-1", "--", "ping", "-c1", "-W2", "172.18.0.4")  # --name: the only cluster
    assert "1 packets transmitted, 1 received" in ping.stdout
    ping = kubesim("exec", "client", "--", "ping", "-c1", "-W2", "172.18.0.2")
    assert "1 received" in ping.stdout

    status = json.loads(kubesim("status", "--json").stdout)
    assert status["name"] == "kubesim" and status["phase"] == "ready"
    assert {n["name"]: n["address"] for n in status["nodes"]} == {
        "control-plane": "172.18.0.2", "worker-1": "172.18.0.3", "worker-2": "172.18.0.4"}
    assert status["network"]["hostLink"] == names.host_link("kubesim")

    again = kubesim("up", check=False)
    assert again.returncode == 1
    assert "cluster 'kubesim' already exists; run `kubesim down --name kubesim` first" in again.stderr

    pids = [p["pid"] for p in status["processes"]]
    assert {p["role"] for p in status["processes"]} == {"apiserver", "scheduler", "controller-manager"} | {
        f"{component}-{node}" for component in ("runtime", "kubelet", "kube-proxy", "netpol")
        for node in ("control-plane", "worker-1", "worker-2")}
    down = kubesim("down")
    assert "cluster 'kubesim': removed" in down.stdout
    # Exited is enough: a zombie waits only for its parent (init, for daemons) to reap it.
    assert not [pid for pid in pids if is_running(pid)]
    assert not [ns for ns in namespaces.list_names() if ns.startswith("ksim-kubesim.")]
    assert "nothing to remove" in kubesim("down").stdout


def wipe_while_written(directory: Path, attempts: int = 20) -> None:
    """Remove DIRECTORY though the running cluster still writes in it (the kubelets' pod logs): a file
    made between rmtree's listing and its rmdir fails that rmdir with "Directory not empty", so go again."""
    for _ in range(attempts):
        shutil.rmtree(directory, ignore_errors=True)
        if not directory.exists():
            return
    raise AssertionError(f"{directory} kept coming back: {sorted(p.name for p in directory.iterdir())}")


def test_clean_sweeps_what_a_lost_state_directory_would_hide(kubesim, tmp_path: Path):
    kubesim("up", str(REPO / "topologies" / "single-node.yaml"))
    status = json.loads(kubesim("status", "--json").stdout)
    apiserver = next(p["pid"] for p in status["processes"] if p["role"] == "apiserver")
    # Lose the records, as a wiped state directory would: the prefix still finds everything, and the
    # namespaces find the processes running in them.
    wipe_while_written(tmp_path / "state" / "single")
    cleaned = kubesim("clean")
    assert "removed netns ksim-single.fabric" in cleaned.stdout
    assert f"removed process {apiserver} (in kubesim's namespaces)" in cleaned.stdout
    assert not is_running(apiserver)
    assert f"removed link {names.host_link('single')}" in cleaned.stdout
    assert not [ns for ns in namespaces.list_names() if ns.startswith("ksim-single.")]


def test_kernel_commands_need_root_and_say_so(tmp_path: Path):
    script = "import os; os.geteuid = lambda: 1000; from kubesim.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", script, "down"], capture_output=True, text=True, check=False,
                          env={**os.environ, "KUBESIM_STATE_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert "`kubesim down` makes network namespaces and needs root; run it with sudo" in done.stderr
