"""A pod status write that fails is retried until it lands, with no later change needed to carry it.

Before this was fixed, a pause pod (ready as soon as it starts, no probes, nothing else ever changes)
whose one status write met a busy apiserver stayed not-Ready in the API for good.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from control.client import ApiConnectionError
from control.kubelet import agent
from control.kubelet.agent import NodeConfig, PodWorker
from control.kubelet.objects import SharedReads


class FlakyApiserver:
    """Answers status patches, failing the first `failures` of them as a busy apiserver would."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[dict[str, Any]] = []
        self.landed = asyncio.Event()

    async def patch(self, resource: Any, name: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self.failures > 0:
            self.failures -= 1
            raise ApiConnectionError(f"PATCH pods/{name}/status: timed out")
        self.written.append(body["status"])
        self.landed.set()
        return {"metadata": {"name": name, "namespace": "default", "uid": "u1"}, "status": body["status"]}


def _worker(apiserver: FlakyApiserver) -> PodWorker:
    kubelet = SimpleNamespace(client=apiserver, config=NodeConfig(name="worker-1", cluster="c", address="172.18.0.3",
                                                                 pod_cidr="10.244.1.0/24"),
                              shared_reads=SharedReads(time.monotonic, ttl=5.0))
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause"}]}}
    return PodWorker(kubelet, pod)  # type: ignore[arg-type]


@pytest.mark.parametrize("failures", [1, 3])
def test_a_failed_status_write_is_retried_until_it_lands(monkeypatch: pytest.MonkeyPatch, failures: int) -> None:
    monkeypatch.setattr(agent, "STATUS_RETRY_INITIAL", 0.01)
    apiserver = FlakyApiserver(failures)

    async def main() -> None:
        worker = _worker(apiserver)
        worker.phase = "Running"
        worker.containers["c"].waiting = None  # as if started: a container still waiting keeps the pod Pending
        # The one write the pod would ever make, failing before the status loop even runs (as in _setup).
        assert await worker._write_status() is False
        loop_task = asyncio.get_running_loop().create_task(worker._status_loop())
        try:
            await asyncio.wait_for(apiserver.landed.wait(), 10)
        finally:
            loop_task.cancel()

    asyncio.run(main())
    assert apiserver.failures == 0
    assert [s["phase"] for s in apiserver.written] == ["Running"]


def test_an_unchanged_status_is_not_written_again() -> None:
    apiserver = FlakyApiserver(0)

    async def main() -> None:
        worker = _worker(apiserver)
        assert await worker._write_status() is True
        assert await worker._write_status() is True

    asyncio.run(main())
    assert len(apiserver.written) == 1


def test_a_status_someone_else_changed_is_written_again() -> None:
    """The node lifecycle controller marks the pods of a node it cannot hear not Ready; once the node is
    back, its kubelet puts its own status back (the status manager's reconcile), and only then."""
    apiserver = FlakyApiserver(0)

    async def main() -> None:
        worker = _worker(apiserver)
        worker.phase = "Running"
        assert await worker._write_status() is True
        ours = apiserver.written[-1]
        worker.reconcile_status({"status": ours})  # the watch echoing our own write: nothing to do
        assert not worker.changed.is_set()
        foreign = {"type": "DisruptionTarget", "status": "True"}  # another component's condition: not ours
        worker.reconcile_status({"status": {**ours, "conditions": [*ours["conditions"], foreign]}})
        assert not worker.changed.is_set()
        flipped = {"True": "False", "False": "True"}
        marked = {**ours, "conditions": [{**c, "status": flipped[c["status"]]} if c["type"] == "Ready" else c
                                         for c in ours["conditions"]]}
        worker.reconcile_status({"status": marked})
        assert worker.changed.is_set()
        assert await worker._write_status() is True

    asyncio.run(main())
    assert len(apiserver.written) == 2
    assert apiserver.written[0] == apiserver.written[1]
