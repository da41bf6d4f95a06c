"""NetworkPolicy truth tables in the shape of upstream's e2e suite (test/e2e/network/netpol).

Namespaces x, y, z (labelled ns=<name>) each hold pods a, b, c (labelled pod=<name>) serving TCP and UDP
on 80 and 81 with named container ports `serve-80-tcp`, `serve-81-udp`, ... Each `Case` is some
policies plus the whole 9 x 9 matrix it must produce for one protocol and port, written as a rule
(`expect(src, dst)`), so every pair is checked, not just the ones a test author thought of.

The same cases drive the pure decision tests, the fake-kernel tests of both backends and the
real-packet tests: `policies(ips)` gets the pods' addresses, since ipBlock cases need them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netpol.admin import parse_admin_policy
from netpol.model import parse_policy

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True, order=True)
class PodRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


ALL_PODS = tuple(PodRef(ns, name) for ns in NAMESPACES for name in POD_NAMES)


def container_ports() -> list[dict[str, Any]]:
    return [
        {"name": f"serve-{port}-{proto.lower()}", "containerPort": port, "protocol": proto}
        for port in PORTS
        for proto in PROTOCOLS
    ]


def namespace_object(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"ns": name}}}


def pod_object(ref: PodRef, ip: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ref.namespace, "name": ref.name, "labels": {"pod": ref.name}},
        "spec": {"nodeName": node, "containers": [{"name": "cont", "ports": container_ports()}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def policy(namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name},
        "spec": dict(spec),
    }


Expect = Callable[[PodRef, PodRef], bool]
Policies = Callable[[Mapping[PodRef, str]], Sequence[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    name: str
    policies: Policies
    expect: Expect
    protocol: str = "TCP"
    port: int = 80
    # Two cases share policies but test other ports: the same matrix builder, another port.
    notes: str = field(default="", compare=False)

    def matrix(self) -> Reachability:
        return Reachability({(s, d): s == d or self.expect(s, d) for s in ALL_PODS for d in ALL_PODS})


@dataclass(frozen=True)
class Reachability:
    """Allowed or not, for every (source, destination) pair of ALL_PODS."""

    allowed: Mapping[tuple[PodRef, PodRef], bool]

    def mismatches(self, other: Reachability) -> list[tuple[PodRef, PodRef]]:
        return [pair for pair in sorted(self.allowed) if self.allowed[pair] != other.allowed.get(pair)]

    def render(self, against: Reachability | None = None) -> str:
        """Upstream's truth-table drawing: '.' allowed, 'X' denied; a '*' marks a cell that differs."""
        lines = ["-\t" + "\t".join(str(d) for d in ALL_PODS)]
        for s in ALL_PODS:
            cells = []
            for d in ALL_PODS:
                mark = "." if self.allowed[(s, d)] else "X"
                if against is not None and against.allowed.get((s, d)) != self.allowed[(s, d)]:
                    mark += "*"
                cells.append(mark)
            lines.append(f"{s}\t" + "\t".join(cells))
        return "\n".join(lines)


def compare(expected: Reachability, observed: Reachability) -> str:
    """'' when they agree, else both matrices and the differing pairs, for an assertion message."""
    wrong = expected.mismatches(observed)
    if not wrong:
        return ""
    pairs = ", ".join(f"{s}->{d} expected {'allow' if expected.allowed[(s, d)] else 'deny'}" for s, d in wrong)
    return f"{len(wrong)} pairs differ: {pairs}\nexpected:\n{expected.render()}\nobserved:\n{observed.render(expected)}"


def _fixed(*policies: dict[str, Any]) -> Policies:
    return lambda ips: policies


def _in(namespace: str, *names: str) -> Callable[[PodRef], bool]:
    return lambda p: p.namespace == namespace and (not names or p.name in names)


def _host(ip: str) -> str:
    return str(ipaddress.ip_network(ip))


