"""Unmodified kubectl (the oldest and newest versions we support) against the real apiserver process over
HTTPS, with kubectl's default validation: `apply -f` creates, then patches (not replaces) on a second
apply, `get -o wide`, `scale`, `delete`, and the OpenAPI documents kubectl reads.

kubectl 1.27/1.28 read /openapi/v2 as protobuf for apply's validation; 1.29+ read /openapi/v3 (JSON).
The versioned binaries are looked up as `kubectl.<version>` on PATH, in $KUBESIM_KUBECTL_DIR, then in
the Google Cloud SDK's bin directory, where its Debian package installs them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from control.apiserver.auth import write_token_file
from control.apiserver.certs import make_certificates
from tests.conftest import unavailable
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
VERSIONS = ("1.27", "1.33")
SDK_BIN = Path("/usr/lib/google-cloud-sdk/bin")
TOKEN = "e2e-admin-token"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _kubectl_binary(version: str) -> str | None:
    name = f"kubectl.{version}"
    for directory in (os.environ.get("KUBESIM_KUBECTL_DIR"), str(SDK_BIN)):
        if directory and (Path(directory) / name).is_file():
            return str(Path(directory) / name)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(url: str, ca: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca))

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the apiserver exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(ready, timeout=30, interval=0.1, message="the apiserver ready", describe=log.read_text)


@contextlib.contextmanager
def apiserver_process(root: Path, port: int) -> Iterator[None]:
    """The real apiserver (`python -m control.apiserver`, SQLite) on 127.0.0.1:PORT with ROOT's
    certificates and tokens.csv, ready, until the block ends (its log in ROOT/apiserver.log)."""
    log = root / "apiserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "control.apiserver", "--store", f"sqlite:///{root}/store.db",
             "--bind-address", "127.0.0.1", "--secure-port", str(port), "--advertise-address", "127.0.0.1",
             "--tls-cert-file", str(root / "apiserver.crt"), "--tls-private-key-file", str(root / "apiserver.key"),
             "--token-auth-file", str(root / "tokens.csv")], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"https://127.0.0.1:{port}", root / "ca.crt", process, log)
        yield
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def users_apiserver(root: Path, users: dict[str, tuple[str, str, tuple[str, ...]]]) -> Iterator[dict[str, Path]]:
    """A real apiserver process on a free loopback port whose static token file holds USERS
    (who -> (token, user name, groups)); yields a kubeconfig per user while it runs."""
    port = _free_port()
    make_certificates(root, addresses=["127.0.0.1"])
    write_token_file(root / "tokens.csv", list(users.values()))
    kubeconfigs = {}
    for who, (token, _, _) in users.items():
        kubeconfigs[who] = root / f"{who}.kubeconfig"
        kubeconfigs[who].write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                     "certificate-authority": str(root / "ca.crt")}}],
            "users": [{"name": who, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": who}}]}))
    with apiserver_process(root, port):
        yield kubeconfigs


def require_kubectl(version: str) -> str:
    """kubectl VERSION's binary; without it the test is unavailable (which fails it in CI)."""
    binary = _kubectl_binary(version)
    if binary is None:
        unavailable(f"kubectl.{version} not found (in KUBESIM_KUBECTL_DIR, {SDK_BIN} or on PATH)")
    return binary


def kubectl_runner(binary: str, kubeconfig: Path, home: Path) -> Kubectl:
    """kubectl BINARY as the user of KUBECONFIG, with its own HOME and cache; raises on failure unless check=False."""
    env = {"KUBECONFIG": str(kubeconfig), "HOME": str(home), "PATH": "/usr/bin:/bin"}

    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([binary, "--cache-dir", str(home / "cache"), *args], capture_output=True, text=True,
                              env=env, input=stdin, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    return run


def versioned_kubectl(version: str, kubeconfig: Path, home: Path) -> Kubectl:
    """kubectl_runner for kubectl VERSION (required), which also says its version, binary and kubeconfig
    (run.version, run.binary, run.kubeconfig): what the apiserver-only modules' kubectl fixtures give."""
    binary = require_kubectl(version)
    run = kubectl_runner(binary, kubeconfig, home)
    run.version = version  # type: ignore[attr-defined]
    run.binary = binary  # type: ignore[attr-defined]
    run.kubeconfig = kubeconfig  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real `python -m control.apiserver` on a free loopback port; yields the kubeconfig's path."""
    root = tmp_path_factory.mktemp("apiserver")
    port = _free_port()
    make_certificates(root, addresses=["127.0.0.1"])
    write_token_file(root / "tokens.csv", [(TOKEN, "kubernetes-admin", ("system:masters",))])
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                 "certificate-authority": str(root / "ca.crt")}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}]}))
    with apiserver_process(root, port):
        yield kubeconfig


