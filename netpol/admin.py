"""AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) -> AdminPolicy.

The cluster-scoped tiers around NetworkPolicy, as sig-network's network-policy-api defines them
(apis/v1alpha1, standard channel of v0.1.x):

    AdminNetworkPolicies, lowest spec.priority first, each rule in the order written:
        Allow / Deny decide the direction; Pass skips every remaining ANP rule
    NetworkPolicies (as today: a pod they isolate is decided here)
    the BaselineAdminNetworkPolicy `default`, rules in order: Allow / Deny
    default: allowed

A rule's peers and ports are the NetworkPolicy model's own values: `namespaces: S` is a Peer with
namespace selector S (every pod of those namespaces), `pods: {namespaceSelector, podSelector}` both
selectors, an egress `networks` CIDR an ipBlock; `portNumber` a port, `portRange` a port..endPort,
and `namedPort` (no protocol of its own) the name on each protocol, resolved on the destination pod.
So both rulesets render an admin rule's matches with the code that renders a NetworkPolicy rule's.

Not implemented (experimental in v1alpha1): egress `nodes` and `domainNames` peers. A peer the agent
cannot understand fails closed as the API asks: in an Allow rule it matches nothing, and a Deny or
Pass rule holding one becomes "deny everything".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from netpol.errors import ObjectError
from netpol.model import JSON, PROTOCOLS, Direction, IPBlock, Peer, PortRule, Rule, _network, _selector

GROUP = "policy.networking.k8s.io"
ANP_KIND = "AdminNetworkPolicy"
BANP_KIND = "BaselineAdminNetworkPolicy"
BANP_NAME = "default"  # the one BaselineAdminNetworkPolicy the API admits
Action = Literal["Allow", "Deny", "Pass"]
Tier = Literal["admin", "baseline"]
ACTIONS: dict[Tier, tuple[str, ...]] = {"admin": ("Allow", "Deny", "Pass"), "baseline": ("Allow", "Deny")}

# Every pod of every namespace: what a fail-closed Deny rule matches.
_EVERYONE = Rule(peers=None, ports=())


@dataclass(frozen=True)
class AdminRule:
    name: str
    action: Action
    rule: Rule  # its peers (never None from a valid object) and ports (empty: every port)


@dataclass(frozen=True)
class AdminPolicy:
    tier: Tier
    name: str
    priority: int  # the baseline's is 0: there is only one
    subject: Peer  # the pods it applies to: a namespace selector and maybe a pod selector
    ingress: tuple[AdminRule, ...]
    egress: tuple[AdminRule, ...]
    problems: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return ANP_KIND if self.tier == "admin" else BANP_KIND

    @property
    def key(self) -> str:
        """What comments and traces name: `AdminNetworkPolicy/<name>`."""
        return f"{self.kind}/{self.name}"

    def rules(self, direction: Direction) -> tuple[AdminRule, ...]:
        return self.ingress if direction == "Ingress" else self.egress


def _subject(raw: Any, problems: list[str]) -> Peer:
    if not isinstance(raw, Mapping) or len(raw) != 1 or not {"namespaces", "pods"} >= raw.keys():
        problems.append("spec.subject: must set exactly one of namespaces, pods; selects nothing")
        return Peer(broken="subject is not one of namespaces, pods")
    if "namespaces" in raw:
        return Peer(namespace_selector=_selector(raw["namespaces"], "spec.subject.namespaces", problems))
    return _namespaced_pod(raw["pods"], "spec.subject.pods", problems)


def _namespaced_pod(raw: Any, where: str, problems: list[str]) -> Peer:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: not an object; matches nothing")
        return Peer(broken="not an object")
    return Peer(namespace_selector=_selector(raw.get("namespaceSelector"), f"{where}.namespaceSelector", problems),
                pod_selector=_selector(raw.get("podSelector"), f"{where}.podSelector", problems))


def _peers(raw: Any, where: str, egress: bool, problems: list[str]) -> tuple[Peer, ...]:
    """One API peer -> the model's peers (a `networks` list is one ipBlock per CIDR)."""
    known = {"namespaces", "pods", "networks"} if egress else {"namespaces", "pods"}
    if not isinstance(raw, Mapping) or len(raw) != 1 or not known >= raw.keys():
        fields = ", ".join(sorted(raw)) if isinstance(raw, Mapping) else "none"
        problems.append(f"{where}: must set exactly one of {', '.join(sorted(known))} (has {fields or 'none'})")
        return (Peer(broken=f"not exactly one of {', '.join(sorted(known))}"),)
    if "namespaces" in raw:
        return (Peer(namespace_selector=_selector(raw["namespaces"], f"{where}.namespaces", problems)),)
    if "pods" in raw:
        return (_namespaced_pod(raw["pods"], f"{where}.pods", problems),)
    out = []
    for i, cidr in enumerate(raw["networks"] or ()):
        try:
            out.append(Peer(ip_block=IPBlock(_network(cidr, f"{where}.networks[{i}]"))))
        except ObjectError as err:
            problems.append(str(err))
            out.append(Peer(broken=str(err)))
    return tuple(out)