DENY_INGRESS_X = policy("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
DENY_EGRESS_X = policy("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
A_ONLY = {"matchLabels": {"pod": "a"}}


def _ipblock_to_yb(ips: Mapping[PodRef, str]) -> list[dict[str, Any]]:
    return [policy("x", "allow-ipblock", {
        "podSelector": A_ONLY,
        "ingress": [{"from": [{"ipBlock": {"cidr": _host(ips[PodRef("y", "b")])}}]}],
    })]


def _ipblock_except_yb(ips: Mapping[PodRef, str]) -> list[dict[str, Any]]:
    # Everything but y/b: the /0 with y/b's address cut out.
    family = ipaddress.ip_address(ips[PodRef("y", "b")]).version
    everything = "0.0.0.0/0" if family == 4 else "::/0"
    return [policy("x", "allow-all-but-yb", {
        "podSelector": A_ONLY,
        "ingress": [{"from": [{"ipBlock": {"cidr": everything, "except": [_host(ips[PodRef("y", "b")])]}}]}],
    })]


def _egress_ipblock_except_yb(ips: Mapping[PodRef, str]) -> list[dict[str, Any]]:
    return [policy("x", "egress-all-but-yb", {
        "podSelector": A_ONLY,
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [_host(ips[PodRef("y", "b")])]}}]}],
    })]


XA = PodRef("x", "a")


def _on_port_80(name: str, protocol: str) -> dict[str, Any]:
    return policy("x", name, {"podSelector": A_ONLY, "ingress": [{"ports": [{"protocol": protocol, "port": 80}]}]})