@pytest.fixture(params=VERSIONS)
def kubectl(request: pytest.FixtureRequest, apiserver: Path, tmp_path: Path) -> Kubectl:
    binary = require_kubectl(request.param)
    # A private HOME and cache: kubectl caches discovery and OpenAPI per server address.
    env = {**os.environ, "KUBECONFIG": str(apiserver), "HOME": str(tmp_path)}

    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([binary, "--cache-dir", str(tmp_path / "cache"), *args], capture_output=True,
                              text=True, env=env, input=stdin, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    run.version = request.param  # type: ignore[attr-defined]
    return run


def manifest(namespace: str, *, replicas: int, env_value: str) -> str:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                     "name": "nginx", "image": "nginx:1.25", "ports": [{"name": "http", "containerPort": 80}],
                     "env": [{"name": "MODE", "value": env_value}]}]}}}}
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    return yaml.safe_dump_all([deployment, service])


def test_apply_patch_scale_delete(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = "e2e-" + kubectl.version.replace(".", "-")  # type: ignore[attr-defined]
    # Through apply too: `kubectl create namespace` is a typed client, which sends protobuf from 1.33 on.
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": namespace}}))
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(manifest(namespace, replicas=2, env_value="one"))
    second.write_text(manifest(namespace, replicas=3, env_value="two"))

    created = kubectl("apply", "-f", str(first))
    assert "deployment.apps/web created" in created.stdout
    assert "service/web created" in created.stdout
    assert created.stderr == ""

    # A field the manifest does not own, set in between: a patching apply keeps it.
    kubectl("label", "-n", namespace, "deployment", "web", "owner=someone-else")
    kubectl("annotate", "-n", namespace, "service", "web", "note=kept")
    patched = kubectl("apply", "-f", str(second))
    assert "deployment.apps/web configured" in patched.stdout
    assert "service/web unchanged" in patched.stdout
    assert "warning" not in patched.stderr.lower(), patched.stderr  # e.g. no fallback from the OpenAPI patch meta
    deployment = json.loads(kubectl("get", "-n", namespace, "deployment", "web", "-o", "json").stdout)
    assert deployment["metadata"]["labels"] == {"app": "web", "owner": "someone-else"}
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "two"}]
    assert deployment["metadata"]["generation"] == 2
    applied = json.loads(deployment["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert applied["spec"]["replicas"] == 3
    service = json.loads(kubectl("get", "-n", namespace, "service", "web", "-o", "json").stdout)
    assert service["metadata"]["annotations"]["note"] == "kept"

    wide = kubectl("get", "-n", namespace, "deployments,services", "-o", "wide").stdout
    assert "CONTAINERS" in wide and "nginx:1.25" in wide and "app=web" in wide
    assert "CLUSTER-IP" in wide and "80/TCP" in wide

    assert "deployment.apps/web scaled" in kubectl("scale", "-n", namespace, "deployment", "web",
                                                   "--replicas=5").stdout
    assert kubectl("get", "-n", namespace, "deployment", "web", "-o", "jsonpath={.spec.replicas}").stdout == "5"

    deleted = kubectl("delete", "-f", str(second))
    assert "deployment.apps \"web\" deleted" in deleted.stdout
    assert "service \"web\" deleted" in deleted.stdout
    gone = kubectl("get", "-n", namespace, "deployment", "web", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_invalid_manifest_is_refused_with_causes(kubectl: Kubectl, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
                                   "spec": {"ports": [{"port": 70000}], "sessionAffinityy": "None"}}))
    done = kubectl("apply", "-f", str(bad), check=False)
    assert done.returncode != 0
    # Default validation is strict and server-side: the unknown field is refused by the server.
    assert 'unknown field "spec.sessionAffinityy"' in done.stderr


def test_openapi_documents(kubectl: Kubectl) -> None:
    index = json.loads(kubectl("get", "--raw", "/openapi/v3").stdout)
    assert {"api/v1", "apis/apps/v1"} <= set(index["paths"])
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    document = json.loads(kubectl("get", "--raw", url).stdout)
    assert "io.k8s.api.apps.v1.Deployment" in document["components"]["schemas"]
    v2 = json.loads(kubectl("get", "--raw", "/openapi/v2").stdout)
    assert "io.k8s.api.core.v1.Pod" in v2["definitions"]
    explained = kubectl("explain", "deployment.spec.strategy").stdout
    assert "DeploymentStrategy" in explained


def test_network_policy_apply_get_and_refusal(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = "netpol-" + kubectl.version.replace(".", "-")  # type: ignore[attr-defined]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": namespace}}))
    good = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web-ingress", "namespace": namespace},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}],
                                  "ports": [{"port": 8000, "endPort": 8080}]}]}}
    open_all = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "all-egress", "namespace": namespace},
                "spec": {"podSelector": {}, "egress": [{}]}}
    created = kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([good, open_all]))
    assert "networkpolicy.networking.k8s.io/web-ingress created" in created.stdout
    assert "networkpolicy.networking.k8s.io/all-egress created" in created.stdout

    listed = kubectl("get", "-n", namespace, "netpol").stdout.splitlines()
    assert listed[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    rows = {line.split()[0]: line.split()[1] for line in listed[1:]}
    assert rows == {"all-egress": "<none>", "web-ingress": "app=web"}
    stored = json.loads(kubectl("get", "-n", namespace, "networkpolicy", "web-ingress", "-o", "json").stdout)
    assert stored["spec"]["policyTypes"] == ["Ingress"]  # inferred: no egress rules
    assert stored["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"
    egress = kubectl("get", "-n", namespace, "netpol", "all-egress", "-o", "jsonpath={.spec.policyTypes}").stdout
    assert json.loads(egress) == ["Ingress", "Egress"]

    bad = {**good, "metadata": {"name": "bad", "namespace": namespace},
           "spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]}}
    refused = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0
    assert 'The NetworkPolicy "bad" is invalid: spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: ' \
           '"10.1.0.0/24": must be a strict subset of `cidr`' in refused.stderr, refused.stderr
    assert kubectl("get", "-n", namespace, "netpol", "bad", check=False).returncode != 0


def test_secrets_and_replacing_a_service_keeps_its_allocations(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = "manifests-" + kubectl.version.replace(".", "-")  # type: ignore[attr-defined]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": namespace}}))
    # kubectl's typed generators (protobuf bodies from 1.33 on) and a manifest with stringData.
    kubectl("create", "secret", "generic", "db", "-n", namespace, "--from-literal=user=admin",
            "--from-literal=password=s3cret")
    kubectl("create", "secret", "docker-registry", "pull", "-n", namespace, "--docker-server=registry.example",
            "--docker-username=u", "--docker-password=p")
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "basic", "namespace": namespace},
        "type": "kubernetes.io/basic-auth", "stringData": {"username": "admin"}}))
    table = kubectl("get", "secrets", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    rows = {line.split()[0]: line.split()[1:3] for line in table[1:]}
    assert rows == {"basic": ["kubernetes.io/basic-auth", "1"], "db": ["Opaque", "2"],
                    "pull": ["kubernetes.io/dockerconfigjson", "1"]}
    db = json.loads(kubectl("get", "secret", "db", "-n", namespace, "-o", "json").stdout)
    assert base64.b64decode(db["data"]["password"]) == b"s3cret"
    refused = kubectl("apply", "-f", "-", check=False, stdin=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": namespace},
        "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA=="}}))
    assert refused.returncode != 0 and "data[tls.key]: Required value" in refused.stderr, refused.stderr

    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
               "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(service))
    kubectl("create", "-f", str(path))
    created = json.loads(kubectl("get", "service", "web", "-n", namespace, "-o", "json").stdout)
    assert created["status"] == {"loadBalancer": {}}
    assert "service/web replaced" in kubectl("replace", "-f", str(path)).stdout
    replaced = json.loads(kubectl("get", "service", "web", "-n", namespace, "-o", "json").stdout)
    assert replaced["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    assert replaced["spec"]["ports"][0]["nodePort"] == created["spec"]["ports"][0]["nodePort"]

    kubectl("apply", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
    pod = json.loads(kubectl("get", "pod", "p", "-n", namespace, "-o", "json").stdout)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}  # no scheduler here: it stays so
