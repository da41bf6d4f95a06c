"""Real manifests on a whole (one-node) cluster through kubectl: a process container's environment from a
ConfigMap, a Secret and the downward API, read back with `kubectl logs`; a pod whose Secret key is
missing waits in CreateContainerConfigError until the key exists; Jobs (completions with parallelism,
Indexed) running process containers to completion."""

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
                "args": ['echo "mode=$MODE pass=$PASS pod=$POD_NAME tier=$CFG_tier greeting=$(MODE) '
                         'api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"'],
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
    # single-node.yaml's service CIDR is 10.97.0.0/16: the API server's ClusterIP is its first address.
    assert cluster.kubectl("logs", "echo").stdout == \
        "mode=fast pass=s3 pod=echo tier=web greeting=fast api=10.97.0.1:443\n"

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


def test_job_runs_pods_to_completion(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "count"},
                   "spec": {"completions": 3, "parallelism": 2, "template": {"spec": {
                       "restartPolicy": "Never",
                       "containers": [{"name": "work", "image": "busybox", "command": ["sh", "-c", "echo done"]}]}}}},
                  {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "shards"},
                   "spec": {"completions": 2, "parallelism": 2, "completionMode": "Indexed", "template": {"spec": {
                       "restartPolicy": "Never", "containers": [{
                           "name": "work", "image": "busybox",
                           "command": ["sh", "-c", "echo shard $JOB_COMPLETION_INDEX"]}]}}}})
    cluster.kubectl("wait", "--for=condition=complete", "job/count", "job/shards", "--timeout=60s")
    job = cluster.get("job", "count")
    assert job["status"]["succeeded"] == 3 and job["status"].get("active") is None
    assert job["status"]["startTime"] <= job["status"]["completionTime"]
    row = cluster.kubectl("get", "job", "count").stdout.splitlines()
    assert row[0].split()[:3] == ["NAME", "STATUS", "COMPLETIONS"] and row[1].split()[1:3] == ["Complete", "3/3"]
    assert cluster.kubectl("get", "job", "count", version="1.27").stdout.splitlines()[1].split()[1:3] == \
        ["Complete", "3/3"]
    listed = json.loads(cluster.kubectl("get", "pods", "-l", "batch.kubernetes.io/job-name=count",
                                        "-o", "json").stdout)["items"]
    assert len(listed) == 3 and {p["status"]["phase"] for p in listed} == {"Succeeded"}
    assert cluster.kubectl("logs", listed[0]["metadata"]["name"]).stdout == "done\n"
    assert cluster.kubectl("logs", "job/count").stdout == "done\n"  # kubectl finds a pod by the Job's selector
    assert cluster.get("job", "shards")["status"]["completedIndexes"] == "0-1"
    shards = json.loads(cluster.kubectl("get", "pods", "-l", "batch.kubernetes.io/job-name=shards",
                                        "-o", "json").stdout)["items"]
    shard_logs = {cluster.kubectl("logs", p["metadata"]["name"]).stdout for p in shards}
    assert shard_logs == {"shard 0\n", "shard 1\n"}
    cluster.kubectl("delete", "job", "count", "shards")