def _ports(raw: Any, where: str, problems: list[str]) -> tuple[PortRule, ...]:
    out: list[PortRule] = []
    for i, port in enumerate(raw or ()):
        here = f"{where}[{i}]"
        if not isinstance(port, Mapping) or len(port) != 1:
            problems.append(f"{here}: must set exactly one of portNumber, namedPort, portRange; matches nothing")
            out.append(PortRule(broken="not exactly one of portNumber, namedPort, portRange"))
            continue
        (kind, value), = port.items()
        if kind == "namedPort" and isinstance(value, str) and value:
            # A named port has no protocol of its own: the name on whichever protocol the pod gives it.
            out.extend(PortRule(protocol, value) for protocol in PROTOCOLS)
            continue
        value = value if isinstance(value, Mapping) else {}
        protocol = value.get("protocol") or "TCP"
        start = value.get("port") if kind == "portNumber" else value.get("start")
        end = value.get("end") if kind == "portRange" else None
        numbers = [n for n in (start, end) if n is not None]
        if (kind not in ("portNumber", "portRange") or protocol not in PROTOCOLS or start is None
                or (kind == "portRange" and end is None)
                or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 65535 for n in numbers)
                or (end is not None and end < start)):
            problems.append(f"{here}: {kind} {dict(value)!r} cannot be understood; matches nothing")
            out.append(PortRule(broken=f"{kind} cannot be understood"))
            continue
        out.append(PortRule(protocol, start, end))
    return tuple(out)


def _rules(raw: Any, tier: Tier, direction: Direction, problems: list[str]) -> tuple[AdminRule, ...]:
    field_name, peers_name = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    out = []
    for i, rule in enumerate(raw or ()):
        where = f"spec.{field_name}[{i}]"
        if not isinstance(rule, Mapping):
            problems.append(f"{where}: not an object; denies everything")
            out.append(AdminRule("", "Deny", _EVERYONE))
            continue
        raw_name = rule.get("name")
        name = raw_name if isinstance(raw_name, str) else ""
        action = rule.get("action")
        before = len(problems)
        peers = tuple(peer for j, raw_peer in enumerate(rule.get(peers_name) or ())
                      for peer in _peers(raw_peer, f"{where}.{peers_name}[{j}]", direction == "Egress", problems))
        ports = _ports(rule.get("ports"), f"{where}.ports", problems)
        broken = len(problems) > before or not peers
        if action not in ACTIONS[tier]:
            problems.append(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS[tier])}; denies everything")
            out.append(AdminRule(name, "Deny", _EVERYONE))
        elif broken and action != "Allow":
            # network-policy-api: an unknown peer fails closed; for Deny and Pass, as "deny everything".
            problems.append(f"{where}: a {action} rule that cannot be fully understood denies everything")
            out.append(AdminRule(name, "Deny", _EVERYONE))
        else:
            out.append(AdminRule(name, action, Rule(peers=peers, ports=ports)))
    return tuple(out)


def parse_admin_policy(obj: JSON, kind: str | None = None) -> AdminPolicy:
    """An AdminNetworkPolicy or BaselineAdminNetworkPolicy object -> AdminPolicy. KIND: which of the two,
    when the object does not say (list items from an informer carry no kind).

    Raises ObjectError only when it has no name, no spec, or is of another kind."""
    kind = kind or obj.get("kind")
    if kind not in (ANP_KIND, BANP_KIND):
        raise ObjectError(f"{kind!r} is neither {ANP_KIND} nor {BANP_KIND}")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ObjectError(f"{kind} without metadata.name cannot be used")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ObjectError(f"{kind} {name}: spec must be an object")
    tier: Tier = "admin" if kind == ANP_KIND else "baseline"
    problems: list[str] = []
    priority, ignored = 0, ""
    if tier == "admin":
        raw = spec.get("priority")
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 1000:
            priority = raw
        else:
            ignored = f"spec.priority: {raw!r} is not from 0 to 1000; the policy selects nothing"
    elif name != BANP_NAME:
        ignored = f"metadata.name: only the {BANP_KIND} named {BANP_NAME!r} applies; this one selects nothing"
    subject = _subject(spec.get("subject"), problems)
    if ignored:
        problems.insert(0, ignored)
        subject = Peer(broken=ignored)
    return AdminPolicy(tier, name, priority, subject, _rules(spec.get("ingress"), tier, "Ingress", problems),
                       _rules(spec.get("egress"), tier, "Egress", problems), tuple(problems))


def parse_anp(obj: JSON) -> AdminPolicy:
    return parse_admin_policy(obj, ANP_KIND)


def parse_banp(obj: JSON) -> AdminPolicy:
    return parse_admin_policy(obj, BANP_KIND)


__all__ = ["ANP_KIND", "BANP_KIND", "BANP_NAME", "GROUP", "AdminPolicy", "AdminRule", "parse_admin_policy",
           "parse_anp", "parse_banp"]
