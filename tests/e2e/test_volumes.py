"""Pod volumes and ServiceAccount tokens on a whole cluster (topologies/two-node.yaml): a Secret, a
ConfigMap (then updated), an emptyDir shared by two containers and downwardAPI labels, seen by process
containers; a pod whose volume names a missing ConfigMap waits in ContainerCreating until it exists; a pod
uses its projected ServiceAccount token against the apiserver's ClusterIP (curl and the Python client's
in-cluster config), refused (403) until a RoleBinding grants it; a forged, an expired and an unbound token
are 401; kubectl run inside a pod uses the same token through its in-cluster config. Persistent storage as
kind ships it: a claim of the default class `standard` is provisioned on the node its first pod is
scheduled to, keeps a file across pods and goes with its volume and directory when deleted; a pod naming
a missing claim is not scheduled until the claim exists; a StatefulSet's pods each get their own claim,
and a pod made again reads what it wrote; `kubectl get pv,pvc,sc` prints upstream's columns."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from control.kubelet.logs import read_container_log
from kubesim.testing import Cluster
from netsim import namespaces
from tests.conftest import require_tool, unavailable
from tests.e2e.test_kubectl_apply import SDK_BIN, VERSIONS, _kubectl_binary, kubectl_runner, require_kubectl
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CURL_PODS = (f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {SA_DIR}/ca.crt "
             f"-H \"Authorization: Bearer $(cat {SA_DIR}/token)\" "
             "https://kubernetes.default.svc/api/v1/namespaces/$(cat " + SA_DIR + "/namespace)/pods")


def sh(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def in_pod(cluster: Cluster, pod: str, script: str, namespace: str = "default") -> subprocess.CompletedProcess[str]:
    """SCRIPT run as `kubectl exec` runs it: inside the pod's namespaces (they share one mount namespace)."""
    target = cluster.namespace_of(pod if namespace == "default" else f"{namespace}/{pod}")
    line = namespaces.command_in(target, ["sh", "-c", script], uts=True, mnt=True)
    return subprocess.run(line, capture_output=True, text=True, timeout=30, check=False)


