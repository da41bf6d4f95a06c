"""Issue 12 part 2 on a whole cluster, through real kubectl 1.27 and 1.33: a DaemonSet on every worker and its
rollout history and undo, a StatefulSet's ordered, stable pods behind a headless Service, and a CronJob's
Job made at once with `kubectl create job --from`.

The `*/1 * * * *` CronJob on the real clock rides along in tests/e2e/test_scenarios.py (tests/cronjob_clock.py),
a module that runs long enough to hide most of the minute: here it cost a 14 s module 30 s on average.

The two kubectl versions share the work instead of doubling it: every read (rollout status and history,
get -o wide, describe) is asked of both, and the writes (set env, undo, create job --from) are split
between them, so no rollout is run twice."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cronjob_clock import SCHEDULED
from tests.e2e.test_cluster import AGNHOST, REPO, Cluster
from tests.e2e.test_kubectl_apply import VERSIONS, require_kubectl

NAME = "e2e"  # test_cluster's Cluster helper targets this name
PROBE = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for version in VERSIONS:
        require_kubectl(version)  # Cluster.kubectl(version=...) runs it; without it CI fails here, not later
    c = Cluster(tmp_path_factory.mktemp("state"))
    c.kubesim("up", str(REPO / "topologies" / "two-node.yaml"), "--name", NAME)
    try:
        yield c
    finally:
        c.kubesim("down", check=False)


def netexec(env: str = "1") -> dict[str, Any]:
    return {"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
            "env": [{"name": "VERSION", "value": env}], "readinessProbe": PROBE}


def pods(cluster: Cluster, selector: str) -> list[dict[str, Any]]:
    listed = json.loads(cluster.kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    return [p for p in listed if not p["metadata"].get("deletionTimestamp")]


def ready_since(pod: dict[str, Any]) -> str | None:
    cond = next((c for c in (pod.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready" and c.get("status") == "True"), None)
    return None if cond is None else str(cond["lastTransitionTime"])


def test_daemon_set_on_every_worker_history_and_undo(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                   "spec": {"selector": {"matchLabels": {"app": "agent"}},
                            "template": {"metadata": {"labels": {"app": "agent"}},
                                         "spec": {"containers": [netexec("1")]}}}})
    cluster.kubectl("rollout", "status", "daemonset/agent", "--timeout=60s", version="1.27")
    running = pods(cluster, "app=agent")
    # One Ready pod on each worker, none on the tainted control plane; bound by the scheduler to the node
    # the DaemonSet pinned it to.
    assert sorted(p["spec"]["nodeName"] for p in running) == ["worker-1", "worker-2"]
    assert all(ready_since(p) for p in running)
    for p in running:
        terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [p["spec"]["nodeName"]]
    for version in VERSIONS:
        wide = cluster.kubectl("get", "ds", "agent", "-o", "wide", version=version).stdout.splitlines()
        assert wide[0].split()[:6] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE"], version
        assert wide[1].split()[:6] == ["agent", "2", "2", "2", "2", "2"], version
    cluster.kubectl("set", "env", "daemonset/agent", "VERSION=2", version="1.27")
    cluster.kubectl("rollout", "status", "daemonset/agent", "--timeout=90s")
    for version in VERSIONS:
        history = cluster.kubectl("rollout", "history", "daemonset/agent", version=version).stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"], version
        assert re.search(r"VERSION:\s+2\n", cluster.kubectl("rollout", "history", "daemonset/agent",
                                                              "--revision=2", version=version).stdout), version
    assert "rolled back" in cluster.kubectl("rollout", "undo", "daemonset/agent", version="1.27").stdout
    cluster.kubectl("rollout", "status", "daemonset/agent", "--timeout=90s", version="1.27")
    envs = {e["value"] for p in pods(cluster, "app=agent") for e in p["spec"]["containers"][0]["env"]}
    assert envs == {"1"}
    revisions = json.loads(cluster.kubectl("get", "controllerrevisions", "-l", "app=agent", "-o", "json").stdout)
    assert sorted(r["revision"] for r in revisions["items"]) == [2, 3]  # revision 1 came back as 3
    for version in VERSIONS:
        described = cluster.kubectl("describe", "ds", "agent", version=version).stdout
        assert "Desired Number of Nodes Scheduled: 2" in described, version
    cluster.kubectl("delete", "ds", "agent")
    cluster.wait(lambda: not pods(cluster, "app=agent"), 60, "the DaemonSet's pods collected")


def test_stateful_set_ordered_stable_names_behind_a_headless_service(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]}},
                  {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
                   "spec": {"replicas": 2, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [netexec()]}}}})
    cluster.kubectl("rollout", "status", "statefulset/web", "--timeout=90s", version="1.27")
    by_name = {p["metadata"]["name"]: p for p in pods(cluster, "app=web")}
    assert sorted(by_name) == ["web-0", "web-1"]
    # OrderedReady: web-1 was made only once web-0 was Ready (timestamps are whole seconds, hence <=).
    web0_ready = ready_since(by_name["web-0"])
    assert web0_ready is not None and web0_ready <= by_name["web-1"]["metadata"]["creationTimestamp"]
    assert (by_name["web-1"]["spec"]["hostname"], by_name["web-1"]["spec"]["subdomain"]) == ("web-1", "web")
    # The headless Service's endpoints name each pod: what DNS serves as web-N.web.<namespace>.svc.
    def hostnames() -> list[str]:
        slices = json.loads(cluster.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web",
                                            "-o", "json").stdout)["items"]
        return sorted(e.get("hostname", "") for s in slices for e in s.get("endpoints") or [])

    cluster.wait(lambda: hostnames() == ["web-0", "web-1"], 30, "endpoint hostnames")
    old_uid = by_name["web-0"]["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "web-0", "--wait=false")

    def web0_back() -> bool:
        got = {p["metadata"]["name"]: p for p in pods(cluster, "app=web")}
        return "web-0" in got and got["web-0"]["metadata"]["uid"] != old_uid and ready_since(got["web-0"]) is not None

    cluster.wait(web0_back, 60, "web-0 again under its own name", pods=("web-0",))
    for version in VERSIONS:
        row = cluster.kubectl("get", "sts", "web", "-o", "wide", version=version).stdout.splitlines()[1]
        assert row.split()[:2] == ["web", "2/2"], version
    # A rolling update (web-1 first, then web-0), its history, and undo.
    cluster.kubectl("set", "env", "statefulset/web", "VERSION=2")
    cluster.kubectl("rollout", "status", "statefulset/web", "--timeout=90s")
    assert {e["value"] for p in pods(cluster, "app=web") for e in p["spec"]["containers"][0]["env"]} == {"2"}
    for version in VERSIONS:
        history = cluster.kubectl("rollout", "history", "statefulset/web", version=version).stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"], version
    assert "rolled back" in cluster.kubectl("rollout", "undo", "statefulset/web").stdout
    cluster.kubectl("rollout", "status", "statefulset/web", "--timeout=90s")
    assert {e["value"] for p in pods(cluster, "app=web") for e in p["spec"]["containers"][0]["env"]} == {"1"}
    for version in VERSIONS:
        listed = cluster.kubectl("get", "ds,sts,cronjob", "-o", "wide", version=version).stdout
        described = cluster.kubectl("describe", "sts", "web", version=version).stdout
        assert "statefulset.apps/web" in listed and "Replicas:" in described, version
    cluster.kubectl("delete", "sts", "web")
    cluster.kubectl("delete", "svc", "web")


def test_cron_job_makes_a_job(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
                   "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                       "restartPolicy": "Never",
                       "containers": [{"name": "work", "image": "busybox", "command": ["sh", "-c", "echo tick"]}]}}}}}})
    jobs = {version: f"tick-now-{version.replace('.', '-')}" for version in VERSIONS}
    for version, job_name in jobs.items():
        bad = cluster.kubectl("create", "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *", check=False,
                              version=version)
        assert bad.returncode != 0 and "spec.schedule" in bad.stderr, version
        cluster.kubectl("create", "job", "--from=cronjob/tick", job_name, version=version)
    for version, job_name in jobs.items():
        cluster.kubectl("wait", "--for=condition=complete", f"job/{job_name}", "--timeout=60s", version=version)
        assert cluster.kubectl("logs", f"job/{job_name}", version=version).stdout == "tick\n", version
        job = cluster.get("job", job_name)
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        # made by hand: no scheduled time, so the CronJob does not count it as one of its runs
        assert SCHEDULED not in (job["metadata"].get("annotations") or {})
        row = cluster.kubectl("get", "cronjob", "tick", "-o", "wide", version=version).stdout.splitlines()
        assert row[0].split()[:4] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND"], version
        assert row[1].split()[:8] == ["tick", "*/1", "*", "*", "*", "*", "<none>", "False"], version
    resources = cluster.kubectl("api-resources", "--api-group=apps").stdout
    assert all(name in resources for name in ("daemonsets", "statefulsets", "controllerrevisions"))
    assert "cronjobs" in cluster.kubectl("api-resources", "--api-group=batch").stdout
    cluster.kubectl("delete", "cronjob", "tick")


def test_api_services_listed_with_the_metrics_server_available(cluster: Cluster) -> None:
    """Placed before the minute's wait, which absorbs this one's: the metrics-server (the controller-manager's)
    starts after the apiserver, whose discovery check of it runs every 10 s."""
    def rows(version: str) -> dict[str, list[str]]:
        lines = cluster.kubectl("get", "apiservices", version=version).stdout.splitlines()
        assert lines[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"], version
        return {line.split()[0]: line.split()[1:3] for line in lines[1:]}

    cluster.wait(lambda: rows("1.33").get("v1beta1.metrics.k8s.io") == ["kube-system/metrics-server", "True"],
                 60, "the metrics APIService Available")
    for version in VERSIONS:
        listed = rows(version)
        assert all(listed[name] == ["Local", "True"] for name in ("v1.", "v1.apps", "v1.batch")), listed
        assert listed["v1beta1.metrics.k8s.io"] == ["kube-system/metrics-server", "True"], version
