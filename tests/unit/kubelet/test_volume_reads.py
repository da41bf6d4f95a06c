"""A pod's volume objects and tokens are read at once, through the node's shared reads."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from control.client import ApiConnectionError
from control.kubelet.agent import NodeConfig, PodWorker
from control.kubelet.clock import SystemClock
from control.kubelet.objects import SharedReads
from control.kubelet.volumes import VolumeError


class Apiserver:
    """Answers a ConfigMap GET and a TokenRequest only once both are asked for: read one after the other, a
    pod's volumes would never be ready (the test times out)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.asked: set[str] = set()
        self.both = asyncio.Event()
        self.fail = fail

    def _ask(self, what: str) -> None:
        self.asked.add(what)
        if self.asked >= {"get", "token"}:
            self.both.set()

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        self._ask("get")
        await self.both.wait()
        if self.fail:
            raise ApiConnectionError(f"GET configmaps/{name}: timed out")
        return {"metadata": {"name": name, "namespace": namespace}, "data": {"ca.crt": "CA"}}

    async def create(self, resource: Any, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self._ask("token")
        await self.both.wait()
        return {"status": {"token": "the-token"}}


def _worker(apiserver: Apiserver, tmp_path: Path) -> PodWorker:
    kubelet = SimpleNamespace(client=apiserver, clock=SystemClock(),
                              config=NodeConfig(name="worker-1", cluster="c", address="172.18.0.3",
                                                pod_cidr="10.244.1.0/24", state_dir=tmp_path),
                              shared_reads=SharedReads(time.monotonic, ttl=5.0))
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause",
                                    "volumeMounts": [{"name": "api", "mountPath": "/var/run/secrets/api"}]}],
                    "volumes": [{"name": "api", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    ]}}]}}
    return PodWorker(kubelet, pod)  # type: ignore[arg-type]


def test_the_objects_and_tokens_of_a_pod_are_read_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        worker = _worker(Apiserver(), tmp_path)
        plan = await asyncio.wait_for(worker._volume_plan(worker.registered), timeout=5)
        files = {name: data for payload in plan.payloads.values() for name, (data, _) in payload.items()}
        assert files["token"] == b"the-token" and files["ca.crt"] == b"CA"

    asyncio.run(main())


def test_a_failed_read_is_a_volume_error_naming_the_object(tmp_path: Path) -> None:
    async def main() -> None:
        worker = _worker(Apiserver(fail=True), tmp_path)
        with pytest.raises(VolumeError, match=r"failed to read configmap default/kube-root-ca\.crt"):
            await asyncio.wait_for(worker._volume_plan(worker.registered), timeout=5)

    asyncio.run(main())