def manifests() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "data": {"x": base64.b64encode(b"s3cret").decode(), "unused": base64.b64encode(b"no").decode()}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "one"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vol", "labels": {"app": "vol", "tier": "db"}},
         "spec": {
             "nodeName": "worker-1",
             "volumes": [
                 {"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "x", "path": "x"}]}},
                 {"name": "settings", "configMap": {"name": "settings"}},
                 {"name": "shared", "emptyDir": {}},
                 {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                 {"name": "info", "downwardAPI": {"items": [
                     {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
             ],
             "containers": [
                 sh("reader", "cat /etc/secret/x; echo; cat /etc/podinfo/labels; echo; "
                    "until [ -f /mnt/shared/msg ]; do sleep 0.2; done; cat /mnt/shared/msg; exec sleep 3600",
                    volumeMounts=[{"name": "creds", "mountPath": "/etc/secret"},
                                  {"name": "settings", "mountPath": "/etc/settings"},
                                  {"name": "info", "mountPath": "/etc/podinfo"},
                                  {"name": "shared", "mountPath": "/mnt/shared"}]),
                 sh("writer", "echo from-writer > /mnt/shared/msg; exec sleep 3600",
                    volumeMounts=[{"name": "shared", "mountPath": "/mnt/shared"},
                                  {"name": "scratch", "mountPath": "/mnt/scratch"}]),
             ]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits"}, "spec": {
            "nodeName": "worker-2",
            "volumes": [{"name": "later", "configMap": {"name": "later"}}],
            # the echo ends the line: like containerd, the runtime stores a line once its newline comes
            "containers": [sh("c", "cat /etc/later/k; echo; exec sleep 3600",
                              volumeMounts=[{"name": "later", "mountPath": "/etc/later"}])]}},
        # kube-system's coredns ServiceAccount may list pods (system:coredns); default's may not.
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api", "namespace": "kube-system"}, "spec": {
            "nodeName": "worker-2", "serviceAccountName": "coredns",
            "containers": [sh("c", "env | grep ^KUBERNETES_SERVICE_ | sort; exec sleep 3600")]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"}, "spec": {
            "nodeName": "worker-1", "containers": [sh("c", "exec sleep 3600")]}},

    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_tool("curl", install="apt-get install curl")
    c = Cluster.up(REPO / "topologies" / "two-node.yaml", name="volumes", root=tmp_path_factory.mktemp("state"))
    try:
        c.apply(*manifests())
        c.wait_ready("app=vol", count=1)
        yield c
    finally:
        c.down()


def log_of(cluster: Cluster, pod: str, container: str, lines: int, namespace: str = "default") -> list[str]:
    meta = cluster.get("pod", pod, namespace=namespace)
    node, uid = meta["spec"]["nodeName"], meta["metadata"]["uid"]
    pod_dir = cluster.state.dir / "kubelet" / node / "pods" / f"{namespace}_{pod}_{uid}"

    def complete() -> list[str] | None:
        # the runtime stores lines in CRI's log format; the kubelet's reader gives back what was written
        text = read_container_log(pod_dir, container, None).decode().splitlines()
        return text if len(text) >= lines else None

    found: list[str] = eventually(complete, timeout=30, interval=0.2, message=f"{lines} lines of {pod}/{container}")
    return found


def test_secret_downward_api_and_a_shared_empty_dir_in_process_containers(cluster: Cluster) -> None:
    assert log_of(cluster, "vol", "reader", 4) == ["s3cret", 'app="vol"', 'tier="db"', "from-writer"]
    # items: only the key asked for; the volume is read-only to the container
    assert in_pod(cluster, "vol", "ls /etc/secret").stdout.split() == ["x"]
    done = in_pod(cluster, "vol", "echo no > /etc/secret/y")
    assert done.returncode != 0 and "Read-only" in done.stderr
    # medium Memory: a tmpfs of its own, sized by sizeLimit
    assert in_pod(cluster, "vol", "grep ' /mnt/scratch ' /proc/mounts").stdout.split()[2] == "tmpfs"
    # the machine's own directories are untouched by the mount points the pod made
    assert not Path("/etc/secret").exists() and not Path("/mnt/shared").exists()


def test_a_configmap_update_reaches_the_mounted_volume(cluster: Cluster) -> None:
    assert in_pod(cluster, "vol", "cat /etc/settings/mode").stdout == "one"
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                   "data": {"mode": "two", "extra": "e"}})

    def updated() -> str | None:
        out = in_pod(cluster, "vol", "cat /etc/settings/mode /etc/settings/extra").stdout
        return out if out == "twoe" else None

    eventually(updated, timeout=30, interval=0.5, message="the updated ConfigMap in the pod")
    assert in_pod(cluster, "vol", "readlink /etc/settings/..data").stdout.startswith("..")


def test_a_pod_waits_in_container_creating_for_a_missing_configmap(cluster: Cluster) -> None:
    def failed_mount() -> list[dict[str, Any]] | None:
        events = [e for e in cluster.objects("event") if e["involvedObject"].get("name") == "waits"
                  and e.get("reason") == "FailedMount"]
        return events or None

    events = eventually(failed_mount, timeout=30, interval=0.5, message="a FailedMount event for pod waits")
    assert 'MountVolume.SetUp failed for volume "later" : configmap "later" not found' in events[0]["message"]
    status = cluster.get("pod", "waits")["status"]
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}, "data": {"k": "here"}})
    eventually(lambda: cluster.get("pod", "waits")["status"].get("phase") == "Running" or None, timeout=60,
               interval=0.5, message="pod waits Running once its ConfigMap exists")
    assert log_of(cluster, "waits", "c", 1) == ["here"]


