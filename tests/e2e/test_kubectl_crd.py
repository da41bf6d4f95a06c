"""CustomResourceDefinitions with unmodified kubectl (the oldest and newest versions we support) and the Python
client's DynamicClient, against the real apiserver process over HTTPS (no cluster): upstream's CronTab example
applied and Established; an instance applied, validated (a bad one refused with 422 naming the field), pruned
and defaulted; server-side apply by two managers merging the schema's map and set lists; `kubectl get` with
the printer columns (and -o wide), a watch, `kubectl scale`, the status
subresource, `kubectl explain`, the Local APIServices; then deleting the CRD deletes its instances and the
resource is no longer served.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.crd_examples import GROUP, NAME, crontab, crontab_crd
from tests.e2e.test_kubectl_apply import (
    VERSIONS,
    Kubectl,
    kubectl_runner,
    require_kubectl,
    users_apiserver,
    versioned_kubectl,
)
from tests.waiting import wait_until

USERS = {"admin": ("e2e-crd-admin-token", "kubernetes-admin", ("system:masters",))}


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with users_apiserver(tmp_path_factory.mktemp("crd"), USERS) as kubeconfigs:
        yield kubeconfigs["admin"]


@pytest.fixture(params=VERSIONS)
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return versioned_kubectl(request.param, kubeconfig, tmp_path)


def apply(kubectl: Kubectl, *objects: dict[str, Any], check: bool = True, extra: tuple[str, ...] = ()
          ) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(objects), check=check)


class Watching:
    """A watching kubectl's output, line by line, read by a thread (a pipe read cannot time out)."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, what: str) -> str:
        """The next line; the timeout is a hang guard, not a measurement."""
        try:
            line = self.lines.get(timeout=30)
        except queue.Empty:
            line = None
        if line is None:
            self.stop()
            raise AssertionError(f"kubectl printed nothing for {what}: {self.stderr}")
        return line

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)
        self.thread.join(timeout=10)  # it ends at the end of stdout, which only it reads
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()

    stderr = ""
    stopped = False


