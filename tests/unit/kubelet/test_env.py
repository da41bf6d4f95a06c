"""Container environments as the kubelet builds them: envFrom and env, ConfigMap and Secret keys (optional
or not), the downward API's fields and resources, $(VAR) expansion; and, through a kubelet on fakes
against the real apiserver and its Node authorizer, a missing key holding the container back with
CreateContainerConfigError until the key exists."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from control.client import CONFIG_MAPS, SECRETS
from control.kubelet.envvars import container_env, expand, expand_command, service_env
from control.kubelet.workloads import ContainerError
from tests.unit.kubelet.kit import running_node

OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("configmaps", "app"): {"data": {"MODE": "fast", "LEVEL": "3", "bad key": "x", "1st": "y"}},
    ("secrets", "db"): {"data": {"password": base64.b64encode(b"s3cret").decode(), "user": "YWRtaW4="}},
}


async def fetch(plural: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((plural, name))


POD = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web", "tier": "a b"},
                    "annotations": {"note": 'say "hi"'}},
       "spec": {"nodeName": "worker-1", "serviceAccountName": "builder",
                "containers": [{"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"},
                                                           "requests": {"cpu": "100m", "memory": "32Mi"}}},
                               {"name": "side"}]}}


async def env_of(container: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    return await container_env(POD, {"name": "c", **container}, fetch=fetch, pod_ip="10.244.1.7",
                               host_ip="172.18.0.3", allocatable={"cpu": "4", "memory": "8Gi"})


def resolve(container: dict[str, Any]) -> dict[str, str]:
    return asyncio.run(env_of(container))[0]


def refusal(container: dict[str, Any]) -> ContainerError:
    with pytest.raises(ContainerError) as caught:
        resolve(container)
    assert caught.value.reason == "CreateContainerConfigError"
    return caught.value


def test_values_and_references() -> None:
    env = resolve({"env": [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "$(A)-$(MISSING)-$$(A)"},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "MODE"}}},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "db", "key": "nope", "optional": True}}},
        {"name": "NOCM", "valueFrom": {"configMapKeyRef": {"name": "ghost", "key": "k", "optional": True}}},
    ]})
    assert env == {"A": "1", "B": "1-$(MISSING)-$(A)", "MODE": "fast", "PASS": "s3cret"}


def test_env_from_with_prefix_skips_invalid_names_and_env_wins() -> None:
    env, warnings = asyncio.run(env_of({
        "envFrom": [{"configMapRef": {"name": "app"}}, {"prefix": "DB_", "secretRef": {"name": "db"}},
                    {"secretRef": {"name": "ghost", "optional": True}}],
        "env": [{"name": "LEVEL", "value": "9"}]}))
    assert env == {"MODE": "fast", "LEVEL": "9", "DB_password": "s3cret", "DB_user": "admin"}
    assert warnings == ["Keys [1st, bad key] from the EnvFrom configMap shop/app were skipped since they are "
                        "considered invalid environment variable names."]


def test_downward_api_fields() -> None:
    paths = {"NAME": "metadata.name", "NS": "metadata.namespace", "UID": "metadata.uid", "IP": "status.podIP",
             "NODE": "spec.nodeName", "SA": "spec.serviceAccountName", "HOST": "status.hostIP",
             "APP": "metadata.labels['app']", "NONE": "metadata.labels['missing']", "LABELS": "metadata.labels",
             "NOTE": "metadata.annotations['note']"}
    env = resolve({"env": [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()]})
    assert env == {"NAME": "web-1", "NS": "shop", "UID": "u-1", "IP": "10.244.1.7", "NODE": "worker-1",
                   "SA": "builder", "HOST": "172.18.0.3", "APP": "web", "NONE": "", "LABELS": 'app="web"\ntier="a b"',
                   "NOTE": 'say "hi"'}


def test_resource_fields_round_up_in_divisor_units() -> None:
    refs = {"CPU_LIMIT": {"resource": "limits.cpu"}, "CPU_MILLI": {"resource": "requests.cpu", "divisor": "1m"},
            "MEM_MI": {"resource": "limits.memory", "divisor": "1Mi"}, "MEM_REQ": {"resource": "requests.memory"},
            "SIDE_CPU": {"resource": "limits.cpu", "containerName": "side"},
            "SIDE_MEM_GI": {"resource": "limits.memory", "containerName": "side", "divisor": "1Gi"}}
    env = resolve({"env": [{"name": k, "valueFrom": {"resourceFieldRef": v}} for k, v in refs.items()]})
    # 250m of a whole CPU rounds up to 1; a container without limits sees the node's allocatable.
    assert env == {"CPU_LIMIT": "1", "CPU_MILLI": "100", "MEM_MI": "64", "MEM_REQ": str(32 * 2**20),
                   "SIDE_CPU": "4", "SIDE_MEM_GI": "8"}


def test_missing_references_are_upstreams_errors() -> None:
    assert refusal({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "ghost", "key": "k"}}}]}
                   ).message == 'configmap "ghost" not found'
    assert refusal({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token"}}}]}
                   ).message == "couldn't find key token in Secret shop/db"
    assert refusal({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "k"}}}]}
                   ).message == "couldn't find key k in ConfigMap shop/app"
    assert refusal({"envFrom": [{"secretRef": {"name": "nope"}}]}).message == 'secret "nope" not found'


def test_command_and_args_expand() -> None:
    container = {"command": ["sh", "-c"], "args": ["echo $(GREETING) $$(GREETING) $(UNSET)"]}
    assert expand_command(container, {"GREETING": "hi"})["args"] == ["echo hi $(GREETING) $(UNSET)"]
    assert container["args"] == ["echo $(GREETING) $$(GREETING) $(UNSET)"]  # the spec itself is left alone
    assert expand("$(A)$(B)", {"A": "$(B)", "B": "x"}) == "$(B)x"  # one pass: values are not expanded again


def test_kubelet_holds_the_container_until_the_key_exists(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await node.admin.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                                              "stringData": {"password": "s3cret"}}, namespace="default")
            await node.create_pod("web", [{"name": "c", "image": "pause", "env": [
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "MODE"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}])

            async def held() -> bool:
                state = (await node.container_status("web")).get("state") or {}
                return (state.get("waiting") or {}).get("reason") == "CreateContainerConfigError"

            await node.eventually(held, "the container held back by CreateContainerConfigError")
            status = await node.status("web")
            assert status["phase"] == "Pending"
            waiting = status["containerStatuses"][0]["state"]["waiting"]
            assert waiting["message"] == 'configmap "app" not found'
            assert node.containers.of("web", "c") == []
            await node.eventually(lambda: node.events("web", "Failed"), "a Failed event")

            await node.admin.create(CONFIG_MAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "app"}, "data": {"MODE": "fast"}},
                                    namespace="default")
            await node.clock.advance(node.kubelet.config.restart_backoff)
            await node.eventually(lambda: node.containers.of("web", "c"), "the container started")
            env = node.containers.latest("web", "c").env
            assert env["PASS"] == "s3cret" and env["MODE"] == "fast" and env["POD_IP"].startswith("10.244.1.")
            assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"  # from the kubelet's service informer

            async def running() -> bool:
                return (await node.status("web")).get("phase") == "Running"

            await node.eventually(running, "web Running")

    asyncio.run(main())


SERVICES = [
    {"metadata": {"name": "kubernetes", "namespace": "default"},
     "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
    {"metadata": {"name": "web-api", "namespace": "shop"},
     "spec": {"clusterIP": "10.96.7.7", "ports": [{"port": 80, "protocol": "TCP"},
                                                   {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}},
    {"metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
    {"metadata": {"name": "elsewhere", "namespace": "other"}, "spec": {"clusterIP": "10.96.9.9",
                                                                        "ports": [{"port": 1}]}},
]


def test_service_variables_as_upstreams_kubelet_sets_them() -> None:
    env = service_env(SERVICES, "shop", True)
    assert env == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
        "WEB_API_SERVICE_HOST": "10.96.7.7", "WEB_API_SERVICE_PORT": "80", "WEB_API_SERVICE_PORT_DNS_UDP": "53",
        "WEB_API_PORT": "tcp://10.96.7.7:80", "WEB_API_PORT_80_TCP": "tcp://10.96.7.7:80",
        "WEB_API_PORT_80_TCP_PROTO": "tcp", "WEB_API_PORT_80_TCP_PORT": "80", "WEB_API_PORT_80_TCP_ADDR": "10.96.7.7",
        "WEB_API_PORT_53_UDP": "udp://10.96.7.7:53", "WEB_API_PORT_53_UDP_PROTO": "udp",
        "WEB_API_PORT_53_UDP_PORT": "53", "WEB_API_PORT_53_UDP_ADDR": "10.96.7.7"}
    # Without service links only the API server's own Service is there.
    assert set(service_env(SERVICES, "shop", False)) == {k for k in env if k.startswith("KUBERNETES_")}


def test_container_settings_override_service_variables_and_may_use_them() -> None:
    async def main() -> dict[str, str]:
        env, _ = await container_env(POD, {"name": "c", "env": [
            {"name": "WEB_API_SERVICE_HOST", "value": "mine"},
            {"name": "API", "value": "http://$(WEB_API_SERVICE_HOST):$(WEB_API_SERVICE_PORT)"}]},
            fetch=fetch, pod_ip="10.244.1.7", host_ip="172.18.0.3", allocatable={}, services=SERVICES)
        return env

    env = asyncio.run(main())
    assert env["WEB_API_SERVICE_HOST"] == "mine" and env["API"] == "http://mine:80"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    no_links = {**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}
    bare, _ = asyncio.run(container_env(no_links, {"name": "c"}, fetch=fetch, pod_ip="", host_ip="", allocatable={},
                                        services=SERVICES))
    assert "WEB_API_SERVICE_HOST" not in bare and "KUBERNETES_SERVICE_HOST" in bare
