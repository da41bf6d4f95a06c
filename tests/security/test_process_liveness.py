"""Defect 9: a killed component still counted as running. `RecordedProcess.alive` compared only start
times, so a zombie (exited, not yet reaped) was "alive": `kubesim start` refused and `status` lied,
and `down` waited out each component's exit until its parent got round to reaping it.

Also here: components stop tier by tier (dependents, then the apiserver, then etcd), all of a tier
together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kubesim import components
from kubesim.state import ClusterState, RecordedProcess, process_start_time, stop_processes
from tests.waiting import wait_until


def _state(tmp_path: Path) -> ClusterState:
    state = ClusterState("liveness", tmp_path)
    with state.locked(create=True):
        pass
    return state


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll CONDITION until true; the timeout only guards against a hang."""
    wait_until(condition, timeout=30, interval=0.01, message=what)


def _stat_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_a_zombie_is_not_alive() -> None:
    # Our own child, killed and not yet reaped: a zombie, exactly what a component becomes when its parent
    # is slow to reap it.
    child = subprocess.Popen(["sleep", "600"])
    try:
        start = process_start_time(child.pid)
        assert start is not None
        process = RecordedProcess(child.pid, start, "sleeper")
        assert process.alive()
        child.send_signal(signal.SIGKILL)
        _wait_until(lambda: _stat_state(child.pid) == "Z", "the child is a zombie")
        assert not process.alive()
        # alive() reaped the zombie, as it does for children we own.
        _wait_until(lambda: _stat_state(child.pid) is None, "the zombie is reaped")
    finally:
        child.kill()
        child.wait()


def test_start_after_a_kill_is_not_refused(tmp_path: Path) -> None:
    state = _state(tmp_path)
    pid = components.launch(state, "sleeper", ["sleep", "600"])
    recorded = next(p for p in state.processes() if p.role == "sleeper")
    restarted: list[RecordedProcess] = []
    try:
        os.kill(pid, signal.SIGKILL)
        _wait_until(lambda: _stat_state(pid) in ("Z", None), "the component has exited")
        new_pid = components.restart(state, "sleeper", stop_first=False)  # `kubesim start sleeper`
        restarted = [p for p in state.processes() if p.pid == new_pid]
        assert new_pid != pid and restarted and restarted[0].alive()
        assert not recorded.alive()
    finally:
        stop_processes([recorded, *restarted], grace=1)


_RECORDS_ITS_SIGTERM = """
import signal, sys, time
def stop(*_):
    with open(sys.argv[1], "a") as out:
        out.write(sys.argv[2] + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1] + "." + sys.argv[2], "w").close()
while True:
    time.sleep(1)
"""


def test_down_stops_dependents_then_apiserver_then_etcd(tmp_path: Path) -> None:
    state = _state(tmp_path)
    order = tmp_path / "order"
    roles = ["etcd", "apiserver", "scheduler", "controller-manager", "kubelet-a", "kube-proxy-a", "kubelet-b"]
    for role in roles:
        components.launch(state, role, [sys.executable, "-c", _RECORDS_ITS_SIGTERM, str(order), role])
    for role in roles:
        _wait_until(Path(f"{order}.{role}").exists, f"{role} handles SIGTERM")
    processes = state.processes()
    stopped = components.stop_all(state, [])
    assert len(stopped) == len(roles)
    assert not [p.role for p in processes if p.alive()]
    seen = order.read_text().split()
    assert sorted(seen) == sorted(roles)
    assert seen[-2:] == ["apiserver", "etcd"]


@pytest.mark.parametrize("count", [1, 4])
def test_stop_kills_what_ignores_sigterm(count: int) -> None:
    children = [subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                                  "time.sleep(600)"], stdout=subprocess.PIPE, text=True) for _ in range(count)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        processes = [RecordedProcess(c.pid, process_start_time(c.pid) or "", "stubborn") for c in children]
        assert stop_processes(processes, grace=0.2) == processes
        assert not [p for p in processes if p.alive()]
        assert [_stat_state(c.pid) for c in children] == [None] * count  # killed and reaped
    finally:
        for child in children:
            child.kill()
            child.wait()
            assert child.stdout is not None
            child.stdout.close()


_LAUNCH_KILL_REAP = """
import os, signal, sys, time
from pathlib import Path
from kubesim import components
from kubesim.state import ClusterState, stop_processes
state = ClusterState("liveness", Path(sys.argv[1]))
with state.locked(create=True):
    pass
components.launch(state, "sleeper", ["sleep", "600"])
stop_processes(state.processes(), grace=1)  # reaped by pid, behind its Popen's back
"""


def test_a_component_reaped_by_pid_leaves_no_popen_behind(tmp_path: Path) -> None:
    # The launcher keeps each component's Popen; one whose process was stopped and reaped by pid must not
    # be left claiming the process "is still running" when the launching interpreter exits.
    done = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-c", _LAUNCH_KILL_REAP, str(tmp_path)],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[2],
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "still running" not in done.stderr, done.stderr