def test_crontab_lifecycle(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = "crd-" + kubectl.version.replace(".", "-")  # type: ignore[attr-defined]
    created = apply(kubectl, crontab_crd())
    assert f"customresourcedefinition.apiextensions.k8s.io/{NAME}" in created.stdout
    kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=30s")
    apply(kubectl, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    # Discovery knows the short name, the category and the kind once it is served.
    wait_until(lambda: kubectl("get", "ct", "-n", namespace, check=False).returncode == 0, timeout=15,
               message="crontabs in kubectl's discovery")

    refused = apply(kubectl, crontab("bad", namespace, replicas="three"), check=False)
    assert refused.returncode != 0
    assert ('The CronTab "bad" is invalid: spec.replicas: Invalid value: "string": spec.replicas in body must be of '
            'type integer: "string"') in refused.stderr, refused.stderr
    too_many = apply(kubectl, crontab("bad", namespace, replicas=11), check=False)
    assert "spec.replicas in body should be less than or equal to 10" in too_many.stderr, too_many.stderr
    # kubectl's default validation is the server's, strict: an unknown field is refused...
    strict = apply(kubectl, crontab("good", namespace, unknownField="x"), check=False)
    assert strict.returncode != 0 and 'unknown field "spec.unknownField"' in strict.stderr, strict.stderr
    # ...and without it, pruned; replicas defaulted.
    made = apply(kubectl, crontab("good", namespace, unknownField="x"), extra=("--validate=false",))
    assert f"crontab.{GROUP}/good created" in made.stdout
    stored = json.loads(kubectl("get", "crontab", "good", "-n", namespace, "-o", "json").stdout)
    assert "unknownField" not in stored["spec"] and stored["spec"]["replicas"] == 1
    assert stored["apiVersion"] == f"{GROUP}/v1" and stored["metadata"]["generation"] == 1
    # A second apply patches (a merge patch for a custom resource) and keeps what it does not own.
    kubectl("label", "-n", namespace, "ct", "good", "owner=someone")
    again = apply(kubectl, crontab("good", namespace, image="image-two"))
    assert f"crontab.{GROUP}/good configured" in again.stdout
    patched = json.loads(kubectl("get", "ct", "good", "-n", namespace, "-o", "json").stdout)
    assert patched["spec"]["image"] == "image-two" and patched["metadata"]["labels"] == {"owner": "someone"}
    # Server-side apply merges the lists as the schema types them: each manager keeps its own route (a map
    # list by name) and tag (a set).
    apply(kubectl, crontab("shared", namespace, routes=[{"name": "a", "weight": 1}], tags=["blue"]),
          extra=("--server-side", "--field-manager=team-a"))
    apply(kubectl, crontab("shared", namespace, routes=[{"name": "b", "weight": 2}], tags=["green"]),
          extra=("--server-side", "--field-manager=team-b"))
    shared = json.loads(kubectl("get", "ct", "shared", "-n", namespace, "-o", "json").stdout)
    assert [r["name"] for r in shared["spec"]["routes"]] == ["a", "b"] and shared["spec"]["tags"] == ["blue", "green"]
    kubectl("delete", "ct", "shared", "-n", namespace)

    table = kubectl("get", "crontabs", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert table[1].split()[:7] == ["good", "*", "*", "*", "*", "*/5", "1"]
    wide = kubectl("get", "crontabs", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SPEC", "REPLICAS", "IMAGE", "AGE"] and "image-two" in wide[1]
    assert "crontab." + GROUP + "/good" in kubectl("get", "all", "-n", namespace, "-o", "name").stdout

    columns = "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas"
    watch = Watching([kubectl.binary, "--cache-dir", str(tmp_path / "cache"), "get", "crontabs",  # type: ignore[attr-defined]
                      "-n", namespace, "--watch", "-o", columns],
                     {"KUBECONFIG": str(kubectl.kubeconfig), "HOME": str(tmp_path),  # type: ignore[attr-defined]
                      "PATH": "/usr/bin:/bin"})
    try:
        assert watch.next("the header").split() == ["NAME", "REPLICAS"]
        assert watch.next("the initial object").split() == ["good", "1"]
        scaled = kubectl("scale", "crontab", "good", "-n", namespace, "--replicas=3")
        assert f"crontab.{GROUP}/good scaled" in scaled.stdout
        assert watch.next("the scaled object").split() == ["good", "3"]
    finally:
        watch.stop()

    scale = json.loads(kubectl("get", "--raw", f"/apis/{GROUP}/v1/namespaces/{namespace}/crontabs/good/scale").stdout)
    assert scale["spec"] == {"replicas": 3} and scale["kind"] == "Scale"
    # The status subresource: the main resource ignores status, /status takes only it.
    kubectl("patch", "ct", "good", "-n", namespace, "--type=merge", "-p", '{"status":{"replicas":7}}')
    before = json.loads(kubectl("get", "ct", "good", "-n", namespace, "-o", "json").stdout)
    assert "status" not in before
    assert before["metadata"]["generation"] == 3  # created, applied again, scaled: each a spec change
    kubectl("patch", "ct", "good", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", '{"status":{"replicas":3,"labelSelector":"app=good"},"spec":{"image":"ignored"}}')
    after = json.loads(kubectl("get", "ct", "good", "-n", namespace, "-o", "json").stdout)
    assert after["status"] == {"replicas": 3, "labelSelector": "app=good"}
    assert after["spec"]["image"] == "image-two" and after["metadata"]["generation"] == 3

    explained = kubectl("explain", "crontab.spec").stdout
    assert "cronSpec" in explained and "replicas" in explained, explained
    services = kubectl("get", "apiservices").stdout
    assert any(line.split()[:3] == [f"v1.{GROUP}", "Local", "True"] for line in services.splitlines()), services
    assert any(line.split()[:3] == ["v1.apps", "Local", "True"] for line in services.splitlines()), services

    deleted = kubectl("delete", "crd", NAME)
    assert f'customresourcedefinition.apiextensions.k8s.io "{NAME}" deleted' in deleted.stdout
    gone = kubectl("get", "--raw", f"/apis/{GROUP}/v1/namespaces/{namespace}/crontabs", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr
    assert kubectl("get", "crd", "-o", "name").stdout.strip() == ""
    # Created again, the CRD serves an empty resource: the instances went with the old one.
    apply(kubectl, crontab_crd())
    kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=30s")
    wait_until(lambda: kubectl("get", "crontabs", "-n", namespace, "-o", "name", check=False).returncode == 0,
               timeout=15, message="crontabs served again")
    assert kubectl("get", "crontabs", "-n", namespace, "-o", "name").stdout.strip() == ""
    kubectl("delete", "crd", NAME)


def test_dynamic_client(kubeconfig: Path) -> None:
    """The Python client's DynamicClient finds the custom resource through discovery and drives it."""
    from kubernetes import config, dynamic
    from kubernetes.client import api_client
    from kubernetes.dynamic.exceptions import UnprocessibleEntityError

    client = dynamic.DynamicClient(api_client.ApiClient(configuration=config.new_client_from_config(
        config_file=str(kubeconfig)).configuration))
    crds = client.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.create(body=crontab_crd(scope="Cluster"))
    def established() -> bool:
        status = crds.get(name=NAME).to_dict().get("status") or {}  # none yet, right after the create
        return any(c["type"] == "Established" and c["status"] == "True" for c in status.get("conditions") or [])

    wait_until(established, timeout=15, message="the CRD established")
    client.resources.invalidate_cache()
    tabs = client.resources.get(api_version=f"{GROUP}/v1", kind="CronTab")
    assert tabs.namespaced is False and tabs.short_names == ["ct"]
    made = tabs.create(body=crontab("dyn", namespace=None, port="http"))
    assert made.spec.replicas == 1 and made.spec.port == "http"
    with pytest.raises(UnprocessibleEntityError) as refused:
        tabs.create(body=crontab("dyn2", namespace=None, tags=["a", "a"]))
    assert "spec.tags[1]: Duplicate value" in str(refused.value.body)
    patched = tabs.patch(name="dyn", body={"spec": {"image": "dynamic"}}, content_type="application/merge-patch+json")
    assert patched.spec.image == "dynamic"
    assert [i.metadata.name for i in tabs.get().items] == ["dyn"]
    tabs.delete(name="dyn")
    assert tabs.get().items == []
    crds.delete(name=NAME)
    wait_until(lambda: NAME not in [c.metadata.name for c in crds.get().items], timeout=15,
               message="the CRD gone")


def test_a_restarted_apiserver_serves_its_crds_again(tmp_path_factory: pytest.TempPathFactory,
                                                      tmp_path: Path) -> None:
    """The apiserver process stopped and started again over the same store: the CRD is read back at start
    and its resource served again, instances and all, before the apiserver reports ready."""
    binary = require_kubectl(VERSIONS[-1])
    root = tmp_path_factory.mktemp("crd-restart")
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with users_apiserver(root, USERS) as kubeconfigs:
        kubectl = kubectl_runner(binary, kubeconfigs["admin"], tmp_path / "first")
        apply(kubectl, crontab_crd())
        kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=30s")
        wait_until(lambda: apply(kubectl, crontab("kept", "default"), check=False).returncode == 0, timeout=15,
                   message="the CronTab applied once its resource is served")
    with users_apiserver(root, USERS) as kubeconfigs:
        kubectl = kubectl_runner(binary, kubeconfigs["admin"], tmp_path / "second")
        kept = json.loads(kubectl("get", "crontab", "kept", "-n", "default", "-o", "json").stdout)
        assert kept["spec"]["replicas"] == 1 and kept["apiVersion"] == f"{GROUP}/v1"
        assert kubectl("get", "ct", "-n", "default", "-o", "name").stdout.split() == [f"crontab.{GROUP}/kept"]
