"""Backend-neutral packet-flow tables, in the shape of kube-proxy's own (pkg/proxy/nftables/proxier_test.go
packetFlowTest: source, destination, port -> endpoints | DROP | REJECT | untouched, masquerade).

A backend reuses these tables by providing a tracer: `Callable[[Flow], Observed]` (see test_proxy_flows.py for
the nftables one). An iptables backend adds its own tracer and runs the same tables.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from proxy import NodeContext, ProxyPlan, plan, services_from, slices_from

NODE = "node-a"
NODE_IP = "172.18.0.2"
OTHER_NODE_IP = "172.18.0.3"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
LOCAL_POD = "10.244.1.200"  # a client pod on this node (not an endpoint of anything)
REMOTE_POD = "10.244.2.200"
EXTERNAL = "203.0.113.5"  # outside the cluster, inside svc5's loadBalancerSourceRanges
EXTERNAL_DENIED = "198.51.100.7"

DROP = "DROP"
REJECT = "REJECT"
UNTOUCHED = ""


@dataclass(frozen=True)
class Flow:
    name: str
    source: str
    destination: str
    port: int
    output: str  # "ip:port, ip:port" (sorted) | DROP | REJECT | UNTOUCHED
    masq: bool | None = False  # None: some of the endpoint choices masquerade, some not
    protocol: str = "TCP"
    ingress: str = ""  # pod | node | external; "" = from the source address
    # Where Kubernetes' iptables mode answers differently from nftables mode: its output there (see
    # IPTABLES_UNKNOWN_PORT). None = the same in both modes.
    iptables: str | None = None

    def expected(self, mode: str = "nftables") -> Observed:
        if mode == "iptables" and self.iptables is not None:
            return Observed(self.iptables, False if self.iptables in (DROP, REJECT, UNTOUCHED) else self.masq)
        return Observed(self.output, self.masq)

    def from_(self) -> str:
        if self.ingress:
            return self.ingress
        if self.source == NODE_IP:
            return "node"
        if ipaddress.ip_address(self.source) in ipaddress.ip_network(CLUSTER_CIDR):
            return "pod"
        return "external"


@dataclass(frozen=True)
class Observed:
    output: str
    masq: bool | None


Tracer = Callable[[Flow], Observed]


def endpoints(*addresses: str) -> str:
    return ", ".join(sorted(addresses))


# --- API objects ----------------------------------------------------------------------------------

def service(ns: str, name: str, cluster_ip: str, *, ports: Iterable[dict[str, Any]] = ({"name": "p80", "port": 80},),
            **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": list(ports), **spec}, "status": status}


def endpoint(ip: str, node: str = NODE, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "nodeName": node, "conditions": conditions}


def endpoint_slice(ns: str, svc: str, eps: Iterable[dict[str, Any]], *, port: int = 80, port_name: str = "p80",
                   protocol: str = "TCP", suffix: str = "1") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": f"{svc}-{suffix}",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": protocol}],
            "endpoints": list(eps)}


def node_context(**overrides: Any) -> NodeContext:
    fields: dict[str, Any] = {"name": NODE, "node_ips": (NODE_IP,), "cluster_cidrs": (CLUSTER_CIDR,),
                              "service_cidrs": (SERVICE_CIDR,)}
    fields.update(overrides)
    return NodeContext(**fields)


# --- the cluster the flows run against ------------------------------------------------------------

REMOTE = "node-b"


def cluster_objects() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [
        service("ns1", "svc1", "10.96.0.41"),
        service("ns2", "svc2", "10.96.0.42", type="LoadBalancer", externalTrafficPolicy="Local",
                externalIPs=["192.168.99.22"], healthCheckNodePort=30000,
                ports=[{"name": "p80", "port": 80, "nodePort": 3001}],
                status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
        service("ns3", "svc3", "10.96.0.43", type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 3003}]),
        service("ns4", "svc4", "10.96.0.44", externalIPs=["192.168.99.33"]),
        service("ns5", "svc5", "10.96.0.45", type="LoadBalancer", loadBalancerSourceRanges=["203.0.113.0/25"],
                ports=[{"name": "p80", "port": 80, "nodePort": 3002}],
                status={"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}}),
        service("ns6", "svc6", "10.96.0.46", type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 3006}]),
        service("ns7", "svc7", "10.96.0.47", internalTrafficPolicy="Local"),
        service("ns7", "svc7b", "10.96.0.57", internalTrafficPolicy="Local"),
        service("ns8", "svc8a", "10.96.0.48"),
        service("ns8", "svc8b", "10.96.0.58"),
        service("ns8", "svc8c", "10.96.0.68"),
        service("ns9", "dns", "10.96.0.10", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
        service("ns9", "diameter", "10.96.0.50", ports=[{"name": "d", "port": 3868, "protocol": "SCTP"}]),
        service("ns10", "svc10", "10.96.0.40", type="NodePort", externalTrafficPolicy="Local",
                ports=[{"name": "p80", "port": 80, "nodePort": 3010}]),
        service("ns11", "svc11", "10.96.0.51", sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 100}}),
        service("ns12", "svc12", "10.96.0.52"),
        service("ns13", "headless", "None"),
        service("ns13", "external-name", "", type="ExternalName", externalName="example.com"),
        service("ns14", "multi", "10.96.0.54", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}]),
    ]
    slices = [
        endpoint_slice("ns1", "svc1", [endpoint("10.244.1.1"), endpoint("10.244.2.1", REMOTE)]),
        endpoint_slice("ns2", "svc2", [endpoint("10.244.1.2"), endpoint("10.244.2.2", REMOTE)]),
        endpoint_slice("ns3", "svc3", [endpoint("10.244.2.3", REMOTE)]),
        endpoint_slice("ns4", "svc4", [endpoint("10.244.1.4"), endpoint("10.244.2.4", REMOTE)]),
        endpoint_slice("ns5", "svc5", [endpoint("10.244.2.5", REMOTE)]),
        endpoint_slice("ns6", "svc6", []),
        endpoint_slice("ns7", "svc7", [endpoint("10.244.2.7", REMOTE)]),
        endpoint_slice("ns7", "svc7b", [endpoint("10.244.1.7"), endpoint("10.244.2.17", REMOTE)]),
        endpoint_slice("ns8", "svc8a", [
            endpoint("10.244.2.81", REMOTE),
            endpoint("10.244.2.82", REMOTE, ready=False, serving=True, terminating=True),
            endpoint("10.244.2.83", REMOTE, ready=False, serving=False, terminating=True),
        ]),
        endpoint_slice("ns8", "svc8b", [
            endpoint("10.244.2.84", REMOTE, ready=False, serving=True, terminating=True),
            endpoint("10.244.2.85", REMOTE, ready=False, serving=False, terminating=True),
            endpoint("10.244.2.86", REMOTE, ready=False, serving=False, terminating=False),
        ]),
        endpoint_slice("ns8", "svc8c", [
            endpoint("10.244.2.87", REMOTE, ready=False, serving=False, terminating=True),
        ]),
        endpoint_slice("ns9", "dns", [endpoint("10.244.2.9", REMOTE)], port=5353, port_name="dns", protocol="UDP"),
        endpoint_slice("ns9", "dns", [endpoint("10.244.2.9", REMOTE)], port=5353, port_name="dns-tcp",
                       suffix="tcp"),
        endpoint_slice("ns9", "diameter", [endpoint("10.244.2.10", REMOTE)], port=3868, port_name="d",
                       protocol="SCTP"),
        endpoint_slice("ns10", "svc10", [endpoint("10.244.2.11", REMOTE)]),
        endpoint_slice("ns11", "svc11", [endpoint("10.244.1.11"), endpoint("10.244.2.11", REMOTE)]),
        endpoint_slice("ns12", "svc12", [endpoint("10.244.1.12")], port=8080),
        endpoint_slice("ns13", "headless", [endpoint("10.244.1.13")]),
        endpoint_slice("ns14", "multi", [endpoint("10.244.2.14", REMOTE)], port=8080, port_name="a"),
    ]
    return services, slices


def cluster_plan(node: NodeContext | None = None) -> ProxyPlan:
    services, slices = cluster_objects()
    return plan(services_from(services), slices_from(slices), node or node_context())


# Mode differences that are Kubernetes' own. Only nftables mode (pkg/proxy/nftables/proxier.go, KEP-3866)
# rejects traffic to a ClusterIP on a port no Service uses ("cluster-ips-check": ip daddr @cluster-ips
# reject) and drops traffic to unallocated addresses of the service CIDR. iptables mode
# (pkg/proxy/iptables/proxier.go) only matches ip:port:protocol of real service ports, so everything
# else to a service address passes through untouched (and usually times out).
IPTABLES_UNKNOWN_PORT = UNTOUCHED
IPTABLES_UNALLOCATED = UNTOUCHED

SVC1 = endpoints("10.244.1.1:80", "10.244.2.1:80")
SVC2_ALL = endpoints("10.244.1.2:80", "10.244.2.2:80")
SVC4 = endpoints("10.244.1.4:80", "10.244.2.4:80")

# Every behaviour of issue 5's "Semantics" paragraph, for the default node (cluster CIDR known).
FLOWS: list[Flow] = [
    # ClusterIP, TCP / UDP / SCTP
    Flow("pod to ClusterIP", LOCAL_POD, "10.96.0.41", 80, SVC1),
    Flow("remote pod to ClusterIP", REMOTE_POD, "10.96.0.41", 80, SVC1),
    Flow("UDP ClusterIP, port name maps to targetPort", LOCAL_POD, "10.96.0.10", 53, "10.244.2.9:5353",
         protocol="UDP"),
    Flow("TCP port of the same name-different ClusterIP port", LOCAL_POD, "10.96.0.10", 53, "10.244.2.9:5353"),
    Flow("SCTP ClusterIP", LOCAL_POD, "10.96.0.50", 3868, "10.244.2.10:3868", protocol="SCTP"),
    Flow("UDP to a TCP-only ClusterIP port is rejected", LOCAL_POD, "10.96.0.41", 80, REJECT, protocol="UDP",
         iptables=IPTABLES_UNKNOWN_PORT),
    Flow("multi-port: port a", LOCAL_POD, "10.96.0.54", 80, "10.244.2.14:8080"),
    Flow("multi-port: port b without endpoints", LOCAL_POD, "10.96.0.54", 81, REJECT),
    # masquerade of off-cluster sources to ClusterIPs; the node itself is off-cluster
    Flow("node to ClusterIP is masqueraded", NODE_IP, "10.96.0.41", 80, SVC1, masq=True),
    Flow("external to ClusterIP is masqueraded", EXTERNAL, "10.96.0.41", 80, SVC1, masq=True),
    # REJECT / DROP in the service CIDR
    Flow("ClusterIP without endpoints: REJECT", LOCAL_POD, "10.96.0.46", 80, REJECT),
    Flow("node to ClusterIP without endpoints: REJECT", NODE_IP, "10.96.0.46", 80, REJECT),
    Flow("unknown port of a ClusterIP: REJECT", LOCAL_POD, "10.96.0.41", 8080, REJECT, iptables=IPTABLES_UNKNOWN_PORT),
    Flow("node to unknown port of a ClusterIP: REJECT", NODE_IP, "10.96.0.41", 8080, REJECT,
         iptables=IPTABLES_UNKNOWN_PORT),
    Flow("unallocated service CIDR address: DROP", LOCAL_POD, "10.96.0.99", 80, DROP, iptables=IPTABLES_UNALLOCATED),
    Flow("node to unallocated service CIDR address: DROP", NODE_IP, "10.96.0.99", 80, DROP,
         iptables=IPTABLES_UNALLOCATED),
    Flow("not a service: untouched", LOCAL_POD, "10.244.2.77", 80, UNTOUCHED),
    Flow("not a service from outside: untouched", EXTERNAL, "10.244.2.77", 80, UNTOUCHED),
    Flow("headless service pod IP: untouched", LOCAL_POD, "10.244.1.13", 80, UNTOUCHED),
    # NodePort on the node's addresses
    Flow("external to NodePort", EXTERNAL, NODE_IP, 3003, "10.244.2.3:80", masq=True),
    Flow("pod to NodePort", LOCAL_POD, NODE_IP, 3003, "10.244.2.3:80", masq=True),
    Flow("node to its own NodePort", NODE_IP, NODE_IP, 3003, "10.244.2.3:80", masq=True),
    Flow("NodePort on another address: untouched", EXTERNAL, "172.18.0.99", 3003, UNTOUCHED),
    Flow("NodePort without endpoints: REJECT", EXTERNAL, NODE_IP, 3006, REJECT),
    Flow("unused port on the node: untouched", EXTERNAL, NODE_IP, 3999, UNTOUCHED),
    # externalIPs (ETP Cluster: masquerade, all endpoints)
    Flow("external to externalIP", EXTERNAL, "192.168.99.33", 80, SVC4, masq=True),
    Flow("pod to externalIP", LOCAL_POD, "192.168.99.33", 80, SVC4, masq=True),
    Flow("externalIP on another port: untouched", EXTERNAL, "192.168.99.33", 81, UNTOUCHED),
    # LoadBalancer with loadBalancerSourceRanges
    Flow("allowed source to LB IP", EXTERNAL, "5.6.7.8", 80, "10.244.2.5:80", masq=True),
    Flow("denied source to LB IP: DROP", EXTERNAL_DENIED, "5.6.7.8", 80, DROP),
    Flow("denied pod to LB IP: DROP", LOCAL_POD, "5.6.7.8", 80, DROP),
    Flow("denied source to the same NodePort: not firewalled", EXTERNAL_DENIED, NODE_IP, 3002,
         "10.244.2.5:80", masq=True),
    Flow("denied source to the ClusterIP: not firewalled", EXTERNAL_DENIED, "10.96.0.45", 80,
         "10.244.2.5:80", masq=True),
    # externalTrafficPolicy Local: client address kept, local endpoints only, pods/node short-circuit
    Flow("ETP Local: ClusterIP uses all endpoints", LOCAL_POD, "10.96.0.42", 80, SVC2_ALL),
    Flow("ETP Local: external to LB IP, local only, no SNAT", EXTERNAL, "1.2.3.4", 80, "10.244.1.2:80"),
    Flow("ETP Local: external to externalIP", EXTERNAL, "192.168.99.22", 80, "10.244.1.2:80"),
    Flow("ETP Local: external to NodePort", EXTERNAL, NODE_IP, 3001, "10.244.1.2:80"),
    Flow("ETP Local: pod to LB IP short-circuits", LOCAL_POD, "1.2.3.4", 80, SVC2_ALL),
    Flow("ETP Local: remote pod to NodePort short-circuits", REMOTE_POD, NODE_IP, 3001, SVC2_ALL),
    Flow("ETP Local: node to LB IP short-circuits, masqueraded", NODE_IP, "1.2.3.4", 80, SVC2_ALL, masq=True),
    Flow("ETP Local: node to its NodePort short-circuits, masqueraded", NODE_IP, NODE_IP, 3001, SVC2_ALL,
         masq=True),
    Flow("ETP Local, no local endpoint: external to NodePort DROP", EXTERNAL, NODE_IP, 3010, DROP),
    Flow("ETP Local, no local endpoint: pod still short-circuits", LOCAL_POD, NODE_IP, 3010, "10.244.2.11:80"),
    Flow("ETP Local, no local endpoint: node still short-circuits", NODE_IP, NODE_IP, 3010, "10.244.2.11:80",
         masq=True),
    Flow("ETP Local, no local endpoint: ClusterIP works", LOCAL_POD, "10.96.0.40", 80, "10.244.2.11:80"),
    # internalTrafficPolicy Local
    Flow("ITP Local without local endpoint: DROP", LOCAL_POD, "10.96.0.47", 80, DROP),
    Flow("ITP Local: node without local endpoint: DROP", NODE_IP, "10.96.0.47", 80, DROP),
    Flow("ITP Local: only the local endpoint", LOCAL_POD, "10.96.0.57", 80, "10.244.1.7:80"),
    # terminating endpoints
    Flow("ready endpoints win over serving-terminating", LOCAL_POD, "10.96.0.48", 80, "10.244.2.81:80"),
    Flow("no ready endpoint: serving-terminating ones", LOCAL_POD, "10.96.0.58", 80, "10.244.2.84:80"),
    Flow("only non-serving endpoints: REJECT", LOCAL_POD, "10.96.0.68", 80, REJECT),
    # hairpin: a pod reaching itself through its service is masqueraded
    Flow("hairpin: pod to itself via its service", "10.244.1.12", "10.96.0.52", 80, "10.244.1.12:8080", masq=True),
    Flow("not hairpin: another pod to the same service", LOCAL_POD, "10.96.0.52", 80, "10.244.1.12:8080"),
    Flow("hairpin only on the choice of itself", "10.244.1.1", "10.96.0.41", 80, SVC1, masq=None),
    # sessionAffinity ClientIP: without history every endpoint is possible (history: test_proxy_flows.py)
    Flow("affinity: a new client may reach any endpoint", LOCAL_POD, "10.96.0.51", 80,
         endpoints("10.244.1.11:80", "10.244.2.11:80")),
]

# The same cluster with --masquerade-all.
MASQUERADE_ALL_FLOWS: list[Flow] = [
    Flow("masqueradeAll: pod to ClusterIP is masqueraded", LOCAL_POD, "10.96.0.41", 80, SVC1, masq=True),
    Flow("masqueradeAll: ETP Local external traffic keeps its source", EXTERNAL, "1.2.3.4", 80, "10.244.1.2:80"),
    Flow("masqueradeAll: ClusterIP without endpoints still REJECT", LOCAL_POD, "10.96.0.46", 80, REJECT),
]

# Without a cluster CIDR kube-proxy cannot tell pods from the rest: no ClusterIP masquerade, and pods
# do not short-circuit ETP Local (they are external traffic like any other).
NO_CLUSTER_CIDR_FLOWS: list[Flow] = [
    Flow("no cluster CIDR: external to ClusterIP is not masqueraded", EXTERNAL, "10.96.0.41", 80, SVC1),
    Flow("no cluster CIDR: pod to ETP Local LB IP gets only local endpoints", LOCAL_POD, "1.2.3.4", 80,
         "10.244.1.2:80"),
    Flow("no cluster CIDR: node still short-circuits", NODE_IP, "1.2.3.4", 80, SVC2_ALL, masq=True),
]


def check(flows: Iterable[Flow], tracer: Tracer, mode: str = "nftables") -> list[str]:
    """Every mismatch, as a readable line (empty when all flows behave); `mode`: nftables | iptables."""
    problems = []
    for flow in flows:
        seen = tracer(flow)
        want = flow.expected(mode)
        if seen != want:
            problems.append(f"{flow.name}: {flow.source} -> {flow.destination}:{flow.port}/{flow.protocol}: "
                            f"want {want}, got {seen}")
    return problems