def _api(cluster: Cluster, path: str, token: str) -> int:
    server = cluster.topology.control_plane.address
    context = ssl.create_default_context(cafile=str(cluster.state.dir / "pki" / "ca.crt"))
    request = urllib.request.Request(f"https://{server}:6443{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_pod_lists_pods_with_its_service_account_token(cluster: Cluster) -> None:
    eventually(lambda: cluster.get("pod", "api", namespace="kube-system")["status"].get("phase") == "Running" or None,
               timeout=60, interval=0.5, message="pod kube-system/api Running")
    files = in_pod(cluster, "api", f"ls {SA_DIR}", namespace="kube-system").stdout.split()
    assert files == ["ca.crt", "namespace", "token"]
    # curl with the mounted token, CA and namespace, through the kubernetes Service's ClusterIP
    assert in_pod(cluster, "api", CURL_PODS, namespace="kube-system").stdout == "200"
    # the Python client's in-cluster config: KUBERNETES_SERVICE_HOST/PORT from the container's environment
    script = ("from kubernetes import client, config; config.load_incluster_config(); "
              "print(sorted(p.metadata.name for p in client.CoreV1Api().list_namespaced_pod('kube-system').items))")
    # what the container was started with (the kubelet's service variables of default/kubernetes)
    printed = log_of(cluster, "api", "c", 3, namespace="kube-system")
    assert printed == ["KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
                       "KUBERNETES_SERVICE_PORT_HTTPS=443"]
    env = "export " + " ".join(printed) + "; "
    done = in_pod(cluster, "api", f"{env}{sys.executable} -c \"{script}\"", namespace="kube-system")
    assert done.returncode == 0, done.stderr
    assert "'api'" in done.stdout
    # kubectl inside the pod, with no kubeconfig: its in-cluster config (the token, the CA, and the
    # namespace file for its default namespace)
    for version in ("1.27", "1.30", "1.33"):
        kubectl = _kubectl_binary(version)
        if kubectl is None:
            unavailable(f"kubectl.{version} not found (in KUBESIM_KUBECTL_DIR, {SDK_BIN} or on PATH)")
        done = in_pod(cluster, "api", f"env -i PATH=/usr/bin:/bin HOME=/nonexistent {' '.join(printed)} "
                      f"{kubectl} get pods -o name", namespace="kube-system")
        assert done.returncode == 0, f"kubectl {version} in the pod: {done.stderr}"
        assert "pod/api" in done.stdout.split(), done.stdout
    # default's ServiceAccount is authenticated as itself, and the authorizer refuses it
    assert in_pod(cluster, "plain", CURL_PODS).stdout == "403"
    body = in_pod(cluster, "plain", CURL_PODS.replace("-o /dev/null -w '%{http_code}' ", "")).stdout
    assert 'User "system:serviceaccount:default:default" cannot list resource "pods"' in json.loads(body)["message"]
    # a RoleBinding to the view ClusterRole lets it list the pods of its namespace
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "default-view"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]})
    eventually(lambda: in_pod(cluster, "plain", CURL_PODS).stdout == "200" or None, timeout=30, interval=0.5,
               message="default's ServiceAccount listing pods once bound to view")


def test_forged_expired_and_unbound_tokens_are_refused(cluster: Cluster) -> None:
    token = in_pod(cluster, "api", f"cat {SA_DIR}/token", namespace="kube-system").stdout
    assert _api(cluster, "/api/v1/namespaces/kube-system/pods", token) == 200
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:kube-system:coredns"
    assert claims["kubernetes.io"]["pod"]["name"] == "api"
    forged = jwt.encode(claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256")
    assert _api(cluster, "/api/v1/namespaces/kube-system/pods", forged) == 401
    key = (cluster.state.dir / "pki" / "sa.key").read_bytes()
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 60}, key, algorithm="RS256")
    assert _api(cluster, "/api/v1/namespaces/kube-system/pods", expired) == 401
    # bound to the pod: once it is gone, its token no longer authenticates
    plain_token = in_pod(cluster, "plain", f"cat {SA_DIR}/token").stdout
    assert _api(cluster, "/api/v1/namespaces/default/pods", plain_token) == 200
    cluster.delete("pod", "plain")
    eventually(lambda: _api(cluster, "/api/v1/namespaces/default/pods", plain_token) == 401 or None, timeout=30,
               interval=0.5, message="the deleted pod's token refused")


# -- persistent storage ----------------------------------------------------------------------------------------

