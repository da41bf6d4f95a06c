"""`kubesim down` stops components in parallel (defect 9's follow-up): every guarantee about leftovers
still holds on a real cluster. Nothing of the cluster is left (processes, namespaces, links, state
directory), a process started in a node's namespace behind kubesim's back is stopped by namespace
identity, and a component killed with SIGKILL is dead for `status` and `start` at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kubesim.state import is_running
from netsim import names, namespaces
from tests.conftest import KubesimCli as Kubesim
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.root


def _links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll CONDITION until true; the timeout only guards against a hang."""
    wait_until(condition, timeout=30, interval=0.02, message=what)


def test_down_leaves_nothing_and_stops_strays_by_namespace(kubesim: Kubesim, tmp_path: Path) -> None:
    kubesim("up")  # topologies/two-node.yaml
    status = json.loads(kubesim("status", "--json").stdout)
    pids = [p["pid"] for p in status["processes"]]
    # A process kubesim never recorded, in a worker's namespace, in a session of its own.
    stray = subprocess.Popen(["nsenter", f"--net=/run/netns/{names.node_ns('kubesim', 'worker-1')}", "--",
                              "sleep", "600"], start_new_session=True)
    try:
        _wait_until(lambda: stray.pid in namespaces.processes_in([names.node_ns("kubesim", "worker-1")]),
                    "the stray runs in worker-1's namespace")
        assert "cluster 'kubesim': removed" in kubesim("down").stdout
        assert stray.wait() == -signal.SIGTERM  # down's SIGTERM, found by namespace, not by name or record
    finally:
        stray.kill()
        stray.wait()
    assert not [pid for pid in pids if is_running(pid)]
    assert not [ns for ns in namespaces.list_names() if ns.startswith("ksim-kubesim.")]
    assert names.host_link("kubesim") not in _links()
    assert not (tmp_path / "state" / "kubesim").exists()


def test_a_killed_component_is_dead_for_status_and_start(kubesim: Kubesim) -> None:
    kubesim("up", str(REPO / "topologies" / "single-node.yaml"))
    status = json.loads(kubesim("status", "--json").stdout)
    scheduler = next(p["pid"] for p in status["processes"] if p["role"] == "scheduler")
    os.kill(scheduler, signal.SIGKILL)
    _wait_until(lambda: not is_running(scheduler), "the scheduler has exited (a zombie or reaped)")
    status = json.loads(kubesim("status", "--json").stdout)
    assert next(p["alive"] for p in status["processes"] if p["role"] == "scheduler") is False
    started = kubesim("start", "scheduler")
    assert "started scheduler (pid " in started.stdout
    status = json.loads(kubesim("status", "--json").stdout)
    assert next(p["alive"] for p in status["processes"] if p["role"] == "scheduler") is True
