"""Defaulting, per upstream's pkg/apis/core/v1/defaults.go and apps/v1/defaults.go."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from control.apiserver.defaults import default, image_pull_policy


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}], **spec}}


def test_pod_defaults() -> None:
    obj = pod()
    default("Pod", obj)
    spec = obj["spec"]
    assert {k: v for k, v in spec.items() if k != "containers"} == {
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler", "serviceAccountName": "default", "serviceAccount": "default",
        "enableServiceLinks": True, "securityContext": {}}
    assert spec["containers"] == [{"name": "c", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                                   "terminationMessagePath": "/dev/termination-log",
                                   "terminationMessagePolicy": "File", "resources": {}}]


def test_pod_defaults_keep_what_is_set() -> None:
    obj = pod(restartPolicy="Never", terminationGracePeriodSeconds=0, dnsPolicy="Default",
              serviceAccountName="builder", enableServiceLinks=False)
    obj["spec"]["containers"][0].update(imagePullPolicy="Never", terminationMessagePolicy="FallbackToLogsOnError")
    default("Pod", obj)
    spec = obj["spec"]
    assert (spec["restartPolicy"], spec["terminationGracePeriodSeconds"], spec["dnsPolicy"]) == ("Never", 0, "Default")
    assert (spec["serviceAccountName"], spec["serviceAccount"], spec["enableServiceLinks"]) == ("builder", "builder",
                                                                                                 False)
    container = spec["containers"][0]
    assert (container["imagePullPolicy"], container["terminationMessagePolicy"]) == ("Never", "FallbackToLogsOnError")


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("registry.local:5000/team/nginx", "Always"),
    ("registry.local:5000/team/nginx:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_container_ports_probes_env_resources_and_volumes() -> None:
    obj = pod(volumes=[{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "cfg"}}])
    obj["spec"]["containers"][0].update(
        ports=[{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
        livenessProbe={"httpGet": {"port": 80}},
        readinessProbe={"tcpSocket": {"port": 80}, "periodSeconds": 5},
        env=[{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        resources={"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})
    default("Pod", obj)
    container = obj["spec"]["containers"][0]
    assert [p["protocol"] for p in container["ports"]] == ["TCP", "UDP"]
    assert container["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                          "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert obj["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}},
                                      {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}]


def test_host_network_ports_default_host_port() -> None:
    obj = pod(hostNetwork=True)
    obj["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    default("Pod", obj)
    assert obj["spec"]["containers"][0]["ports"] == [{"containerPort": 8080, "protocol": "TCP", "hostPort": 8080}]


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s"}, "spec": spec}


def test_service_defaults() -> None:
    obj = service(ports=[{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}])
    default("Service", obj)
    assert obj["spec"] == {
        "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80},
                  {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}


def test_node_port_and_load_balancer_defaults() -> None:
    node_port = service(type="NodePort", ports=[{"port": 80}])
    default("Service", node_port)
    assert node_port["spec"]["externalTrafficPolicy"] == "Cluster"
    assert "allocateLoadBalancerNodePorts" not in node_port["spec"]
    balancer = service(type="LoadBalancer", ports=[{"port": 80}], externalTrafficPolicy="Local")
    default("Service", balancer)
    assert balancer["spec"]["externalTrafficPolicy"] == "Local"
    assert balancer["spec"]["allocateLoadBalancerNodePorts"] is True


def test_client_ip_affinity_timeout_and_external_name() -> None:
    sticky = service(ports=[{"port": 80}], sessionAffinity="ClientIP")
    default("Service", sticky)
    assert sticky["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    external = service(type="ExternalName", externalName="example.com")
    default("Service", external)
    assert external["spec"] == {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}


def template() -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def test_deployment_defaults() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "d"},
                           "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}
    default("Deployment", obj)
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always" and pod_spec["containers"][0]["imagePullPolicy"] == "Always"
    assert "serviceAccountName" not in pod_spec  # only pods get the ServiceAccount admission's default


def test_recreate_deployment_has_no_rolling_update() -> None:
    obj: dict[str, Any] = {"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "template": template()}}
    default("Deployment", obj)
    assert obj["spec"]["strategy"] == {"type": "Recreate"} and obj["spec"]["replicas"] == 0


def test_replica_set_and_replication_controller_defaults() -> None:
    rs: dict[str, Any] = {"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}
    default("ReplicaSet", rs)
    assert rs["spec"]["replicas"] == 1
    rc: dict[str, Any] = {"metadata": {"name": "rc"}, "spec": {"template": template()}}
    default("ReplicationController", rc)
    assert rc["spec"]["replicas"] == 1
    assert rc["spec"]["selector"] == {"app": "web"}
    assert rc["metadata"]["labels"] == {"app": "web"}


def test_endpoint_slice_and_endpoints_port_protocol() -> None:
    eps: dict[str, Any] = {"addressType": "IPv4", "ports": [{"port": 80}, {"name": "dns", "protocol": "UDP"}]}
    default("EndpointSlice", eps)
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}, {"name": "dns", "protocol": "UDP"}]
    endpoints: dict[str, Any] = {"subsets": [{"ports": [{"port": 80}]}]}
    default("Endpoints", endpoints)
    assert endpoints["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_defaulting_is_idempotent_and_tolerates_odd_shapes() -> None:
    for kind, obj in (("Pod", pod()), ("Service", service(ports=[{"port": 80}])),
                      ("Deployment", {"spec": {"template": template()}})):
        default(kind, obj)
        again = copy.deepcopy(obj)
        default(kind, again)
        assert again == obj
    for odd in ({"spec": "x"}, {"spec": {"containers": "x"}}, {"spec": {"containers": [1, None]}}, {}):
        default("Pod", copy.deepcopy(odd))
        default("Deployment", copy.deepcopy(odd))
        default("Service", copy.deepcopy(odd))
    default("ConfigMap", {"data": {}})
