"""AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) in the apiserver:
validation in the words of the network-policy-api CRDs, defaulting, strict decoding of the fields the
standard channel lacks, and the resources over HTTP (cluster-scoped, discovery, table, status)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from test_api_server import ADMIN, run

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.defaults import default
from control.apiserver.openapi import v3_document
from control.apiserver.registry import Registry
from control.apiserver.schema import unknown_fields
from control.apiserver.validation import FieldError, validate

API = "policy.networking.k8s.io/v1alpha1"
ANPS = f"/apis/{API}/adminnetworkpolicies"
BANPS = f"/apis/{API}/baselineadminnetworkpolicies"

ANP: dict[str, Any] = {
    "apiVersion": API, "kind": "AdminNetworkPolicy", "metadata": {"name": "deny-y"},
    "spec": {
        "priority": 10,
        "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
        "ingress": [{"name": "no-y", "action": "Deny", "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}],
                     "ports": [{"portNumber": {"port": 80}}, {"portRange": {"start": 8000, "end": 9000}},
                               {"namedPort": "http"}]}],
        "egress": [{"action": "Pass", "to": [{"networks": ["10.0.0.0/8"]},
                                            {"pods": {"namespaceSelector": {}, "podSelector": {}}}]}],
    },
}
BANP: dict[str, Any] = {
    "apiVersion": API, "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
    "spec": {"subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}},
             "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]},
}


def errors(obj: dict[str, Any]) -> list[FieldError]:
    obj = copy.deepcopy(obj)
    default(obj["kind"], obj)
    return validate(obj["kind"], obj)


def edited(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """OBJ with the dotted PATH (list indexes as numbers) set to VALUE, or removed when VALUE is ..."""
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    here: Any = obj
    for key in parents:
        here = here[int(key)] if isinstance(here, list) else here[key]
    key_: Any = int(last) if isinstance(here, list) else last
    if value is ...:
        del here[key_]
    else:
        here[key_] = value
    return obj


def test_valid_policies_pass_and_protocols_default_to_tcp() -> None:
    assert errors(ANP) == [] and errors(BANP) == []
    obj = copy.deepcopy(ANP)
    default("AdminNetworkPolicy", obj)
    ports = obj["spec"]["ingress"][0]["ports"]
    assert ports[0]["portNumber"]["protocol"] == "TCP" and ports[1]["portRange"]["protocol"] == "TCP"
    assert "protocol" not in ports[2]  # a named port has none


@pytest.mark.parametrize(("path", "value", "field", "message"), [
    ("spec.priority", 1001, "spec.priority",
     "Invalid value: 1001: spec.priority in body should be less than or equal to 1000"),
    ("spec.priority", -1, "spec.priority",
     "Invalid value: -1: spec.priority in body should be greater than or equal to 0"),
    ("spec.priority", ..., "spec.priority", "Required value"),
    ("spec.subject", ..., "spec.subject", "Required value"),
    ("spec.subject.pods", {"namespaceSelector": {}, "podSelector": {}}, "spec.subject",
     "Too many: 2: must have at most 1 items"),
    ("spec.ingress.0.action", "Drop", "spec.ingress[0].action",
     'Unsupported value: "Drop": supported values: "Allow", "Deny", "Pass"'),
    ("spec.ingress.0.action", ..., "spec.ingress[0].action", "Required value"),
    ("spec.ingress.0.from", [], "spec.ingress[0].from",
     "spec.ingress[0].from in body should have at least 1 items"),
    ("spec.ingress.0.from.0", {}, "spec.ingress[0].from[0]",
     "spec.ingress[0].from[0] in body should have at least 1 properties"),
    ("spec.ingress.0.ports.0.portNumber.port", 0, "spec.ingress[0].ports[0].portNumber.port",
     "Invalid value: 0: spec.ingress[0].ports[0].portNumber.port in body should be greater than or equal to 1"),
    ("spec.ingress.0.ports.0.portNumber.protocol", "ICMP", "spec.ingress[0].ports[0].portNumber.protocol",
     'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'),
    ("spec.ingress.0.ports.1.portRange.end", 7000, "spec.ingress[0].ports[1].portRange.end",
     "Invalid value: 7000: must be greater than start (8000)"),
    ("spec.ingress.0.ports.2", {"namedPort": "http", "portNumber": {"port": 80}}, "spec.ingress[0].ports[2]",
     "Too many: 2: must have at most 1 items"),
    ("spec.egress.0.to.0.networks", ["10.0.0.300/8"], "spec.egress[0].to[0].networks[0]",
     'Invalid value: "10.0.0.300/8": Invalid CIDR format provided'),
    ("spec.egress.0.to.0.networks", [], "spec.egress[0].to[0].networks",
     "spec.egress[0].to[0].networks in body should have at least 1 items"),
    ("spec.ingress.0.name", "n" * 101, "spec.ingress[0].name", "should be at most 100 chars long"),
    ("spec.ingress.0.from.0.namespaces", {"matchExpressions": [{"key": "ns", "operator": "Like"}]},
     "spec.ingress[0].from[0].namespaces.matchExpressions[0].operator", "not a valid selector operator"),
])
def test_an_admin_network_policy_error_names_its_field(path: str, value: Any, field: str, message: str) -> None:
    found = errors(edited(ANP, path, value))
    assert [e.field for e in found] == [field], found
    assert message in found[0].message, found[0].message


def test_the_baseline_is_a_singleton_named_default_and_cannot_pass() -> None:
    found = errors(edited(BANP, "metadata.name", "other"))
    assert [(e.field, e.message) for e in found] == [("metadata.name", 'Invalid value: "other": Only one baseline '
                                                      'admin network policy with metadata.name="default" can be '
                                                      "created in the cluster")]
    found = errors(edited(BANP, "spec.ingress.0.action", "Pass"))
    assert [(e.field, e.message) for e in found] == [
        ("spec.ingress[0].action", 'Unsupported value: "Pass": supported values: "Allow", "Deny"')]
    # It has no priority: it is always evaluated last.
    assert unknown_fields("BaselineAdminNetworkPolicy", edited(BANP, "spec.priority", 5)) == ["spec.priority"]


def test_the_experimental_fields_are_unknown_to_strict_decoding() -> None:
    nodes = edited(ANP, "spec.egress.0.to.0", {"nodes": {}})
    assert unknown_fields("AdminNetworkPolicy", nodes) == ["spec.egress[0].to[0].nodes"]
    networks_in = edited(ANP, "spec.ingress.0.from.0", {"networks": ["10.0.0.0/8"]})
    assert unknown_fields("AdminNetworkPolicy", networks_in) == ["spec.ingress[0].from[0].networks"]
    assert unknown_fields("AdminNetworkPolicy", copy.deepcopy(ANP)) == []


def test_the_resources_over_http(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        group = await (await client.get(f"/apis/{API}", headers=ADMIN)).json()
        served = {r["name"]: r for r in group["resources"]}
        assert served["adminnetworkpolicies"]["namespaced"] is False
        assert served["adminnetworkpolicies"]["shortNames"] == ["anp"]
        assert served["baselineadminnetworkpolicies"]["shortNames"] == ["banp"]
        assert "adminnetworkpolicies/status" in served

        resp = await client.post(ANPS, json=ANP, headers=ADMIN)
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        assert created["spec"]["ingress"][0]["ports"][0]["portNumber"]["protocol"] == "TCP"
        assert created["metadata"]["generation"] == 1

        resp = await client.post(ANPS, json=edited(edited(ANP, "metadata.name", "bad"), "spec.priority", 1001),
                                 headers=ADMIN)
        assert resp.status == 422
        status = await resp.json()
        assert status["details"]["causes"][0]["field"] == "spec.priority"
        assert status["message"].startswith('AdminNetworkPolicy "bad" is invalid: spec.priority: ')

        # An experimental peer this server does not serve: dropped as unknown, which leaves an empty peer.
        nodes = edited(edited(ANP, "metadata.name", "to-nodes"), "spec.egress.0.to.0", {"nodes": {}})
        resp = await client.post(ANPS, json=nodes, headers=ADMIN)
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["details"]["causes"][0]["field"] == "spec.egress[0].to[0]"

        resp = await client.post(BANPS, json=edited(BANP, "metadata.name", "mine"), headers=ADMIN)
        assert resp.status == 422
        assert (await resp.json())["details"]["causes"][0]["field"] == "metadata.name"
        assert (await client.post(BANPS, json=BANP, headers=ADMIN)).status == 201

        table = await (await client.get(ANPS, headers={
            **ADMIN, "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Priority", "Age"]
        assert table["rows"][0]["cells"][:2] == ["deny-y", "10"]

        # Cluster-scoped: the object carries no namespace.
        assert "namespace" not in created["metadata"]
        listed = await (await client.get(ANPS, headers=ADMIN)).json()
        assert listed["kind"] == "AdminNetworkPolicyList" and [i["metadata"]["name"] for i in listed["items"]] == [
            "deny-y"]

    run(scenario, tmp_path, admission=KubernetesAdmission(), unknown_fields=unknown_fields)


def test_openapi_describes_the_kinds_for_kubectl() -> None:
    document = v3_document(f"apis/{API}")
    assert document is not None
    schemas = document["components"]["schemas"]
    anp = schemas["io.k8s.networking.policy.v1alpha1.AdminNetworkPolicy"]
    assert anp["x-kubernetes-group-version-kind"] == [
        {"group": "policy.networking.k8s.io", "version": "v1alpha1", "kind": "AdminNetworkPolicy"}]
    peer = schemas["io.k8s.networking.policy.v1alpha1.AdminNetworkPolicyEgressPeer"]
    assert set(peer["properties"]) == {"namespaces", "pods", "networks"}
    assert f"/apis/{API}/adminnetworkpolicies/{{name}}/status" in document["paths"]