def claim_pod(name: str, claim: str, script: str) -> dict[str, Any]:
    """A pod the scheduler places (no nodeName), its claim mounted at /mnt/data."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        "containers": [sh("c", script, volumeMounts=[{"name": "data", "mountPath": "/mnt/data"}])]}}


def _gone(cluster: Cluster, kind: str, name: str) -> bool | None:
    from control.client import NotFound

    try:
        cluster.get(kind, name)
    except NotFound:
        return True
    return None


def test_a_claims_file_outlives_its_pod_and_goes_with_the_claim(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "notes"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}},
                  claim_pod("writer", "notes", "echo kept-across-pods > /mnt/data/note; exec sleep 3600"))
    (writer,) = cluster.wait_ready("app=writer", count=1)
    node = writer["spec"]["nodeName"]
    claim = cluster.get("pvc", "notes")
    assert claim["spec"]["storageClassName"] == "standard"  # the default class
    assert claim["status"]["phase"] == "Bound"
    assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
    volume = cluster.get("pv", claim["spec"]["volumeName"])
    directory = cluster.state.dir / "volumes" / node / f"{volume['metadata']['name']}_default_notes"
    assert volume["spec"]["hostPath"]["path"] == str(directory)
    assert (directory / "note").read_text() == "kept-across-pods\n"
    cluster.delete("pod", "writer")
    eventually(lambda: _gone(cluster, "pod", "writer"), timeout=30, message="writer gone")
    cluster.apply(claim_pod("reader", "notes", "cat /mnt/data/note; exec sleep 3600"))
    (reader,) = cluster.wait_ready("app=reader", count=1)
    assert reader["spec"]["nodeName"] == node  # the volume's node affinity
    assert log_of(cluster, "reader", "c", 1) == ["kept-across-pods"]
    # Reclaim Delete: once the claim is deleted (and its pod gone), the volume and its directory go.
    cluster.delete("pod", "reader")
    cluster.delete("pvc", "notes")
    eventually(lambda: _gone(cluster, "pv", volume["metadata"]["name"]), timeout=30, message="the volume deleted")
    assert not directory.exists()


def _events(cluster: Cluster, name: str, reason: str) -> list[str] | None:
    found = [e["message"] for e in cluster.objects("events")
             if e["involvedObject"].get("name") == name and e["reason"] == reason]
    return found or None


def test_a_pod_waits_for_a_missing_claim(cluster: Cluster) -> None:
    cluster.apply(claim_pod("patient", "later", "echo started; exec sleep 3600"))
    messages = eventually(lambda: _events(cluster, "patient", "FailedScheduling"), timeout=30,
                          message="FailedScheduling for the missing claim")
    assert messages[0].startswith('0/3 nodes are available: persistentvolumeclaim "later" not found.')
    assert not cluster.get("pod", "patient")["spec"].get("nodeName")
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "later"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}})
    cluster.wait_ready("app=patient", count=1)
    cluster.delete("pod", "patient")


def test_stateful_set_pods_keep_their_own_claims(cluster: Cluster) -> None:
    script = "[ -f /mnt/data/who ] || hostname > /mnt/data/who; cat /mnt/data/who; exec sleep 3600"
    cluster.apply({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"}, "spec": {
        "replicas": 2, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
        "podManagementPolicy": "Parallel",  # both pods at once: the claims, not the ordering, are tested here
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            sh("c", script, volumeMounts=[{"name": "www", "mountPath": "/mnt/data"}])]}},
        "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}}]}})
    cluster.wait_ready("app=web", count=2, timeout=90)
    claims = {name: cluster.get("pvc", name) for name in ("www-web-0", "www-web-1")}
    assert all(c["status"]["phase"] == "Bound" for c in claims.values())
    assert claims["www-web-0"]["spec"]["volumeName"] != claims["www-web-1"]["spec"]["volumeName"]
    assert in_pod(cluster, "web-0", "echo before > /mnt/data/mark; cat /mnt/data/who").stdout == "web-0\n"
    old = cluster.get("pod", "web-0")["metadata"]["uid"]
    cluster.delete("pod", "web-0")

    def again() -> bool | None:
        fresh = [p for p in cluster.objects("pods", "app=web") if p["metadata"]["name"] == "web-0"
                 and p["metadata"]["uid"] != old and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                         for c in (p.get("status") or {}).get("conditions") or [])]
        return True if fresh else None

    eventually(again, timeout=60, message="web-0 made again")
    assert in_pod(cluster, "web-0", "cat /mnt/data/mark /mnt/data/who").stdout == "before\nweb-0\n"
    assert cluster.get("pvc", "www-web-0")["metadata"]["uid"] == claims["www-web-0"]["metadata"]["uid"]
    # kubectl's columns, from the server's tables: the same with the oldest and newest kubectl
    for version in VERSIONS:
        home = cluster.state.dir / f"kubectl-home-{version}"
        home.mkdir(exist_ok=True)
        kubectl = kubectl_runner(require_kubectl(version), cluster.kubeconfig, home)
        lines = kubectl("get", "pv,pvc,sc").stdout.splitlines()
        headers = [" ".join(line.split()) for line in lines if line.startswith("NAME")]
        assert headers == [
            "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE",
            "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE",
            "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE"], version
        rows = [line.split() for line in lines]
        web0 = claims["www-web-0"]["spec"]["volumeName"]
        assert [f"persistentvolume/{web0}", "64Mi", "RWO", "Delete", "Bound", "default/www-web-0", "standard",
                "<unset>"] in [r[:8] for r in rows], version
        assert ["persistentvolumeclaim/www-web-0", "Bound", web0, "64Mi", "RWO", "standard", "<unset>"] in \
            [r[:7] for r in rows], version
        assert ["storageclass.storage.k8s.io/standard", "(default)", "rancher.io/local-path", "Delete",
                "WaitForFirstConsumer", "false"] in [r[:6] for r in rows], version
