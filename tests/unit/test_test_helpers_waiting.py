"""The tests' own waiting and reporting helpers: a wait returns as soon as its condition holds, and a wait
that times out says what it waited on and what the cluster looked like."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests import cluster_report
from tests.waiting import WaitTimeout, eventually, wait_until


def test_eventually_returns_the_first_true_value() -> None:
    values = iter([None, "", "found"])
    assert eventually(lambda: next(values), timeout=30, interval=0) == "found"


def test_a_timeout_carries_the_message_the_last_value_and_the_description() -> None:
    with pytest.raises(WaitTimeout) as raised:
        wait_until(lambda: [], timeout=0, interval=0, message="the thing", describe=lambda: "the state")
    assert "the thing" in str(raised.value) and "[]" in str(raised.value) and "the state" in str(raised.value)


def test_a_failing_description_does_not_hide_the_timeout() -> None:
    def broken() -> str:
        raise RuntimeError("no cluster")
    with pytest.raises(WaitTimeout, match=r"(?s)the thing.*no cluster"):
        wait_until(lambda: False, timeout=0, interval=0, message="the thing", describe=broken)


def test_the_report_describes_the_pods_and_tails_their_kubelets_log(tmp_path: Path) -> None:
    pods = {"items": [{"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
                       "spec": {"nodeName": "worker-1"},
                       "status": {"phase": "Pending", "conditions": [
                           {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]}}]}
    events = {"items": [{"involvedObject": {"name": "web"}, "type": "Warning", "reason": "Unhealthy",
                         "message": "Readiness probe failed"}]}

    def kubectl(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        body = pods if args[1] == "pods" else events
        return subprocess.CompletedProcess(list(args), 0, json.dumps(body), "")

    (tmp_path / "kubelet-worker-1.log").write_text("".join(f"line {i}\n" for i in range(100)))
    (tmp_path / "kubelet-worker-2.log").write_text("not this node\n")
    report = cluster_report.describe_pods(kubectl, ["web", "gone"], logs=tmp_path)
    assert "node=worker-1 phase=Pending" in report
    assert "condition Ready=False reason=ContainersNotReady" in report
    assert "event Warning Unhealthy: Readiness probe failed" in report
    assert "pod default/gone: not found" in report
    assert "line 99" in report and "line 69" not in report  # the tail only
    assert "not this node" not in report
