"""Validation in upstream's words (k8s.io/apimachinery/pkg/util/validation/field/errors.go and the
per-kind validation packages): each case is a mutation of a valid, defaulted object and the exact
(field, message) pairs kube-apiserver reports for it."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User
from control.apiserver.bootstrap import bootstrap
from control.apiserver.defaults import default
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.server import APIServer
from control.apiserver.validation import FieldError, go_value, validate, validate_update
from control.store import SQLiteStore

Obj = dict[str, Any]
Mutation = Callable[[Obj], object]

DNS1123_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                 "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_LABEL = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                 "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex "
                 "used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
DNS1123_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                     r"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
QUALIFIED_NAME_PART = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                       "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                       "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
               "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex "
               "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
PORT_RANGE = "must be between 1 and 65535, inclusive"


def container(name: str = "c", image: str = "nginx:1.25", **extra: Any) -> Obj:
    return {"name": name, "image": image, **extra}


def pod() -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default",
                                                            "labels": {"app": "web"}},
            "spec": {"containers": [container()]}}


def service() -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def deployment() -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container()]}}}}


def replication_controller() -> Obj:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
            "spec": {"template": {"metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [container()]}}}}


def endpoint_slice() -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-abc"},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080}]}


def node() -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}}


def config_map() -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"key.name": "v"}}


def namespace() -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}


BUILDERS: dict[str, Callable[[], Obj]] = {
    "Pod": pod, "Service": service, "Deployment": deployment, "ReplicationController": replication_controller,
    "EndpointSlice": endpoint_slice, "Node": node, "ConfigMap": config_map, "Namespace": namespace,
}


def errors_of(kind: str, mutate: Mutation | None = None) -> list[tuple[str, str]]:
    obj = BUILDERS[kind]()
    if mutate is not None:
        mutate(obj)
    default(kind, obj)
    return [(e.field, e.message) for e in validate(kind, obj)]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_the_valid_objects_are_valid(kind: str) -> None:
    assert errors_of(kind) == []


def spec(obj: Obj) -> Obj:
    value: Obj = obj["spec"]
    return value


def port0(obj: Obj) -> Obj:
    value: Obj = obj["spec"]["ports"][0]
    return value


def ctr(obj: Obj) -> Obj:
    value: Obj = obj["spec"]["containers"][0]
    return value


def tpl(obj: Obj) -> Obj:
    value: Obj = obj["spec"]["template"]
    return value


SERVICE_CASES: list[tuple[str, Mutation, list[tuple[str, str]]]] = [
    ("port too big", lambda s: port0(s).update(port=70000),
     [("spec.ports[0].port", f"Invalid value: 70000: {PORT_RANGE}")]),
    ("port zero", lambda s: port0(s).update(port=0), [("spec.ports[0].port", f"Invalid value: 0: {PORT_RANGE}")]),
    ("protocol", lambda s: port0(s).update(protocol="HTTP"),
     [("spec.ports[0].protocol", 'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"')]),
    ("duplicate port names", lambda s: spec(s)["ports"].append({"name": "http", "port": 81}),
     [("spec.ports[1].name", 'Duplicate value: "http"')]),
    ("unnamed port among several", lambda s: spec(s)["ports"].append({"port": 81}),
     [("spec.ports[1].name", "Required value")]),
    ("bad port name", lambda s: port0(s).update(name="HTTP"), [("spec.ports[0].name", f'Invalid value: "HTTP": '
                                                                f"{DNS1123_LABEL}")]),
    ("duplicate port and protocol", lambda s: spec(s)["ports"].append({"name": "again", "port": 80}),
     [("spec.ports[1]", 'Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
       'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')]),
    ("same port, other protocol", lambda s: spec(s)["ports"].append({"name": "dns", "port": 80, "protocol": "UDP"}),
     []),
    ("target port out of range", lambda s: port0(s).update(targetPort=65536),
     [("spec.ports[0].targetPort", f"Invalid value: 65536: {PORT_RANGE}")]),
    ("target port name", lambda s: port0(s).update(targetPort="web_port"),
     [("spec.ports[0].targetPort",
       'Invalid value: "web_port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)')]),
    ("target port name too long", lambda s: port0(s).update(targetPort="a-very-long-port-name"),
     [("spec.ports[0].targetPort", 'Invalid value: "a-very-long-port-name": must be no more than 15 characters')]),
    ("target port name without letters", lambda s: port0(s).update(targetPort="80-80"),
     [("spec.ports[0].targetPort", 'Invalid value: "80-80": must contain at least one letter (a-z)')]),
    ("node port on ClusterIP", lambda s: port0(s).update(nodePort=30080),
     [("spec.ports[0].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")]),
    ("node port on NodePort", lambda s: (port0(s).update(nodePort=30080), spec(s).update(type="NodePort")), []),
    ("type", lambda s: spec(s).update(type="Foo"),
     [("spec.type", 'Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", '
                    '"NodePort"')]),
    ("session affinity", lambda s: spec(s).update(sessionAffinity="Foo"),
     [("spec.sessionAffinity", 'Unsupported value: "Foo": supported values: "ClientIP", "None"')]),
    ("client IP timeout zero", lambda s: spec(s).update(sessionAffinity="ClientIP", sessionAffinityConfig={
        "clientIP": {"timeoutSeconds": 0}}),
     [("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
       "Invalid value: 0: must be greater than 0 and less than 86400")]),
    ("client IP timeout too long", lambda s: spec(s).update(sessionAffinity="ClientIP", sessionAffinityConfig={
        "clientIP": {"timeoutSeconds": 86401}}),
     [("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
       "Invalid value: 86401: must be greater than 0 and less than 86400")]),
    ("client IP timeout at the limit", lambda s: spec(s).update(sessionAffinity="ClientIP", sessionAffinityConfig={
        "clientIP": {"timeoutSeconds": 86400}}), []),
    ("cluster IP syntax", lambda s: spec(s).update(clusterIP="10.96.0.300"),
     [("spec.clusterIPs[0]", 'Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or '
                             '2001:db8::ffff)')]),
    ("headless NodePort", lambda s: spec(s).update(clusterIP="None", type="NodePort"),
     [("spec.clusterIPs[0]", "Invalid value: \"None\": may not be set to 'None' for NodePort services")]),
    ("cluster IPs disagree", lambda s: spec(s).update(clusterIP="10.96.0.5", clusterIPs=["10.96.0.6"]),
     [("spec.clusterIPs", 'Invalid value: []string{"10.96.0.6"}: first value must match `clusterIP`')]),
    ("duplicate node ports", lambda s: (spec(s).update(type="NodePort"), port0(s).update(nodePort=30080),
                                        spec(s)["ports"].append({"name": "b", "port": 81, "nodePort": 30080})),
     [("spec.ports[1].nodePort", "Duplicate value: 30080")]),
    ("external IPs make a ClusterIP service externally accessible",
     lambda s: spec(s).update(externalIPs=["192.0.2.10"], externalTrafficPolicy="Local"), []),
    ("affinity config with affinity None", lambda s: spec(s).update(sessionAffinityConfig={
        "clientIP": {"timeoutSeconds": 10}}),
     [("spec.sessionAffinityConfig", "Forbidden: must not be set when session affinity is None")]),
    ("headless", lambda s: spec(s).update(clusterIP="None"), []),
    ("headless without ports", lambda s: spec(s).update(clusterIP="None", ports=[]), []),
    ("no ports", lambda s: spec(s).update(ports=[]), [("spec.ports", "Required value")]),
    ("external name required", lambda s: spec(s).update(type="ExternalName", ports=[]),
     [("spec.externalName", "Required value")]),
    ("external name", lambda s: spec(s).update(type="ExternalName", externalName="db.example.com."), []),
    ("external name syntax", lambda s: spec(s).update(type="ExternalName", externalName="DB.example.com"),
     [("spec.externalName", f'Invalid value: "DB.example.com": {DNS1123_SUBDOMAIN}')]),
    ("cluster IP on ExternalName", lambda s: spec(s).update(type="ExternalName", externalName="db.example.com",
                                                            clusterIP="10.96.0.20"),
     [("spec.clusterIPs", "Forbidden: may not be set for ExternalName services")]),
    ("external traffic policy on ClusterIP", lambda s: spec(s).update(externalTrafficPolicy="Local"),
     [("spec.externalTrafficPolicy", 'Invalid value: "Local": may only be set for externally-accessible services')]),
    ("external traffic policy value", lambda s: spec(s).update(type="NodePort", externalTrafficPolicy="Nearest"),
     [("spec.externalTrafficPolicy", 'Unsupported value: "Nearest": supported values: "Cluster", "Local"')]),
    ("internal traffic policy value", lambda s: spec(s).update(internalTrafficPolicy="Node"),
     [("spec.internalTrafficPolicy", 'Unsupported value: "Node": supported values: "Cluster", "Local"')]),
    ("traffic distribution", lambda s: spec(s).update(trafficDistribution="PreferClose"), []),
    ("traffic distribution value", lambda s: spec(s).update(trafficDistribution="Nearest"),
     [("spec.trafficDistribution", 'Unsupported value: "Nearest": supported values: "PreferClose"')]),
    ("load balancer", lambda s: spec(s).update(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/8"]), []),
    ("source ranges on ClusterIP", lambda s: spec(s).update(loadBalancerSourceRanges=["10.0.0.0/8"]),
     [("spec.loadBalancerSourceRanges", "Forbidden: may only be used when `type` is 'LoadBalancer'")]),
    ("source range syntax", lambda s: spec(s).update(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/33"]),
     [("spec.loadBalancerSourceRanges[0]", 'Invalid value: "10.0.0.0/33": must be a list of IP ranges. For example, '
                                           "10.240.0.0/24,10.250.0.0/24 ")]),
    ("allocate node ports on NodePort", lambda s: spec(s).update(type="NodePort", allocateLoadBalancerNodePorts=True),
     [("spec.allocateLoadBalancerNodePorts", "Forbidden: may only be used when `type` is 'LoadBalancer'")]),
    ("ip family policy", lambda s: spec(s).update(ipFamilyPolicy="TripleStack"),
     [("spec.ipFamilyPolicy", 'Unsupported value: "TripleStack": supported values: "PreferDualStack", '
                              '"RequireDualStack", "SingleStack"')]),
    ("name is a DNS-1035 label", lambda s: s["metadata"].update(name="1web"),
     [("metadata.name", f'Invalid value: "1web": {DNS1035_LABEL}')]),
    ("selector labels", lambda s: spec(s).update(selector={"app": "-web"}),
     [("spec.selector", f'Invalid value: "-web": {LABEL_VALUE}')]),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES])
def test_service(case: str, mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    assert errors_of("Service", mutate) == expected


POD_CASES: list[tuple[str, Mutation, list[tuple[str, str]]]] = [
    ("no containers", lambda p: spec(p).update(containers=[]), [("spec.containers", "Required value")]),
    ("container name required", lambda p: ctr(p).pop("name"), [("spec.containers[0].name", "Required value")]),
    ("container name", lambda p: ctr(p).update(name="Web_1"),
     [("spec.containers[0].name", f'Invalid value: "Web_1": {DNS1123_LABEL}')]),
    ("duplicate container names", lambda p: spec(p)["containers"].append(container()),
     [("spec.containers[1].name", 'Duplicate value: "c"')]),
    ("init and app container share a name", lambda p: spec(p).update(initContainers=[container()]),
     [("spec.containers[0].name", 'Duplicate value: "c"')]),
    ("image required", lambda p: ctr(p).pop("image"), [("spec.containers[0].image", "Required value")]),
    ("image pull policy", lambda p: ctr(p).update(imagePullPolicy="Sometimes"),
     [("spec.containers[0].imagePullPolicy",
       'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"')]),
    ("container port", lambda p: ctr(p).update(ports=[{"containerPort": 70000}]),
     [("spec.containers[0].ports[0].containerPort", f"Invalid value: 70000: {PORT_RANGE}")]),
    ("container port required", lambda p: ctr(p).update(ports=[{"name": "http"}]),
     [("spec.containers[0].ports[0].containerPort", "Required value")]),
    ("container port names", lambda p: ctr(p).update(ports=[{"name": "http", "containerPort": 80},
                                                             {"name": "http", "containerPort": 81}]),
     [("spec.containers[0].ports[1].name", 'Duplicate value: "http"')]),
    ("container port protocol", lambda p: ctr(p).update(ports=[{"containerPort": 80, "protocol": "ICMP"}]),
     [("spec.containers[0].ports[0].protocol", 'Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"')]),
    ("env name", lambda p: ctr(p).update(env=[{"name": "1BAD", "value": "x"}]),
     [("spec.containers[0].env[0].name",
       'Invalid value: "1BAD": a valid environment variable name must consist of alphabetic characters, digits, '
       "'_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
       "regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")]),
    ("env name required", lambda p: ctr(p).update(env=[{"value": "x"}]),
     [("spec.containers[0].env[0].name", "Required value")]),
    ("env value and valueFrom", lambda p: ctr(p).update(env=[{"name": "A", "value": "x", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}]),
     [("spec.containers[0].env[0].valueFrom", 'Invalid value: "": may not be specified when `value` is not empty')]),
    ("requests above limits", lambda p: ctr(p).update(resources={"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
     [("spec.containers[0].resources.requests[cpu]",
       'Invalid value: "2": must be less than or equal to cpu limit of 1')]),
    ("requests above limits, other units", lambda p: ctr(p).update(resources={
        "limits": {"memory": "1Gi"}, "requests": {"memory": "1500Mi"}}),
     [("spec.containers[0].resources.requests[memory]",
       'Invalid value: "1500Mi": must be less than or equal to memory limit of 1Gi')]),
    ("requests within limits", lambda p: ctr(p).update(resources={
        "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1024Mi"}}), []),
    ("bad quantity", lambda p: ctr(p).update(resources={"limits": {"cpu": "lots"}}),
     [("spec.containers[0].resources.limits[cpu]", 'Invalid value: "lots": quantities must match the regular '
       "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]),
    ("negative quantity", lambda p: ctr(p).update(resources={"requests": {"memory": "-1Mi"}}),
     [("spec.containers[0].resources.requests[memory]", 'Invalid value: "-1Mi": must be greater than or equal to 0')]),
    ("unknown resource", lambda p: ctr(p).update(resources={"limits": {"gpu": "1"}}),
     [("spec.containers[0].resources.limits[gpu]", 'Invalid value: "gpu": must be a standard resource for '
                                                   "containers"),
      ("spec.containers[0].resources.requests[gpu]", 'Invalid value: "gpu": must be a standard resource for '
                                                     "containers")]),
    ("extended resource", lambda p: ctr(p).update(resources={"limits": {"example.com/gpu": "1"}}), []),
    ("probe with two handlers", lambda p: ctr(p).update(livenessProbe={"httpGet": {"port": 80},
                                                                       "tcpSocket": {"port": 80}}),
     [("spec.containers[0].livenessProbe.tcpSocket", "Forbidden: may not specify more than 1 handler type")]),
    ("probe without handler", lambda p: ctr(p).update(readinessProbe={"periodSeconds": 5}),
     [("spec.containers[0].readinessProbe", "Required value: must specify a handler type")]),
    ("probe threshold", lambda p: ctr(p).update(readinessProbe={"tcpSocket": {"port": 80}, "failureThreshold": -1}),
     [("spec.containers[0].readinessProbe.failureThreshold", "Invalid value: -1: must be greater than or equal to 0")]),
    ("liveness success threshold", lambda p: ctr(p).update(livenessProbe={"exec": {"command": ["true"]},
                                                                          "successThreshold": 2}),
     [("spec.containers[0].livenessProbe.successThreshold", "Invalid value: 2: must be 1")]),
    ("probe port", lambda p: ctr(p).update(readinessProbe={"httpGet": {"port": 0}}),
     [("spec.containers[0].readinessProbe.httpGet.port", f"Invalid value: 0: {PORT_RANGE}")]),
    ("exec probe command", lambda p: ctr(p).update(livenessProbe={"exec": {}}),
     [("spec.containers[0].livenessProbe.exec.command", "Required value")]),
    ("restart policy", lambda p: spec(p).update(restartPolicy="Sometimes"),
     [("spec.restartPolicy", 'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"')]),
    ("dns policy", lambda p: spec(p).update(dnsPolicy="Google"),
     [("spec.dnsPolicy", 'Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", '
                         '"Default", "None"')]),
    ("toleration without key", lambda p: spec(p).update(tolerations=[{"operator": "Equal", "value": "x"}]),
     [("spec.tolerations[0].operator", 'Invalid value: "Equal": operator must be Exists when `key` is empty, which '
                                       'means "match all values and all keys"')]),
    ("toleration seconds", lambda p: spec(p).update(tolerations=[{"key": "k", "operator": "Exists",
                                                                  "effect": "NoSchedule", "tolerationSeconds": 5}]),
     [("spec.tolerations[0].effect", "Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
                                     "`tolerationSeconds` is set")]),
    ("toleration operator", lambda p: spec(p).update(tolerations=[{"key": "k", "operator": "Near"}]),
     [("spec.tolerations[0].operator", 'Unsupported value: "Near": supported values: "Equal", "Exists"')]),
    ("toleration effect", lambda p: spec(p).update(tolerations=[{"key": "k", "operator": "Exists",
                                                                 "effect": "Maybe"}]),
     [("spec.tolerations[0].effect", 'Unsupported value: "Maybe": supported values: "NoSchedule", '
                                     '"PreferNoSchedule", "NoExecute"')]),
    ("tolerate everything", lambda p: spec(p).update(tolerations=[{"operator": "Exists"}]), []),
    ("volume mount of a missing volume", lambda p: ctr(p).update(volumeMounts=[{"name": "data", "mountPath": "/d"}]),
     [("spec.containers[0].volumeMounts[0].name", 'Not found: "data"')]),
    ("volume mount", lambda p: (ctr(p).update(volumeMounts=[{"name": "data", "mountPath": "/d"}]),
                                spec(p).update(volumes=[{"name": "data", "emptyDir": {}}])), []),
    ("host port conflict", lambda p: (ctr(p).update(ports=[{"containerPort": 80, "hostPort": 8080}]),
                                      spec(p)["containers"].append(container("d", ports=[
                                          {"containerPort": 81, "hostPort": 8080}]))),
     [("spec.containers[1].ports[0].hostPort", 'Duplicate value: "TCP//8080"')]),
    ("same host port, other protocol", lambda p: (
        ctr(p).update(ports=[{"containerPort": 53, "hostPort": 53}, {"containerPort": 53, "hostPort": 53,
                                                                      "protocol": "UDP"}])), []),
    ("restart policy on an app container", lambda p: ctr(p).update(restartPolicy="Always"),
     [("spec.containers[0].restartPolicy", "Forbidden: may not be set for non-init containers")]),
    ("sidecar", lambda p: spec(p).update(initContainers=[container("side", restartPolicy="Always")]), []),
    ("node name", lambda p: spec(p).update(nodeName="Worker_1"),
     [("spec.nodeName", f'Invalid value: "Worker_1": {DNS1123_SUBDOMAIN}')]),
    ("node selector", lambda p: spec(p).update(nodeSelector={"bad key": "x"}),
     [("spec.nodeSelector", f'Invalid value: "bad key": {QUALIFIED_NAME_PART}')]),
    ("active deadline", lambda p: spec(p).update(activeDeadlineSeconds=0),
     [("spec.activeDeadlineSeconds", "Invalid value: 0: must be between 1 and 2147483647, inclusive")]),
    ("pod name is a subdomain", lambda p: p["metadata"].update(name="web.0"), []),
    ("pod name", lambda p: p["metadata"].update(name="Web"),
     [("metadata.name", f'Invalid value: "Web": {DNS1123_SUBDOMAIN}')]),
    ("name required", lambda p: p["metadata"].pop("name"),
     [("metadata.name", "Required value: name or generateName is required")]),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod(case: str, mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    assert errors_of("Pod", mutate) == expected


def _go_map(labels: dict[str, str]) -> str:
    return go_value(labels)


DEPLOYMENT_CASES: list[tuple[str, Mutation, list[tuple[str, str]]]] = [
    ("negative replicas", lambda d: spec(d).update(replicas=-1),
     [("spec.replicas", "Invalid value: -1: must be greater than or equal to 0")]),
    ("zero replicas", lambda d: spec(d).update(replicas=0), []),
    ("selector required", lambda d: spec(d).pop("selector"), [("spec.selector", "Required value")]),
    ("empty selector", lambda d: spec(d).update(selector={}),
     [("spec.selector", "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
                        "deployment")]),
    ("selector does not match", lambda d: tpl(d)["metadata"].update(labels={"app": "other"}),
     [("spec.template.metadata.labels",
       'Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`')]),
    ("selector expression matches", lambda d: spec(d).update(selector={"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web", "api"]}]}), []),
    ("selector operator", lambda d: spec(d).update(selector={"matchExpressions": [
        {"key": "app", "operator": "Near", "values": ["web"]}]}),
     [("spec.selector.matchExpressions[0].operator", 'Invalid value: "Near": not a valid selector operator')]),
    ("selector values required", lambda d: spec(d).update(selector={"matchExpressions": [
        {"key": "app", "operator": "In"}]}),
     [("spec.selector.matchExpressions[0].values",
       "Required value: must be specified when `operator` is 'In' or 'NotIn'")]),
    ("selector values forbidden", lambda d: spec(d).update(selector={"matchExpressions": [
        {"key": "app", "operator": "Exists", "values": ["web"]}]}),
     [("spec.selector.matchExpressions[0].values",
       "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")]),
    ("template restart policy", lambda d: tpl(d)["spec"].update(restartPolicy="Never"),
     [("spec.template.spec.restartPolicy", 'Unsupported value: "Never": supported values: "Always"')]),
    ("template container image", lambda d: tpl(d)["spec"]["containers"][0].pop("image"),
     [("spec.template.spec.containers[0].image", "Required value")]),
    ("both zero", lambda d: spec(d).update(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": 0, "maxSurge": 0}}),
     [("spec.strategy.rollingUpdate.maxUnavailable",
       'Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0')]),
    ("both zero percent", lambda d: spec(d).update(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": "0%", "maxSurge": 0}}),
     [("spec.strategy.rollingUpdate.maxUnavailable",
       'Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"0%"}: may not be 0 when `maxSurge` is 0')]),
    ("surge over 100%", lambda d: spec(d).update(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": "150%"}}),
     [("spec.strategy.rollingUpdate.maxSurge", 'Invalid value: "150%": must not be greater than 100%')]),
    ("surge not a percentage", lambda d: spec(d).update(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": "lots"}}),
     [("spec.strategy.rollingUpdate.maxSurge", "Invalid value: \"lots\": must be an integer or percentage "
                                               "(e.g '5%')")]),
    ("negative surge", lambda d: spec(d).update(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": -1}}),
     [("spec.strategy.rollingUpdate.maxSurge", "Invalid value: -1: must be greater than or equal to 0")]),
    ("recreate with rolling update", lambda d: spec(d).update(strategy={"type": "Recreate", "rollingUpdate": {}}),
     [("spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy `type` is 'Recreate'")]),
    ("strategy type", lambda d: spec(d).update(strategy={"type": "BlueGreen"}),
     [("spec.strategy.type", 'Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"')]),
    ("progress deadline", lambda d: spec(d).update(minReadySeconds=700),
     [("spec.progressDeadlineSeconds", "Invalid value: 600: must be greater than minReadySeconds")]),
    ("labels", lambda d: d["metadata"].update(labels={"Example.com/app": "web"}),
     [("metadata.labels", 'Invalid value: "Example.com/app": prefix part ' + DNS1123_SUBDOMAIN)]),
    ("annotations", lambda d: d["metadata"].update(annotations={"a/b/c": "x"}),
     [("metadata.annotations",
       "Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
       "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
       "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
       "(e.g. 'example.com/MyName')")]),
    ("label value too long", lambda d: d["metadata"].update(labels={"app": "x" * 64}),
     [("metadata.labels", f'Invalid value: "{"x" * 64}": must be no more than 63 characters')]),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), DEPLOYMENT_CASES, ids=[c[0] for c in DEPLOYMENT_CASES])
def test_deployment(case: str, mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    assert errors_of("Deployment", mutate) == expected


OTHER_CASES: list[tuple[str, str, Mutation, list[tuple[str, str]]]] = [
    ("ReplicationController", "selector required", lambda rc: tpl(rc)["metadata"].pop("labels"),
     [("spec.selector", "Required value")]),
    ("ReplicationController", "selector mismatch", lambda rc: spec(rc).update(selector={"app": "other"}),
     [("spec.template.metadata.labels",
       'Invalid value: map[string]string{"app":"rc"}: `selector` does not match template `labels`')]),
    ("Namespace", "name is a DNS-1123 label", lambda ns: ns["metadata"].update(name="team.a"),
     [("metadata.name", f'Invalid value: "team.a": {DNS1123_LABEL}')]),
    ("Namespace", "name too long", lambda ns: ns["metadata"].update(name="a" * 64),
     [("metadata.name", f'Invalid value: "{"a" * 64}": must be no more than 63 characters')]),
    ("EndpointSlice", "address type", lambda s: s.update(addressType="IPv5"),
     [("addressType", 'Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"')]),
    ("EndpointSlice", "address", lambda s: s["endpoints"][0].update(addresses=["fd00::1"]),
     [("endpoints[0].addresses[0]", 'Invalid value: "fd00::1": must be a valid IPv4 address')]),
    ("EndpointSlice", "no address", lambda s: s["endpoints"][0].update(addresses=[]),
     [("endpoints[0].addresses", "Required value: must contain at least 1 address")]),
    ("EndpointSlice", "port", lambda s: s["ports"][0].update(port=0),
     [("ports[0].port", f"Invalid value: 0: {PORT_RANGE}")]),
    ("EndpointSlice", "port names", lambda s: s["ports"].append({"name": "http", "port": 8081}),
     [("ports[1].name", 'Duplicate value: "http"')]),
    ("EndpointSlice", "port protocol", lambda s: s["ports"][0].update(protocol="tcp"),
     [("ports[0].protocol", 'Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"')]),
    ("EndpointSlice", "zone hints", lambda s: s["endpoints"][0].update(hints={"forZones": [{"name": "zone-a"}]}), []),
    ("EndpointSlice", "zone hint twice", lambda s: s["endpoints"][0].update(
        hints={"forZones": [{"name": "zone-a"}, {"name": "zone-a"}]}),
     [("endpoints[0].hints.forZones[1].name", 'Duplicate value: "zone-a"')]),
    ("EndpointSlice", "too many zone hints", lambda s: s["endpoints"][0].update(
        hints={"forZones": [{"name": f"z{i}"} for i in range(9)]}),
     [("endpoints[0].hints.forZones", "Too many: 9: must have at most 8 items")]),
    ("Node", "taint effect", lambda n: spec(n).update(taints=[{"key": "k", "effect": "Sometimes"}]),
     [("spec.taints[0].effect", 'Unsupported value: "Sometimes": supported values: "NoSchedule", '
                                '"PreferNoSchedule", "NoExecute"')]),
    ("Node", "pod CIDR", lambda n: spec(n).update(podCIDR="10.244.1.0/33", podCIDRs=["10.244.1.0/33"]),
     [("spec.podCIDRs[0]", 'Invalid value: "10.244.1.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or '
                           '2001:db8::/64)')]),
    ("ConfigMap", "key", lambda c: c["data"].update({"bad key": "x"}),
     [("data[bad key]", "Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, "
                        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                        "is '[-._a-zA-Z0-9]+')")]),
    ("ConfigMap", "dot dot", lambda c: c["data"].update({"..": "x"}),
     [("data[..]", "Invalid value: \"..\": must not be '..'")]),
    ("ConfigMap", "key in data and binaryData", lambda c: c.update(binaryData={"key.name": "eA=="}),
     [("binaryData[key.name]", 'Invalid value: "key.name": duplicate of key present in data')]),
]


@pytest.mark.parametrize(("kind", "case", "mutate", "expected"), OTHER_CASES, ids=[f"{c[0]}-{c[1]}"
                                                                                   for c in OTHER_CASES])
def test_other_kinds(kind: str, case: str, mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    assert errors_of(kind, mutate) == expected


# -- updates ------------------------------------------------------------------------------------------------


def updated(kind: str, change: Mutation, prepare: Mutation | None = None) -> list[tuple[str, str]]:
    old = BUILDERS[kind]()
    if prepare is not None:
        prepare(old)
    default(kind, old)
    new = copy.deepcopy(old)
    change(new)
    default(kind, new)
    return [(e.field, e.message) for e in validate_update(kind, new, old)]


def with_cluster_ip(svc: Obj) -> None:
    spec(svc).update(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"])


POD_UPDATE_PREFIX = ("Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                     "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions "
                     "to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                     "previously negative)")


def test_pod_updates() -> None:
    assert updated("Pod", lambda p: ctr(p).update(image="nginx:1.26")) == []
    assert updated("Pod", lambda p: p["metadata"]["labels"].update(tier="x")) == []
    assert updated("Pod", lambda p: spec(p).update(activeDeadlineSeconds=30)) == []
    assert updated("Pod", lambda p: spec(p)["tolerations"].append({"key": "b", "operator": "Exists"}),
                   lambda p: spec(p).update(tolerations=[{"key": "a", "operator": "Exists"}])) == []
    for change in (lambda p: spec(p).update(restartPolicy="Never"),
                   lambda p: ctr(p).update(ports=[{"containerPort": 80}]),
                   lambda p: spec(p).update(tolerations=[])):
        errs = updated("Pod", change, lambda p: spec(p).update(tolerations=[{"key": "a", "operator": "Exists"}]))
        assert len(errs) == 1 and errs[0][0] == "spec" and errs[0][1].startswith(POD_UPDATE_PREFIX), errs


def test_service_cluster_ip_is_immutable() -> None:
    assert updated("Service", lambda s: spec(s).update(clusterIP="10.96.0.11", clusterIPs=["10.96.0.11"]),
                   with_cluster_ip) == [("spec.clusterIPs[0]", 'Invalid value: []string{"10.96.0.11"}: may not change '
                                         "once set")]
    assert updated("Service", lambda s: port0(s).update(port=81), with_cluster_ip) == []
    def to_external_name(svc: Obj) -> None:
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            spec(svc).pop(field)
        spec(svc).update(type="ExternalName", externalName="x.example.com")

    assert updated("Service", to_external_name, with_cluster_ip) == []


def test_workload_selectors_are_immutable() -> None:
    def change(d: Obj) -> None:
        spec(d)["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
        tpl(d)["metadata"]["labels"]["v"] = "2"

    errs = updated("Deployment", change)
    assert errs == [("spec.selector", 'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", '
                     '"v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable')]
    assert updated("Deployment", lambda d: spec(d).update(replicas=5)) == []


def test_endpoint_slice_address_type_and_immutable_config_map() -> None:
    assert updated("EndpointSlice", lambda s: (s.update(addressType="IPv6"),
                                               s["endpoints"][0].update(addresses=["fd00::1"]))) == [
        ("addressType", 'Invalid value: "IPv6": field is immutable')]
    assert updated("ConfigMap", lambda c: c["data"].update(x="y"), lambda c: c.update(immutable=True)) == [
        ("data", "Forbidden: field is immutable when `immutable` is set")]
    assert updated("ConfigMap", lambda c: c["data"].update(x="y")) == []


def test_field_error_is_a_frozen_value() -> None:
    error = FieldError("FieldValueRequired", "spec.containers", "Required value")
    with pytest.raises(AttributeError):
        error.field = "x"  # type: ignore[misc]
    assert error == FieldError("FieldValueRequired", "spec.containers", "Required value")


def test_admission_defaults_then_validates_and_tolerates_old_objects() -> None:
    admission = KubernetesAdmission()
    svc = service()
    admission.default("Service", svc)
    assert admission.validate_create("Service", svc) == []
    # A NodePort service turned ClusterIP loses its NodePort-only externalTrafficPolicy.
    old = service()
    spec(old).update(type="NodePort")
    admission.default("Service", old)
    new = copy.deepcopy(old)
    spec(new)["type"] = "ClusterIP"
    admission.default("Service", new)
    assert admission.validate_update("Service", new, old) == []
    assert "externalTrafficPolicy" not in spec(new)
    # And a LoadBalancer turned NodePort loses allocateLoadBalancerNodePorts.
    old = service()
    spec(old).update(type="LoadBalancer")
    admission.default("Service", old)
    new = copy.deepcopy(old)
    spec(new)["type"] = "NodePort"
    admission.default("Service", new)
    assert admission.validate_update("Service", new, old) == []
    assert "allocateLoadBalancerNodePorts" not in spec(new) and spec(new)["externalTrafficPolicy"] == "Cluster"
    # A ClusterIP service turned ExternalName loses its IPs and families.
    old = service()
    admission.default("Service", old)
    spec(old).update(clusterIP="10.96.0.7", clusterIPs=["10.96.0.7"])
    new = copy.deepcopy(old)
    spec(new).update(type="ExternalName", externalName="db.example.com")
    admission.default("Service", new)
    assert admission.validate_update("Service", new, old) == []
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(spec(new))
    # A pod stored before its defaults existed is not "changed" by them.
    stored = pod()
    current = copy.deepcopy(stored)
    admission.default("Pod", current)
    assert admission.validate_update("Pod", current, stored) == []
    with_status = copy.deepcopy(stored)
    with_status["status"] = {"phase": "Running"}
    assert admission.validate_update("Pod", with_status, stored) == []  # a status update of an undefaulted pod


# -- through the apiserver -------------------------------------------------------------------------------------


def test_invalid_objects_are_refused_with_causes(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SQLiteStore.open(str(tmp_path / "store.db"), compact_interval=None)
        registry = Registry(store, admission=KubernetesAdmission(), patcher=apply_patch,
                            allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
        await registry.start()
        await bootstrap(registry, service_cidr="10.96.0.0/16", advertise_address="127.0.0.1", port=6443)
        server = APIServer(registry, TokenAuthenticator({"admin": User("kubernetes-admin", ("system:masters",))}))
        server.ready = True
        http = TestClient(TestServer(server.app()), headers={"Authorization": "Bearer admin"})
        await http.start_server()
        try:
            bad = service()
            port0(bad)["port"] = 70000
            response = await http.post("/api/v1/namespaces/default/services", json=bad)
            assert response.status == 422
            status = await response.json()
            assert status["reason"] == "Invalid"
            assert status["message"] == ('Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: '
                                         "must be between 1 and 65535, inclusive")
            assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.ports[0].port",
                                                    "message": "Invalid value: 70000: must be between 1 and 65535, "
                                                               "inclusive"}]
            response = await http.post("/api/v1/namespaces/default/pods", json=pod())
            assert response.status == 201
            created = await response.json()
            assert created["spec"]["restartPolicy"] == "Always"
            assert created["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
            response = await http.patch("/api/v1/namespaces/default/pods/web-0",
                                        data=b'{"spec":{"restartPolicy":"Never"}}',
                                        headers={"Content-Type": "application/merge-patch+json"})
            assert response.status == 422
            status = await response.json()
            assert status["details"]["causes"][0]["reason"] == "FieldValueForbidden"
            response = await http.get("/api/v1/namespaces/default/services/kubernetes")
            assert (await response.json())["spec"]["sessionAffinity"] == "None"  # bootstrap passes validation
        finally:
            await http.close()
            await registry.stop()
            await store.close()

    asyncio.run(main())


# -- hostile shapes -----------------------------------------------------------------------------------------

HOSTILE: list[Any] = [None, True, -1, 0, 70000, 2**63, 1e308, "", "x" * 300, "..", "-", "None", "1.5.5", "-100m",
                      [], {}, [[[]]], [None], {"a": {"b": []}}, ["x", 1]]


def _hostile(obj: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(obj, dict) and obj and depth < 8:
        key = rng.choice(list(obj))
        roll = rng.random()
        if roll < 0.35:
            obj[key] = copy.deepcopy(rng.choice(HOSTILE))
        else:
            obj[key] = _hostile(obj[key], rng, depth + 1)
        return obj
    if isinstance(obj, list) and obj and depth < 8:
        index = rng.randrange(len(obj))
        obj[index] = _hostile(obj[index], rng, depth + 1)
        return obj
    return copy.deepcopy(rng.choice(HOSTILE))


def _rich(kind: str) -> Obj:
    """A valid object with most optional parts present, so that mutations reach them."""
    obj = BUILDERS[kind]()
    if kind in ("Pod", "Deployment", "ReplicationController"):
        pod_spec = obj["spec"] if kind == "Pod" else obj["spec"]["template"]["spec"]
        pod_spec.update(volumes=[{"name": "v", "configMap": {"name": "c"}}], tolerations=[{"key": "k",
                        "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}],
                        activeDeadlineSeconds=5 if kind == "Pod" else None, nodeSelector={"a": "b"})
        pod_spec["containers"][0].update(
            ports=[{"name": "http", "containerPort": 80}], env=[{"name": "A", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.name"}}}], resources={"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
            livenessProbe={"httpGet": {"port": "http"}}, volumeMounts=[{"name": "v", "mountPath": "/v"}])
    if kind == "Deployment":
        obj["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}}
        obj["spec"]["selector"]["matchExpressions"] = [{"key": "app", "operator": "In", "values": ["web"]}]
    if kind == "Service":
        obj["spec"].update(type="NodePort", sessionAffinity="ClientIP", clusterIP="10.96.0.5",
                           clusterIPs=["10.96.0.5"], externalIPs=["1.2.3.4"])
    if kind == "Node":
        obj["spec"]["taints"] = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    return obj


def test_validation_and_defaults_never_crash_on_hostile_shapes() -> None:
    rng = random.Random(20261125)
    kinds = sorted(BUILDERS)
    for _ in range(4000):
        kind = rng.choice(kinds)
        old = _rich(kind)
        default(kind, old)
        new = _hostile(copy.deepcopy(old), rng)
        if not isinstance(new, dict):
            continue
        default(kind, new)
        for error in validate(kind, new) + validate_update(kind, new, old):
            assert isinstance(error.message, str) and error.message and isinstance(error.field, str)
