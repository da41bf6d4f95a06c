"""`kubesim policy`'s answers from a snapshot: pods by name, Services judged on their endpoints, matrices."""

from __future__ import annotations

import pytest

from kubesim.errors import PolicyQueryError
from kubesim.policy import Snapshot, explain, matrix, matrix_json, render_verdict, verdict_json
from netpol.decide import ClusterView
from netpol.model import parse_namespace, parse_pod, parse_policy
from tests.netpol_cases import ALL_PODS, DENY_INGRESS_X, cluster_objects, default_addresses, policy

IPS, NODES = default_addresses()
SERVICE = {"metadata": {"namespace": "x", "name": "web"},
           "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
SLICE = {"metadata": {"namespace": "x", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": [IPS[ALL_PODS[0]]]}, {"addresses": [IPS[ALL_PODS[1]]]}]}


def snap(*policies: dict) -> Snapshot:
    namespaces, pods = cluster_objects(IPS, NODES)
    view = ClusterView(policies=[parse_policy(p) for p in policies],
                       pods=[p for p in (parse_pod(o) for o in pods) if p],
                       namespaces=[parse_namespace(o) for o in namespaces])
    return Snapshot(view, [SERVICE], [SLICE])


def test_a_cluster_ip_is_judged_on_each_endpoint_after_dnat() -> None:
    allow_a = policy("x", "a-8080", {"podSelector": {"matchLabels": {"pod": "a"}},
                                     "ingress": [{"ports": [{"port": 8080}]}]})
    verdicts = explain(snap(DENY_INGRESS_X, allow_a), "y/a", "10.96.0.50:80", "TCP")
    assert [(v.dst, v.port, v.allowed) for v in verdicts] == [(IPS[ALL_PODS[0]], 8080, True),
                                                              (IPS[ALL_PODS[1]], 8080, False)]
    text = render_verdict(snap(DENY_INGRESS_X, allow_a), verdicts[1])
    assert text[0].endswith("TCP/8080: DENIED")
    assert text[2].strip() == "ingress  x/b is isolated for ingress by x/deny-ingress; no rule allows it"
    assert verdict_json(snap(DENY_INGRESS_X), verdicts[0])["ingress"]["rule"] == {
        "policy": "x/a-8080", "direction": "Ingress", "index": 0}


def test_pods_by_name_and_clear_errors() -> None:
    assert explain(snap(), "x/a", "y/b:81", "TCP")[0].allowed
    with pytest.raises(PolicyQueryError, match="no running pod x/nope"):
        explain(snap(), "x/nope", "y/b:81", "TCP")
    with pytest.raises(PolicyQueryError, match="must be ADDRESS:PORT"):
        explain(snap(), "x/a", "y/b", "TCP")
    with pytest.raises(PolicyQueryError, match="has no TCP port 81"):
        explain(snap(), "x/a", "10.96.0.50:81", "TCP")


def test_matrix_draws_a_namespaces_truth_table() -> None:
    deny_b = policy("x", "deny-b", {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Ingress"]})
    assert matrix(snap(deny_b), "x", 80, "TCP").splitlines() == [
        "-\ta\tb\tc",
        "a\t.\tX\t.",
        "b\t.\t.\t.",
        "c\t.\tX\t.",
    ]
    with pytest.raises(PolicyQueryError, match="no running pods"):
        matrix(snap(), "nowhere", 80, "TCP")
    # The same answers as data (`kubesim policy --matrix x --json`).
    assert matrix_json(snap(deny_b), "x", 80, "TCP") == {
        "namespace": "x", "port": 80, "protocol": "TCP", "pods": ["a", "b", "c"],
        "allowed": {src: {"a": True, "b": src == "b", "c": True} for src in "abc"}}
