"""NetworkPolicy (networking.k8s.io/v1) as upstream serves it: defaulting (pkg/apis/networking/v1/defaults.go),
validation with upstream's field paths and messages (pkg/apis/networking/validation), kubectl's columns
(printers.go) and the 422 Status through the apiserver."""

from __future__ import annotations

import asyncio
import copy
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
from control.apiserver.protobuf import decode_protobuf
from control.apiserver.registry import Registry
from control.apiserver.server import APIServer
from control.apiserver.tables import to_table
from control.apiserver.validation import validate, validate_update
from control.store import SQLiteStore
from tests.unit.apiserver.test_protobuf import entry, envelope, int_or_string, msg, num, object_meta, text

Obj = dict[str, Any]

LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
               "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex "
               "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
NAME_PART = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
SUBSET = "must be a strict subset of `cidr`"
PORT_RANGE = "must be between 1 and 65535, inclusive"


def policy(**spec: Any) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, **spec}}


def ingress_from(*peers: Obj, ports: list[Obj] | None = None) -> Obj:
    rule: Obj = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return policy(ingress=[rule])


def errors(obj: Obj) -> list[tuple[str, str]]:
    obj = copy.deepcopy(obj)
    default("NetworkPolicy", obj)
    return [(e.field, e.message) for e in validate("NetworkPolicy", obj)]


# -- defaulting ---------------------------------------------------------------------------------------------


def defaulted(obj: Obj) -> Obj:
    default("NetworkPolicy", obj)
    return obj


