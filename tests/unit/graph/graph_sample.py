"""Cluster facts for the graph tests, shaped as kubesim.graph.facts gathers them: three nodes (vxlan),
an external host, pods on two workers (one hostNetwork), one not scheduled, and Services whose endpoints
are pods, a node (the apiserver) and an address outside the cluster."""

from __future__ import annotations

import copy
from typing import Any

NODES = ("control-plane", "worker-1", "worker-2")
PODS = ("echo-7d9f-abcde", "echo-7d9f-fghij", "coredns-5c6b-x1", "node-agent-w2", "pending-one")

_FACTS: dict[str, Any] = {
    "cluster": "demo", "mode": "vxlan",
    "network": {"nodeCIDR": "172.18.0.0/16", "clusterCIDR": "10.244.0.0/16", "serviceCIDR": "10.96.0.0/16",
                "hostAddress": "172.18.0.1", "hostLink": "ksim-abcdef"},
    "nodes": [{"name": "control-plane", "role": "control-plane", "address": "172.18.0.2", "podCIDR": "10.244.0.0/24"},
              {"name": "worker-1", "role": "worker", "address": "172.18.0.3", "podCIDR": "10.244.1.0/24"},
              {"name": "worker-2", "role": "worker", "address": "172.18.0.4", "podCIDR": "10.244.2.0/24"}],
    "externalHosts": [{"name": "client", "address": "172.18.0.100"}],
    "pods": [
        {"namespace": "default", "name": "echo-7d9f-abcde", "node": "worker-1", "ip": "10.244.1.2", "uid": "u-1",
         "phase": "Running"},
        {"namespace": "default", "name": "echo-7d9f-fghij", "node": "worker-2", "ip": "10.244.2.2", "uid": "u-2",
         "phase": "Running"},
        {"namespace": "kube-system", "name": "coredns-5c6b-x1", "node": "worker-1", "ip": "10.244.1.3",
         "uid": "u-3", "phase": "Running"},
        {"namespace": "kube-system", "name": "node-agent-w2", "node": "worker-2", "ip": "172.18.0.4", "uid": "u-4",
         "hostNetwork": True, "phase": "Running"},
        {"namespace": "default", "name": "pending-one", "uid": "u-5", "phase": "Pending"},
    ],
    "services": [
        {"namespace": "default", "name": "kubernetes", "type": "ClusterIP", "clusterIP": "10.96.0.1",
         "ports": [{"port": 443, "protocol": "TCP", "targetPort": 6443}],
         "endpoints": [{"ip": "172.18.0.2", "ready": True, "pod": None}]},
        {"namespace": "default", "name": "echo", "type": "ClusterIP", "clusterIP": "10.96.10.20",
         "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
         "endpoints": [{"ip": "10.244.1.2", "ready": True, "pod": "default/echo-7d9f-abcde"},
                       {"ip": "10.244.2.2", "ready": False, "pod": "default/echo-7d9f-fghij"}]},
        {"namespace": "kube-system", "name": "kube-dns", "type": "ClusterIP", "clusterIP": "10.96.0.10",
         "ports": [{"port": 53, "protocol": "UDP", "targetPort": 53}, {"port": 53, "protocol": "TCP"}],
         # no pod reference: found by its address
         "endpoints": [{"ip": "10.244.1.3", "ready": True, "pod": None}]},
        {"namespace": "default", "name": "outside", "type": "ClusterIP", "clusterIP": "10.96.3.3",
         "ports": [{"port": 80}], "endpoints": [{"ip": "192.0.2.7", "ready": True}]},
        {"namespace": "default", "name": "outside-too", "type": "ClusterIP", "clusterIP": "None",
         "endpoints": [{"ip": "192.0.2.7"}]},
    ],
}


def facts(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the sample facts, with top-level CHANGES."""
    return {**copy.deepcopy(_FACTS), **changes}
