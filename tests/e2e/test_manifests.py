"""Real manifests on a whole (one-node) cluster through kubectl: a process container's environment from a
ConfigMap, a Secret and the downward API, read back with `kubectl logs`; a pod whose Secret key is
missing waits in CreateContainerConfigError until the key exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_cluster import REPO, Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("state"))
    c.kubesim("up", str(REPO / "topologies" / "single-node.yaml"), "--name", "e2e")
    try:
        yield c
    finally:
        c.kubesim("down", check=False)


def echo_pod(name: str, secret_key: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "echo", "image": "busybox", "command": ["sh", "-c"],
                "args": ['echo "mode=$MODE pass=$PASS pod=$POD_NAME tier=$CFG_tier greeting=$(MODE)"'],
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "app"}}],
                "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}},
                        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": secret_key}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}


def phase(cluster: Cluster, pod: str) -> str:
    return str(cluster.get("pod", pod).get("status", {}).get("phase"))


def test_env_from_config_map_secret_and_downward_api(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
                   "data": {"mode": "fast", "tier": "web"}},
                  {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "s3"}},
                  echo_pod("echo", "password"), echo_pod("held", "token"))
    cluster.wait(lambda: phase(cluster, "echo") == "Succeeded", 60, "echo Succeeded", pods=("echo",))
    assert cluster.kubectl("logs", "echo").stdout == "mode=fast pass=s3 pod=echo tier=web greeting=fast\n"

    def waiting() -> dict[str, Any]:
        statuses = cluster.get("pod", "held").get("status", {}).get("containerStatuses") or [{}]
        return dict(statuses[0].get("state", {}).get("waiting") or {})

    cluster.wait(lambda: waiting().get("reason") == "CreateContainerConfigError", 60, "held back", pods=("held",))
    assert waiting()["message"] == "couldn't find key token in Secret default/db"
    assert phase(cluster, "held") == "Pending"
    assert "CreateContainerConfigError" in cluster.kubectl("get", "pod", "held").stdout
    cluster.kubectl("patch", "secret", "db", "-p", json.dumps({"stringData": {"token": "t0k"}}))
    cluster.wait(lambda: phase(cluster, "held") == "Succeeded", 60, "held Succeeded", pods=("held",))
    assert "pass=t0k" in cluster.kubectl("logs", "held").stdout