def test_policy_types_are_inferred_when_empty() -> None:
    assert defaulted(policy())["spec"]["policyTypes"] == ["Ingress"]
    assert defaulted(policy(ingress=[{}]))["spec"]["policyTypes"] == ["Ingress"]
    assert defaulted(policy(egress=[]))["spec"]["policyTypes"] == ["Ingress"]
    assert defaulted(policy(egress=[{}]))["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert defaulted(policy(policyTypes=[]))["spec"]["policyTypes"] == ["Ingress"]
    # Set by the caller: kept, even an egress-only policy with egress rules.
    assert defaulted(policy(policyTypes=["Egress"], egress=[{}]))["spec"]["policyTypes"] == ["Egress"]
    assert defaulted({"metadata": {"name": "x"}})["spec"]["policyTypes"] == ["Ingress"]


def test_port_protocol_defaults_to_tcp() -> None:
    obj = defaulted(policy(ingress=[{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}, {}]}],
                           egress=[{"ports": [{"port": "dns"}]}]))
    assert [p["protocol"] for p in obj["spec"]["ingress"][0]["ports"]] == ["TCP", "UDP", "TCP"]
    assert obj["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"


def test_admission_defaults_on_update_too() -> None:
    admission = KubernetesAdmission()
    old = defaulted(policy())
    new = policy(egress=[{"ports": [{"port": 53}]}])
    admission.default("NetworkPolicy", new)
    assert new["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert new["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
    assert admission.validate_update("NetworkPolicy", new, old) == []


# -- valid policies -----------------------------------------------------------------------------------------

VALID: dict[str, Obj] = {
    "deny-all": policy(podSelector={}),
    "allow-from-selectors": ingress_from({"podSelector": {"matchLabels": {"role": "client"}}},
                                         {"namespaceSelector": {"matchExpressions": [
                                             {"key": "team", "operator": "In", "values": ["a", "b"]}]}},
                                         {"podSelector": {}, "namespaceSelector": {}}),
    "ip-block": ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24", "10.0.2.128/25"]}}),
    "ip-block-host-bits": ingress_from({"ipBlock": {"cidr": "10.0.0.1/16", "except": ["10.0.1.7/24"]}}),
    "ipv6-block": ingress_from({"ipBlock": {"cidr": "fd00::/48", "except": ["fd00::/64"]}}),
    "ports": ingress_from(ports=[{"port": 80}, {"port": "http"}, {"port": 8000, "endPort": 8080},
                                 {"port": 9000, "endPort": 9000}, {"protocol": "UDP"}, {"protocol": "SCTP",
                                                                                         "port": 3868}]),
    "egress": policy(egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
                              "ports": [{"port": 443}]}], policyTypes=["Egress"]),
    "both-types": policy(ingress=[{}], egress=[{}], policyTypes=["Ingress", "Egress"]),
    "selector-operators": policy(podSelector={"matchExpressions": [
        {"key": "a", "operator": "Exists"}, {"key": "example.com/b", "operator": "DoesNotExist"},
        {"key": "c", "operator": "NotIn", "values": ["x", ""]}]}),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_policies(name: str) -> None:
    assert errors(VALID[name]) == []


# -- invalid policies: each the exact (field, message) upstream reports --------------------------------------

Case = tuple[Obj, list[tuple[str, str]]]
P0 = "spec.ingress[0].ports[0]"
F0 = "spec.ingress[0].from[0]"

INVALID: dict[str, Case] = {
    # ports
    "protocol-unsupported": (ingress_from(ports=[{"protocol": "ICMP", "port": 80}]),
                             [(f"{P0}.protocol", 'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"')]),
    "protocol-lowercase": (ingress_from(ports=[{"protocol": "tcp"}]),
                           [(f"{P0}.protocol", 'Unsupported value: "tcp": supported values: "TCP", "UDP", "SCTP"')]),
    "port-zero": (ingress_from(ports=[{"port": 0}]), [(f"{P0}.port", f"Invalid value: 0: {PORT_RANGE}")]),
    "port-too-big": (ingress_from(ports=[{"port": 65536}]), [(f"{P0}.port", f"Invalid value: 65536: {PORT_RANGE}")]),
    "port-name-uppercase": (ingress_from(ports=[{"port": "HTTP"}]), [
        (f"{P0}.port", 'Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)'),
        (f"{P0}.port", 'Invalid value: "HTTP": must contain at least one letter (a-z)')]),
    "port-name-hyphens": (ingress_from(ports=[{"port": "a--b"}]),
                          [(f"{P0}.port", 'Invalid value: "a--b": must not contain consecutive hyphens')]),
    "port-name-too-long": (ingress_from(ports=[{"port": "abcdefghijklmnop"}]),
                           [(f"{P0}.port", 'Invalid value: "abcdefghijklmnop": must be no more than 15 characters')]),
    "port-name-digits": (ingress_from(ports=[{"port": "8080"}]),
                         [(f"{P0}.port", 'Invalid value: "8080": must contain at least one letter (a-z)')]),
    "end-port-named": (ingress_from(ports=[{"port": "http", "endPort": 90}]),
                       [(f"{P0}.endPort", "Invalid value: 90: may not be specified when `port` is non-numeric")]),
    "end-port-without-port": (ingress_from(ports=[{"endPort": 90}]),
                              [(f"{P0}.endPort", "Invalid value: 90: may not be specified when `port` is not "
                                                 "specified")]),
    "end-port-below-port": (ingress_from(ports=[{"port": 90, "endPort": 80}]),
                            [(f"{P0}.endPort", "Invalid value: 80: must be greater than or equal to `port`")]),
    "end-port-too-big": (ingress_from(ports=[{"port": 90, "endPort": 70000}]),
                         [(f"{P0}.endPort", f"Invalid value: 70000: {PORT_RANGE}")]),
    "end-port-zero": (ingress_from(ports=[{"port": 1, "endPort": 0}]), [
        (f"{P0}.endPort", "Invalid value: 0: must be greater than or equal to `port`"),
        (f"{P0}.endPort", f"Invalid value: 0: {PORT_RANGE}")]),
    "egress-port-path": (policy(egress=[{"ports": [{}, {"port": 0}]}]),
                         [("spec.egress[0].ports[1].port", f"Invalid value: 0: {PORT_RANGE}")]),
    # peers
    "empty-peer": (ingress_from({}), [(F0, "Required value: must specify a peer")]),
    "ip-block-and-pod-selector": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
                                  [(F0, "Forbidden: may not specify both ipBlock and another peer")]),
    "ip-block-and-namespace-selector": (
        policy(egress=[{"to": [{}, {"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}]}]),
        [("spec.egress[0].to[0]", "Required value: must specify a peer"),
         ("spec.egress[0].to[1]", "Forbidden: may not specify both ipBlock and another peer")]),
    # ipBlock
    "cidr-missing": (ingress_from({"ipBlock": {"except": ["10.0.0.0/24"]}}),
                     [(f"{F0}.ipBlock.cidr", "Required value")]),
    "cidr-not-a-cidr": (ingress_from({"ipBlock": {"cidr": "10.0.0.1", "except": ["x"]}}),
                        [(f"{F0}.ipBlock.cidr", f'Invalid value: "10.0.0.1": {CIDR}')]),
    "cidr-prefix-too-long": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/33"}}),
                             [(f"{F0}.ipBlock.cidr", f'Invalid value: "10.0.0.0/33": {CIDR}')]),
    "cidr-netmask": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/255.0.0.0"}}),
                     [(f"{F0}.ipBlock.cidr", f'Invalid value: "10.0.0.0/255.0.0.0": {CIDR}')]),
    "except-not-a-cidr": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/24", "bogus"]}}),
                          [(f"{F0}.ipBlock.except[1]", f'Invalid value: "bogus": {CIDR}')]),
    "except-outside": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}),
                       [(f"{F0}.ipBlock.except[0]", f'Invalid value: "10.1.0.0/24": {SUBSET}')]),
    "except-equal": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}),
                     [(f"{F0}.ipBlock.except[0]", f'Invalid value: "10.0.0.0/16": {SUBSET}')]),
    "except-wider": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8"]}}),
                     [(f"{F0}.ipBlock.except[0]", f'Invalid value: "10.0.0.0/8": {SUBSET}')]),
    "except-other-family": (ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}),
                            [(f"{F0}.ipBlock.except[0]", f'Invalid value: "fd00::/64": {SUBSET}')]),
    "egress-except-path": (policy(egress=[{"to": [{"ipBlock": {"cidr": "fd00::/64", "except": ["fd01::/80"]}}]}]),
                           [("spec.egress[0].to[0].ipBlock.except[0]", f'Invalid value: "fd01::/80": {SUBSET}')]),
    # label selectors
    "selector-bad-operator": (policy(podSelector={"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
                              [("spec.podSelector.matchExpressions[0].operator",
                                'Invalid value: "Equals": not a valid selector operator')]),
    "selector-in-without-values": (
        policy(podSelector={"matchExpressions": [{"key": "a", "operator": "In"}]}),
        [("spec.podSelector.matchExpressions[0].values",
          "Required value: must be specified when `operator` is 'In' or 'NotIn'")]),
    "selector-exists-with-values": (
        policy(podSelector={"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        [("spec.podSelector.matchExpressions[0].values",
          "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")]),
    "selector-bad-key": (policy(podSelector={"matchExpressions": [{"key": "-a", "operator": "Exists"}]}),
                         [("spec.podSelector.matchExpressions[0].key", f'Invalid value: "-a": {NAME_PART}')]),
    "selector-bad-value": (policy(podSelector={"matchExpressions": [{"key": "a", "operator": "In",
                                                                     "values": ["ok", "not ok"]}]}),
                           [("spec.podSelector.matchExpressions[0].values[1]",
                             f'Invalid value: "not ok": {LABEL_VALUE}')]),
    "selector-bad-match-labels": (policy(podSelector={"matchLabels": {"app": "-web"}}),
                                  [("spec.podSelector.matchLabels", f'Invalid value: "-web": {LABEL_VALUE}')]),
    "peer-namespace-selector-path": (
        ingress_from({"podSelector": {}, "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "X"}]}}),
        [(f"{F0}.namespaceSelector.matchExpressions[0].operator",
          'Invalid value: "X": not a valid selector operator')]),
    "peer-pod-selector-path": (
        policy(egress=[{"to": [{"podSelector": {"matchLabels": {"bad key": "v"}}}]}]),
        [("spec.egress[0].to[0].podSelector.matchLabels", f'Invalid value: "bad key": {NAME_PART}')]),
    # policyTypes
    "policy-type-unsupported": (policy(policyTypes=["Ingress", "ingress"]),
                                [("spec.policyTypes[1]", 'Unsupported value: "ingress": supported values: "Ingress", '
                                                         '"Egress"')]),
    "policy-types-too-many": (policy(policyTypes=["Ingress", "Egress", "Ingress"]),
                              [("spec.policyTypes", 'Invalid value: []networking.PolicyType{"Ingress", "Egress", '
                                                    '"Ingress"}: may not specify more than two policyTypes')]),
    # metadata
    "bad-name": (policy() | {"metadata": {"name": "Web", "namespace": "default"}},
                 [("metadata.name", 'Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower case '
                                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                                    "character (e.g. 'example.com', regex used for validation is "
                                    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_policies(name: str) -> None:
    obj, expected = INVALID[name]
    assert errors(obj) == expected


# -- updates ------------------------------------------------------------------------------------------------


def _update_errors(new: Obj, old: Obj) -> list[tuple[str, str]]:
    new, old = defaulted(copy.deepcopy(new)), defaulted(copy.deepcopy(old))
    return [(e.field, e.message) for e in validate_update("NetworkPolicy", new, old)]


def test_update_keeps_accepting_what_the_old_object_held() -> None:
    # Stored before today's checks: a CIDR and a selector value that a create would refuse.
    old = policy(podSelector={"matchExpressions": [{"key": "a", "operator": "In", "values": ["not ok"]}]},
                 ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/33", "except": []}}]}])
    new = copy.deepcopy(old)
    new["spec"]["ingress"].append({"ports": [{"port": 80}]})
    assert errors(old) != []
    assert _update_errors(new, old) == []
    # A CIDR that is new in the update is judged.
    new["spec"]["ingress"][1]["from"] = [{"ipBlock": {"cidr": "10.0.0.0/34"}}]
    assert _update_errors(new, old) == [("spec.ingress[1].from[0].ipBlock.cidr",
                                         f'Invalid value: "10.0.0.0/34": {CIDR}')]


def test_update_of_a_valid_object_is_judged_as_a_create() -> None:
    old = policy()
    new = ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}})
    assert _update_errors(new, old) == [(f"{F0}.ipBlock.except[0]", f'Invalid value: "10.1.0.0/24": {SUBSET}')]
    new = policy(podSelector={"matchExpressions": [{"key": "a", "operator": "In", "values": ["not ok"]}]})
    assert _update_errors(new, old) == [("spec.podSelector.matchExpressions[0].values[0]",
                                         f'Invalid value: "not ok": {LABEL_VALUE}')]


def test_hostile_shapes_never_crash() -> None:
    for value in (None, True, -1, "", "x", [], {}, [None], [[]], {"a": []}, 2**40):
        for path in (("spec",), ("spec", "ingress"), ("spec", "ingress", 0), ("spec", "ingress", 0, "from"),
                     ("spec", "ingress", 0, "from", 0, "ipBlock"), ("spec", "ingress", 0, "ports", 0, "port"),
                     ("spec", "policyTypes"), ("spec", "podSelector", "matchExpressions")):
            obj = ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/9"]}}, ports=[{"port": 1}])
            target: Any = obj
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = copy.deepcopy(value)
            default("NetworkPolicy", obj)
            validate("NetworkPolicy", obj)


# -- kubectl's table ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("selector", "shown"), [
    ({}, "<none>"),
    (None, "<none>"),
    ({"matchLabels": {"tier": "db", "app": "web"}}, "app=web,tier=db"),
    ({"matchLabels": {"z": "1"}, "matchExpressions": [
        {"key": "b", "operator": "In", "values": ["y", "x"]}, {"key": "c", "operator": "NotIn", "values": ["q"]},
        {"key": "a", "operator": "Exists"}, {"key": "d", "operator": "DoesNotExist"}]},
     "a,b in (x,y),c notin (q),!d,z=1"),
])
def test_pod_selector_column(selector: Obj | None, shown: str) -> None:
    obj = policy(podSelector=selector)
    obj["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    table = to_table("networkpolicies", [obj])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Pod-Selector", "Age"]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0]
    name, column, age = table["rows"][0]["cells"]
    assert (name, column) == ("web", shown)
    assert age.endswith("d") or "y" in age


# -- protobuf (networking/v1 generated.proto) ----------------------------------------------------------------


def test_protobuf_body_decodes_to_the_json_shape() -> None:
    selector = msg(1, entry(1, "app", text(2, "web")))
    peer = msg(2, msg(3, text(1, "10.0.0.0/16"), text(2, "10.0.1.0/24")))
    port = msg(1, text(1, "UDP"), int_or_string(2, 53), num(3, 60))
    spec = msg(2, selector, msg(2, port, peer), msg(3, msg(2, msg(2))), text(4, "Ingress"), text(4, "Egress"))
    decoded = decode_protobuf(envelope("networking.k8s.io/v1", "NetworkPolicy",
                                       msg(1, object_meta("web", namespace="default")) + spec))
    assert decoded["kind"] == "NetworkPolicy"
    assert decoded["spec"] == {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"ports": [{"protocol": "UDP", "port": 53, "endPort": 60}],
                     "from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}]}],
        "egress": [{"to": [{"namespaceSelector": {}}]}],
        "policyTypes": ["Ingress", "Egress"]}


# -- through the apiserver -----------------------------------------------------------------------------------

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
COLLECTION = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"


def _with_server(tmp_path: Path, scenario: Callable[[TestClient], Any]) -> None:
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
            await scenario(http)
        finally:
            await http.close()
            await registry.stop()
            await store.close()

    asyncio.run(main())


def test_served_defaulted_listed_and_refused_with_causes(tmp_path: Path) -> None:
    async def scenario(http: TestClient) -> None:
        resources = await (await http.get("/apis/networking.k8s.io/v1")).json()
        served = {r["name"]: r for r in resources["resources"]}
        assert served["networkpolicies"]["kind"] == "NetworkPolicy"
        assert served["networkpolicies"]["namespaced"] is True
        assert served["networkpolicies"]["shortNames"] == ["netpol"]
        assert "networkpolicies/status" not in served

        created = await http.post(COLLECTION, json=policy(egress=[{"ports": [{"port": 53}]}]))
        assert created.status == 201, await created.text()
        body = await created.json()
        assert body["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert body["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"

        table = await (await http.get(COLLECTION, headers={"Accept": TABLE})).json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Pod-Selector", "Age"]
        assert table["rows"][0]["cells"][:2] == ["web", "app=web"]

        bad = ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}, "podSelector": {}})
        bad["metadata"]["name"] = "bad"
        response = await http.post(COLLECTION, json=bad)
        assert response.status == 422
        status = await response.json()
        assert status["reason"] == "Invalid"
        assert status["details"]["kind"] == "NetworkPolicy"
        assert status["details"]["group"] == "networking.k8s.io"
        assert status["details"]["causes"] == [
            {"reason": "FieldValueInvalid", "field": "spec.ingress[0].from[0].ipBlock.except[0]",
             "message": f'Invalid value: "10.1.0.0/24": {SUBSET}'},
            {"reason": "FieldValueForbidden", "field": "spec.ingress[0].from[0]",
             "message": "Forbidden: may not specify both ipBlock and another peer"}]
        assert status["message"].endswith('"bad" is invalid: [spec.ingress[0].from[0].ipBlock.except[0]: Invalid '
                                          f'value: "10.1.0.0/24": {SUBSET}, spec.ingress[0].from[0]: Forbidden: may '
                                          'not specify both ipBlock and another peer]')

        patched = await http.patch(f"{COLLECTION}/web", data=b'{"spec":{"policyTypes":["Sideways"]}}',
                                   headers={"Content-Type": "application/merge-patch+json"})
        assert patched.status == 422
        causes = (await patched.json())["details"]["causes"]
        assert causes == [{"reason": "FieldValueNotSupported", "field": "spec.policyTypes[0]",
                           "message": 'Unsupported value: "Sideways": supported values: "Ingress", "Egress"'}]

    _with_server(tmp_path, scenario)