CASES: tuple[Case, ...] = (
    Case("no policies: everything is allowed", _fixed(), lambda s, d: True),
    Case("deny all ingress in x", _fixed(DENY_INGRESS_X), lambda s, d: d.namespace != "x"),
    Case("deny all egress in x", _fixed(DENY_EGRESS_X), lambda s, d: s.namespace != "x"),
    Case(
        "deny all ingress and egress in x",
        _fixed(policy("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})),
        lambda s, d: s.namespace != "x" and d.namespace != "x",
    ),
    Case(
        "allow all ingress (one empty rule) in x",
        _fixed(policy("x", "allow-all", {"podSelector": {}, "ingress": [{}]})),
        lambda s, d: True,
    ),
    Case(
        "deny all, then a second policy allows all: policies add up",
        _fixed(DENY_INGRESS_X, policy("x", "allow-all", {"podSelector": {}, "ingress": [{}]})),
        lambda s, d: True,
    ),
    Case(
        "x/a from x/b only (podSelector alone means the policy's namespace)",
        _fixed(policy("x", "a-from-b", {
            "podSelector": A_ONLY, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
        })),
        lambda s, d: d != XA or s == PodRef("x", "b"),
    ),
    Case(
        "x/a from every pod of namespace y",
        _fixed(policy("x", "a-from-ns-y", {
            "podSelector": A_ONLY, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
        })),
        lambda s, d: d != XA or s.namespace == "y",
    ),
    Case(
        "x/a from pods b of namespace y: both selectors in one peer are an AND",
        _fixed(policy("x", "a-from-yb", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"ns": "y"}},
                "podSelector": {"matchLabels": {"pod": "b"}},
            }]}],
        })),
        lambda s, d: d != XA or s == PodRef("y", "b"),
    ),
    Case(
        "x/a from namespace y or from pods b: two peers are an OR",
        _fixed(policy("x", "a-from-y-or-b", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                {"podSelector": {"matchLabels": {"pod": "b"}}},
            ]}],
        })),
        lambda s, d: d != XA or s.namespace == "y" or s == PodRef("x", "b"),
    ),
    Case(
        "x/a from namespaces not in (x): matchExpressions NotIn",
        _fixed(policy("x", "a-from-not-x", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{"namespaceSelector": {
                "matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}],
            }}]}],
        })),
        lambda s, d: d != XA or s.namespace != "x",
    ),
    Case(
        "x/a from pods in (b, c) of its namespace: matchExpressions In",
        _fixed(policy("x", "a-from-b-c", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{"podSelector": {
                "matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}],
            }}]}],
        })),
        lambda s, d: d != XA or _in("x", "b", "c")(s),
    ),
    Case(
        "x/a from pods without the label 'pod': DoesNotExist matches none of them",
        _fixed(policy("x", "a-from-unlabelled", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{"podSelector": {
                "matchExpressions": [{"key": "pod", "operator": "DoesNotExist"}],
            }}]}],
        })),
        lambda s, d: d != XA,
    ),
    Case(
        "x/a from all namespaces' pods labelled pod (Exists) in namespaces with label ns (Exists)",
        _fixed(policy("x", "a-from-labelled", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{
                "namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "Exists"}]},
                "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]},
            }]}],
        })),
        lambda s, d: True,
    ),
    Case(
        "x/a from namespaceSelector {}: every pod of every namespace",
        _fixed(policy("x", "a-from-everywhere", {
            "podSelector": A_ONLY, "ingress": [{"from": [{"namespaceSelector": {}}]}],
        })),
        lambda s, d: True,
    ),
    Case(
        "deny ingress in x except from podSelector {} (its own namespace)",
        _fixed(policy("x", "from-own-namespace", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})),
        lambda s, d: d.namespace != "x" or s.namespace == "x",
    ),
    Case(
        "x/a from namespace y by the metadata.name label the apiserver sets",
        _fixed(policy("x", "a-from-y-by-name", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}],
        })),
        lambda s, d: d != XA or s.namespace == "y",
    ),
    Case(
        "x/a ingress only on TCP 81, tested on 80: denied from everyone",
        _fixed(policy("x", "a-on-81", {"podSelector": A_ONLY, "ingress": [{"ports": [{"port": 81}]}]})),
        lambda s, d: d != XA,
    ),
    Case(
        "x/a ingress only on TCP 81, tested on 81: allowed from everyone",
        _fixed(policy("x", "a-on-81", {"podSelector": A_ONLY, "ingress": [{"ports": [{"port": 81}]}]})),
        lambda s, d: True,
        port=81,
    ),
    Case(
        "x/a from namespace y on 80 only, tested on 81",
        _fixed(policy("x", "a-from-y-80", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80}]}],
        })),
        lambda s, d: d != XA,
        port=81,
    ),
    Case(
        "x/a on the named port serve-80-tcp",
        _fixed(policy("x", "a-named-80", {"podSelector": A_ONLY, "ingress": [{"ports": [{"port": "serve-80-tcp"}]}]})),
        lambda s, d: True,
    ),
    Case(
        "x/a on the named port serve-80-tcp, tested on 81",
        _fixed(policy("x", "a-named-80", {"podSelector": A_ONLY, "ingress": [{"ports": [{"port": "serve-80-tcp"}]}]})),
        lambda s, d: d != XA,
        port=81,
    ),
    Case(
        "x/a on a named port no pod has: matches nothing",
        _fixed(policy("x", "a-named-missing", {"podSelector": A_ONLY, "ingress": [{"ports": [{"port": "nope"}]}]})),
        lambda s, d: d != XA,
    ),
    Case(
        "x/a on the UDP named port serve-80-udp, tested on TCP 80",
        _fixed(policy("x", "a-named-udp", {
            "podSelector": A_ONLY, "ingress": [{"ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}],
        })),
        lambda s, d: d != XA,
    ),
    Case(
        "x/a on UDP 80, tested on UDP 80",
        _fixed(_on_port_80("a-udp-80", "UDP")),
        lambda s, d: True,
        protocol="UDP",
    ),
    Case(
        "x/a on TCP 80, tested on UDP 80",
        _fixed(_on_port_80("a-tcp-80", "TCP")),
        lambda s, d: d != XA,
        protocol="UDP",
    ),
    Case(
        "x/a on SCTP 80, tested on TCP 80",
        _fixed(_on_port_80("a-sctp-80", "SCTP")),
        lambda s, d: d != XA,
    ),
    Case(
        "x/a on the range 80-81 (endPort), tested on 81",
        _fixed(policy("x", "a-range", {"podSelector": A_ONLY, "ingress": [{"ports": [{"port": 80, "endPort": 81}]}]})),
        lambda s, d: True,
        port=81,
    ),
    Case(
        "x/a on the range 79-80 (endPort), tested on 81",
        _fixed(policy("x", "a-range", {"podSelector": A_ONLY, "ingress": [{"ports": [{"port": 79, "endPort": 80}]}]})),
        lambda s, d: d != XA,
        port=81,
    ),
    Case(
        "x/a from y/b's address by ipBlock",
        _ipblock_to_yb,
        lambda s, d: d != XA or s == PodRef("y", "b"),
    ),
    Case(
        "x/a from everything except y/b's address (ipBlock except)",
        _ipblock_except_yb,
        lambda s, d: d != XA or s != PodRef("y", "b"),
    ),
    Case(
        "x/a may send only to namespace y",
        _fixed(policy("x", "a-to-y", {
            "podSelector": A_ONLY,
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
        })),
        lambda s, d: s != XA or d.namespace == "y",
    ),
    Case(
        "x/a may send only to port 81, tested on 80",
        _fixed(policy("x", "a-egress-81", {
            "podSelector": A_ONLY, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 81}]}],
        })),
        lambda s, d: s != XA,
    ),
    Case(
        "x/a may send to the named port serve-80-tcp (resolved on the destination)",
        _fixed(policy("x", "a-egress-named", {
            "podSelector": A_ONLY, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}],
        })),
        lambda s, d: True,
    ),
    Case(
        "x/a may send to everything except y/b's address",
        _egress_ipblock_except_yb,
        lambda s, d: s != XA or d != PodRef("y", "b"),
    ),
    Case(
        "policyTypes Egress with no egress rules denies egress only",
        _fixed(policy("x", "a-no-egress", {"podSelector": A_ONLY, "policyTypes": ["Egress"]})),
        lambda s, d: s != XA,
    ),
    Case(
        "policyTypes [Ingress, Egress] with only ingress rules denies all egress",
        _fixed(policy("x", "a-both", {
            "podSelector": A_ONLY, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {}}]}],
        })),
        lambda s, d: s != XA,
    ),
    Case(
        "a policy selecting no pod changes nothing",
        _fixed(policy("x", "selects-nothing", {
            "podSelector": {"matchLabels": {"pod": "nope"}}, "policyTypes": ["Ingress"],
        })),
        lambda s, d: True,
    ),
    Case(
        "deny all ingress in x and y/b may not send to x/a: both sides must allow",
        _fixed(
            policy("x", "a-from-y", {
                "podSelector": A_ONLY, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
            }),
            policy("y", "b-not-to-x", {
                "podSelector": {"matchLabels": {"pod": "b"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}],
            }),
        ),
        lambda s, d: (d != XA or s.namespace == "y") and (s != PodRef("y", "b") or d.namespace == "z"),
    ),
    Case(
        "a peer whose selector has an unknown operator matches nothing",
        _fixed(policy("x", "a-bad-operator", {
            "podSelector": A_ONLY,
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Like"}]}}]}],
        })),
        lambda s, d: d != XA,
    ),
)


# --- AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) -------------

ADMIN_API = "policy.networking.k8s.io/v1alpha1"
EVERY_NAMESPACE: dict[str, Any] = {"namespaces": {}}


def anp(name: str, priority: int, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ADMIN_API, "kind": "AdminNetworkPolicy", "metadata": {"name": name},
            "spec": {"priority": priority, **spec}}


def banp(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ADMIN_API, "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
            "spec": dict(spec)}


def _ns(*names: str) -> dict[str, Any]:
    """A peer or subject: the namespaces NAMES (by their ns label)."""
    return {"namespaces": {"matchExpressions": [{"key": "ns", "operator": "In", "values": list(names)}]}}


def _ingress(action: str, *peers: Mapping[str, Any], ports: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    return {"action": action, "from": list(peers), **({"ports": list(ports)} if ports else {})}


def _egress(action: str, *peers: Mapping[str, Any], ports: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    return {"action": action, "to": list(peers), **({"ports": list(ports)} if ports else {})}


ALLOW_ALL_INGRESS_X = policy("x", "allow-all", {"podSelector": {}, "ingress": [{}]})
XA_SUBJECT = {"pods": {"namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": A_ONLY}}
YB = PodRef("y", "b")


def _deny_egress_to_yb(ips: Mapping[PodRef, str]) -> list[dict[str, Any]]:
    return [anp("xa-not-to-yb", 10, {"subject": XA_SUBJECT, "egress": [
        _egress("Deny", {"networks": [_host(ips[YB])]}, ports=[{"portNumber": {"protocol": "TCP", "port": 80}}]),
    ]})]


ADMIN_CASES: tuple[Case, ...] = (
    Case(
        "ANP Deny beats a NetworkPolicy's Allow",
        _fixed(ALLOW_ALL_INGRESS_X, anp("deny-y-to-x", 10, {"subject": _ns("x"),
                                                            "ingress": [_ingress("Deny", _ns("y"))]})),
        lambda s, d: d.namespace != "x" or s.namespace != "y",
    ),
    Case(
        "ANP Allow beats a NetworkPolicy's isolation",
        _fixed(DENY_INGRESS_X, anp("allow-y-to-x", 10, {"subject": _ns("x"),
                                                        "ingress": [_ingress("Allow", _ns("y"))]})),
        lambda s, d: d.namespace != "x" or s.namespace == "y",
    ),
    Case(
        "ANP Pass defers to the NetworkPolicies, skipping every later ANP",
        _fixed(
            anp("pass-y", 5, {"subject": _ns("x"), "ingress": [_ingress("Pass", _ns("y"))]}),
            anp("deny-all-to-x", 10, {"subject": _ns("x"), "ingress": [_ingress("Deny", EVERY_NAMESPACE)]}),
            policy("x", "from-y-b", {"podSelector": {}, "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        ),
        lambda s, d: d.namespace != "x" or s == YB,
    ),
    Case(
        "ANPs by priority, lowest first: an Allow at 5 beats a Deny at 10, which beats an Allow at 20",
        _fixed(
            anp("allow-y", 20, {"subject": _ns("x"), "ingress": [_ingress("Allow", _ns("y"))]}),
            anp("deny-y", 10, {"subject": _ns("x"), "ingress": [_ingress("Deny", _ns("y"))]}),
            anp("allow-yb", 5, {"subject": _ns("x"), "ingress": [_ingress("Allow", {"pods": {
                "namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}})]}),
        ),
        lambda s, d: d.namespace != "x" or s.namespace != "y" or s == YB,
    ),
    Case(
        "in one ANP the first matching rule decides",
        _fixed(anp("ordered", 10, {"subject": _ns("x"), "ingress": [
            _ingress("Allow", {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}}),
            _ingress("Deny", _ns("y", "z")),
        ]})),
        lambda s, d: d.namespace != "x" or s.namespace == "x" or s.name == "c",
    ),
    Case(
        "BANP Deny applies only to pods no NetworkPolicy isolates",
        _fixed(ALLOW_ALL_INGRESS_X, banp({"subject": _ns("x", "y"), "ingress": [_ingress("Deny", _ns("z"))]})),
        lambda s, d: d.namespace != "y" or s.namespace != "z",
    ),
    Case(
        "ANP Pass with no NetworkPolicy falls through to the BANP",
        _fixed(
            anp("pass-y", 1, {"subject": _ns("x"), "ingress": [_ingress("Pass", _ns("y"))]}),
            anp("allow-all-to-x", 2, {"subject": _ns("x"), "ingress": [_ingress("Allow", EVERY_NAMESPACE)]}),
            banp({"subject": _ns("x"), "ingress": [_ingress("Deny", _ns("y"))]}),
        ),
        lambda s, d: d.namespace != "x" or s.namespace != "y",
    ),
    Case(
        "BANP egress: Allow within x, then Deny to every namespace",
        _fixed(banp({"subject": _ns("x"), "egress": [_egress("Allow", _ns("x")), _egress("Deny", EVERY_NAMESPACE)]})),
        lambda s, d: s.namespace != "x" or d.namespace == "x",
    ),
    Case(
        "ANP egress Allow from x/a to y skips the BANP's Deny for that pod",
        _fixed(
            anp("xa-to-y", 10, {"subject": XA_SUBJECT, "egress": [_egress("Allow", _ns("y"))]}),
            banp({"subject": _ns("x"), "egress": [_egress("Deny", EVERY_NAMESPACE)]}),
        ),
        lambda s, d: s.namespace != "x" or (s == XA and d.namespace == "y"),
    ),
    Case(
        "ANP egress Deny to y/b's address (networks) on portNumber TCP 80",
        _deny_egress_to_yb,
        lambda s, d: s != XA or d != YB,
    ),
    Case(
        "ANP egress Deny to y/b's address (networks) on portNumber TCP 80, tested on 81",
        _deny_egress_to_yb,
        lambda s, d: True,
        port=81,
    ),
    Case(
        "ANP egress Deny from x to z on the portRange 80-81, tested on UDP 81",
        _fixed(anp("x-not-to-z", 10, {"subject": _ns("x"), "egress": [
            _egress("Deny", _ns("z"), ports=[{"portRange": {"protocol": "UDP", "start": 80, "end": 81}}])]})),
        lambda s, d: s.namespace != "x" or d.namespace != "z",
        protocol="UDP",
        port=81,
    ),
    Case(
        "ANP ingress Deny to every pod a on the namedPort serve-80-tcp",
        _fixed(anp("no-a-80", 10, {
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": A_ONLY}},
            "ingress": [_ingress("Deny", EVERY_NAMESPACE, ports=[{"namedPort": "serve-80-tcp"}])],
        })),
        lambda s, d: d.name != "a",
    ),
    Case(
        "ANP ingress Deny to every pod a on the namedPort serve-80-tcp, tested on UDP 80",
        _fixed(anp("no-a-80", 10, {
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": A_ONLY}},
            "ingress": [_ingress("Deny", EVERY_NAMESPACE, ports=[{"namedPort": "serve-80-tcp"}])],
        })),
        lambda s, d: True,
        protocol="UDP",
    ),
)

MATRIX_CASES = CASES + ADMIN_CASES


def view_parts(objects: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """A case's objects parsed by kind: ClusterView's `policies` and `admin` keywords."""
    objects = list(objects)
    return {"policies": [parse_policy(o) for o in objects if o.get("kind", "NetworkPolicy") == "NetworkPolicy"],
            "admin": [parse_admin_policy(o) for o in objects if o.get("kind", "NetworkPolicy") != "NetworkPolicy"]}


def cluster_objects(
    ips: Mapping[PodRef, str], nodes: Mapping[PodRef, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The namespaces and pods of the x/y/z world, as API objects."""
    return [namespace_object(ns) for ns in NAMESPACES], [pod_object(p, ips[p], nodes[p]) for p in ALL_PODS]


def default_addresses() -> tuple[dict[PodRef, str], dict[PodRef, str]]:
    """Fixed addresses for the unit tiers: x on node-1, y on node-2, z split, as a scheduler might."""
    ips, nodes = {}, {}
    for i, p in enumerate(ALL_PODS):
        node = "node-1" if i % 2 == 0 else "node-2"
        nodes[p] = node
        ips[p] = f"10.244.{1 if node == 'node-1' else 2}.{10 + i}"
    return ips, nodes


def names(cases: Iterable[Case]) -> list[str]:
    return [c.name for c in cases]
