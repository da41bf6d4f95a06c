"""NetworkPolicy semantics, as the API documents them, on a snapshot of the cluster.

`decide()` answers for one connection (source IP, destination IP, protocol, destination port) whether
NetworkPolicies let it through, and which rule of which policy said so. It is the reference the
kernel rulesets are tested against, and what `kubesim policy` prints without sending a packet.

The rules (https://kubernetes.io/docs/concepts/services-networking/network-policies/):
- A pod is isolated for a direction only when some policy selecting it has that policyType; a pod no
  policy isolates accepts (or sends) everything in that direction.
- A connection needs the source's egress and the destination's ingress to allow it; what isolated pods
  allow is the union of every selecting policy's rules (policies are additive; order never matters).
- A peer with podSelector alone means pods of the policy's own namespace; namespaceSelector alone means
  every pod of the selected namespaces; both in one peer are an AND; ipBlock is addresses, minus except.
- Ports match by number, by range (port..endPort), or by name, resolved against the destination pod's
  container ports; no ports means every port and protocol.
- A pod cannot block access to itself, and traffic to and from the pod's own node is always allowed
  (that is how the kubelet's probes get in). hostNetwork pods have the node's address, so selectors never
  pick them out: they are the node.
- AdminNetworkPolicies (policy.networking.k8s.io, see admin.py) come before all of this: the first
  matching rule of the lowest-priority ANP selecting the pod allows or denies outright, or passes
  (skipping every further ANP) to the NetworkPolicies; a pod no NetworkPolicy isolates in a direction
  meets the BaselineAdminNetworkPolicy's rules instead; what none decides is allowed.
- Replies (established, related) are always allowed; a Service's traffic is judged after DNAT, so callers
  pass the endpoint's address, never the ClusterIP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from control.api import NOTHING
from netpol.admin import AdminPolicy, AdminRule
from netpol.model import (
    NAMESPACE_NAME_LABEL,
    Direction,
    IPAddress,
    Namespace,
    Peer,
    Pod,
    Policy,
    Rule,
)


@dataclass(frozen=True)
class RuleRef:
    """One rule of one policy: what the trace and `kubesim policy` name."""

    policy: str  # namespace/name, or AdminNetworkPolicy/name
    direction: Direction
    index: int
    action: str = ""  # an admin rule's Allow, Deny or Pass (a NetworkPolicy rule only ever allows)

    def __str__(self) -> str:
        text = f"{self.policy} {self.direction.lower()} rule {self.index}"
        return f"{text}: {self.action}" if self.action else text


@dataclass(frozen=True)
class SideVerdict:
    """The answer of one side: the source's egress or the destination's ingress."""

    direction: Direction
    allowed: bool
    reason: str
    isolated: bool = False
    rule: RuleRef | None = None
    policies: tuple[str, ...] = ()  # the policies isolating this pod in this direction


@dataclass(frozen=True)
class Verdict:
    src: str
    dst: str
    protocol: str
    port: int
    egress: SideVerdict
    ingress: SideVerdict

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    @property
    def deciding(self) -> SideVerdict:
        """The side that refused (egress first, as the packet meets it first), else the ingress side."""
        if not self.egress.allowed:
            return self.egress
        if not self.ingress.allowed:
            return self.ingress
        return self.ingress if self.ingress.isolated or not self.egress.isolated else self.egress

    def __str__(self) -> str:
        word = "allowed" if self.allowed else "denied"
        side = self.deciding
        return f"{self.src} -> {self.dst} {self.protocol}/{self.port}: {word} ({side.direction.lower()}: {side.reason})"


@dataclass
class ClusterView:
    """The objects a decision needs, indexed once."""

    policies: Iterable[Policy] = ()
    pods: Iterable[Pod] = ()
    namespaces: Iterable[Namespace] = ()
    nodes: Mapping[str, Iterable[IPAddress]] = field(default_factory=dict)
    # AdminNetworkPolicies and the BaselineAdminNetworkPolicy, in any order.
    admin: Iterable[AdminPolicy] = ()

    def __post_init__(self) -> None:
        self.policies = tuple(sorted(self.policies, key=lambda p: (p.namespace, p.name)))
        self.admin = tuple(self.admin)
        self.anps = admin_order(self.admin)
        self.banp = next((p for p in self.admin if p.tier == "baseline"), None)
        self.pods = tuple(self.pods)
        self.namespace_labels: dict[str, Mapping[str, str]] = {ns.name: ns.labels for ns in self.namespaces}
        # hostNetwork pods carry their node's address: they are not pods to a policy.
        self.pod_by_ip: dict[IPAddress, Pod] = {
            ip: pod for pod in self.pods if not pod.host_network for ip in pod.ips
        }
        self.node_ips: dict[str, frozenset[IPAddress]] = {n: frozenset(ips) for n, ips in self.nodes.items()}
        self._groups: dict[tuple[str, frozenset[tuple[str, str]]], tuple[Mapping[str, str], list[Pod]]] | None = None

    def labels_of_namespace(self, name: str) -> Mapping[str, str]:
        return self.namespace_labels.get(name) or {NAMESPACE_NAME_LABEL: name}

    def label_groups(self) -> dict[tuple[str, frozenset[tuple[str, str]]], tuple[Mapping[str, str], list[Pod]]]:
        """The pods that are not hostNetwork, by (namespace, labels): computed once per view."""
        if self._groups is None:
            self._groups = {}
            for pod in self.pods:
                if not pod.host_network:
                    key = (pod.namespace, frozenset(pod.labels.items()))
                    self._groups.setdefault(key, (pod.labels, []))[1].append(pod)
        return self._groups

    def isolating(self, pod: Pod, direction: Direction) -> list[Policy]:
        """The policies that select `pod` and isolate it in `direction`, in name order."""
        return [
            policy
            for policy in self.policies
            if policy.namespace == pod.namespace
            and policy.rules(direction) is not None
            and policy.pod_selector.matches(pod.labels)
        ]

    def peer_matches(self, peer: Peer, policy: Policy, ip: IPAddress, pod: Pod | None) -> bool:
        if peer.broken:
            return False
        if peer.ip_block is not None:
            return peer.ip_block.contains(ip)
        if pod is None:
            return False  # selectors pick pods; a node or an outside address only matches an ipBlock
        if peer.namespace_selector is None:
            if pod.namespace != policy.namespace:
                return False
        elif not peer.namespace_selector.matches(self.labels_of_namespace(pod.namespace)):
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)

    def rule_matches(
        self, rule: Rule, policy: Policy, peer_ip: IPAddress, peer_pod: Pod | None,
        protocol: str, port: int, destination: Pod | None,
    ) -> bool:
        if rule.peers is not None and not any(
            self.peer_matches(peer, policy, peer_ip, peer_pod) for peer in rule.peers
        ):
            return False
        if not rule.ports:
            return True
        named = destination.named_ports if destination is not None else {}
        return any(p.matches(protocol, port, named) for p in rule.ports)

    def subject_matches(self, policy: AdminPolicy, pod: Pod) -> bool:
        """Does admin POLICY apply to POD? hostNetwork pods are never a subject."""
        subject = policy.subject
        if subject.broken or pod.host_network or subject.namespace_selector is None:
            return False
        if not subject.namespace_selector.matches(self.labels_of_namespace(pod.namespace)):
            return False
        return subject.pod_selector is None or subject.pod_selector.matches(pod.labels)

    def admin_applying(self, pod: Pod, direction: Direction) -> list[AdminPolicy]:
        """The ANPs (in evaluation order) then the BANP that select POD and have DIRECTION's rules."""
        tiers = [*self.anps, *([self.banp] if self.banp is not None else [])]
        return [p for p in tiers if p.rules(direction) and self.subject_matches(p, pod)]

    def admin_rule_matches(self, rule: AdminRule, peer_ip: IPAddress, peer_pod: Pod | None, protocol: str,
                           port: int, destination: Pod | None) -> bool:
        # Every admin peer names its namespaces, so the NetworkPolicy's "own namespace" never applies.
        return self.rule_matches(rule.rule, _NO_POLICY, peer_ip, peer_pod, protocol, port, destination)

    def _admin_tier(self, tier: list[AdminPolicy], direction: Direction, peer_ip: IPAddress, peer_pod: Pod | None,
                    protocol: str, port: int, destination: Pod | None) -> tuple[RuleRef | None, tuple[str, ...]]:
        """The first rule of TIER's policies matching the connection (None: none did), and their keys."""
        for policy in tier:
            for index, rule in enumerate(policy.rules(direction)):
                if self.admin_rule_matches(rule, peer_ip, peer_pod, protocol, port, destination):
                    return RuleRef(policy.key, direction, index, rule.action), tuple(p.key for p in tier)
        return None, tuple(p.key for p in tier)

    def judge(
        self, pod: Pod, direction: Direction, peer_ip: IPAddress, protocol: str, port: int,
    ) -> SideVerdict:
        """May `pod` send to (Egress) or receive from (Ingress) `peer_ip`?

        AdminNetworkPolicies first (Pass skips the rest of them), then NetworkPolicies, then the
        BaselineAdminNetworkPolicy for a pod no NetworkPolicy isolates, then allowed."""
        policies = self.isolating(pod, direction)
        admin = self.admin_applying(pod, direction)
        if not policies and not admin:
            return SideVerdict(direction, True, f"no policy isolates {pod.key} for {direction.lower()}")
        keys = tuple(p.key for p in policies)
        if peer_ip in self.node_ips.get(pod.node, ()):
            return SideVerdict(
                direction, True, f"traffic with {pod.key}'s own node is always allowed", True, None, keys
            )
        peer_pod = self.pod_by_ip.get(peer_ip)
        destination = peer_pod if direction == "Egress" else pod
        anps = [p for p in admin if p.tier == "admin"]
        ref, anp_keys = self._admin_tier(anps, direction, peer_ip, peer_pod, protocol, port, destination)
        if ref is not None and ref.action != "Pass":
            return SideVerdict(direction, ref.action == "Allow", f"{_DONE[ref.action]} by {ref}", True, ref, anp_keys)
        passed = f" (passed by {ref})" if ref is not None else ""
        if not policies:
            baseline = [p for p in admin if p.tier == "baseline"]
            ref, banp_keys = self._admin_tier(baseline, direction, peer_ip, peer_pod, protocol, port, destination)
            if ref is not None:
                return SideVerdict(direction, ref.action == "Allow", f"{_DONE[ref.action]} by {ref}{passed}", True,
                                   ref, banp_keys)
            return SideVerdict(direction, True, f"no rule of an admin policy decides {pod.key}'s "
                               f"{direction.lower()}{passed}; allowed")
        for policy in policies:
            for index, rule in enumerate(policy.rules(direction) or ()):
                if self.rule_matches(rule, policy, peer_ip, peer_pod, protocol, port, destination):
                    ref = RuleRef(policy.key, direction, index)
                    return SideVerdict(direction, True, f"allowed by {ref}{passed}", True, ref, keys)
        listed = ", ".join(keys)
        return SideVerdict(
            direction, False, f"{pod.key} is isolated for {direction.lower()} by {listed}; no rule allows it{passed}",
            True, None, keys,
        )


_DONE = {"Allow": "allowed", "Deny": "denied"}
# The policy an admin rule's peers are judged for: its namespace is never consulted (see admin_rule_matches).
_NO_POLICY = Policy("", "", NOTHING, None, None)


def admin_order(policies: Iterable[AdminPolicy]) -> tuple[AdminPolicy, ...]:
    """The AdminNetworkPolicies in evaluation order: lowest priority first. Equal priorities are
    undefined upstream; by name here, so every node and every mode agree."""
    return tuple(sorted((p for p in policies if p.tier == "admin"), key=lambda p: (p.priority, p.name)))


@dataclass(frozen=True)
class AdminGrouping:
    """The local pods by the admin policies that select them, for one direction: what both renderers
    turn into chains (one per distinct sequence of ANPs, and one for the BANP)."""
    groups: dict[tuple[str, ...], list[Pod]]  # the ANPs' keys, in evaluation order -> the pods they all select
    baseline: list[Pod]  # the pods the BANP selects
    members: dict[str, list[Pod]]  # an ANP's key -> the local pods it selects

    @classmethod
    def of(cls, view: ClusterView, local: Iterable[Pod], direction: Direction) -> AdminGrouping:
        groups: dict[tuple[str, ...], list[Pod]] = {}
        baseline: list[Pod] = []
        for pod in local:
            applying = view.admin_applying(pod, direction)
            keys = tuple(p.key for p in applying if p.tier == "admin")
            if keys:
                groups.setdefault(keys, []).append(pod)
            if any(p.tier == "baseline" for p in applying):
                baseline.append(pod)
        members: dict[str, list[Pod]] = {}
        for keys, pods in groups.items():
            for key in keys:
                members.setdefault(key, []).extend(pods)
        return cls(groups, baseline, members)


def admin_selection(view: ClusterView, policy: AdminPolicy, direction: Direction) -> dict[tuple[int, int], list[Pod]]:
    """`[(rule, peer)]` -> the pods each selector peer of POLICY's DIRECTION rules picks (hostNetwork
    pods never: they are their node). As peer_matches, but a selector is matched once per namespace
    and once per distinct set of labels in it (a Deployment's pods share theirs), not once per pod."""
    groups = view.label_groups()
    out: dict[tuple[int, int], list[Pod]] = {}
    for i, rule in enumerate(policy.rules(direction)):
        for j, peer in enumerate(rule.rule.peers or ()):
            selector = peer.namespace_selector
            if peer.broken or peer.ip_block is not None or selector is None:
                continue  # addresses, or nothing: no pods to pick (an admin peer always names namespaces)
            chosen = {ns for ns, _ in groups if selector.matches(view.labels_of_namespace(ns))}
            out[(i, j)] = [pod for (ns, _), (labels, members) in groups.items() if ns in chosen
                           and (peer.pod_selector is None or peer.pod_selector.matches(labels)) for pod in members]
    return out


def _not_a_pod(direction: Direction, ip: IPAddress) -> SideVerdict:
    return SideVerdict(direction, True, f"{ip} is not a pod's address: no policy applies to this side")


def decide(view: ClusterView, src: str, dst: str, protocol: str, port: int) -> Verdict:
    """Would NetworkPolicies let a new connection from `src` to `dst`:`port` through?"""
    src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    src_pod, dst_pod = view.pod_by_ip.get(src_ip), view.pod_by_ip.get(dst_ip)
    if src_ip == dst_ip and src_pod is not None:
        itself = SideVerdict("Egress", True, "a pod cannot block access to itself")
        return Verdict(src, dst, protocol, port, itself, SideVerdict("Ingress", True, itself.reason))
    egress = view.judge(src_pod, "Egress", dst_ip, protocol, port) if src_pod else _not_a_pod("Egress", src_ip)
    ingress = view.judge(dst_pod, "Ingress", src_ip, protocol, port) if dst_pod else _not_a_pod("Ingress", dst_ip)
    return Verdict(src, dst, protocol, port, egress, ingress)


# --- the same semantics, kept up to date incrementally, for the agent's sync --------------------------

PeerRef = tuple[str, int, int]  # direction, rule index, peer index within the rule


def _changed(old: Mapping[str, object], new: Mapping[str, object]) -> set[str]:
    """Keys added, removed or holding a different value (the parse cache keeps unchanged objects
    identical, so `is` answers almost every comparison)."""
    out = {k for k in old.keys() ^ new.keys()}
    out.update(k for k, v in new.items() if k in old and old[k] is not v and old[k] != v)
    return out


def _as_destination(pod: Pod | None) -> object:
    """What a named port resolves on: a change elsewhere in the pod (its labels) changes no port set."""
    if pod is None or pod.host_network:
        return None
    return (pod.ips, tuple(sorted(pod.named_ports.items())))


@dataclass
class Changes:
    """What one `ClusterIndex.update` changed, for the renderer to decide what to render again."""

    policies: set[str] = field(default_factory=set)  # policy keys whose selections or object changed
    pods: set[str] = field(default_factory=set)  # pod keys added, removed or changed
    destinations: set[str] = field(default_factory=set)  # pod keys whose addresses or named ports changed


class ClusterIndex:
    """Who selects whom, kept from one snapshot to the next by looking only at what changed.

    The same rules as ClusterView.isolating and peer_matches (tests hold the two to each other), but a
    pod's change is judged against each peer once, and a policy's against its own namespace's pods,
    instead of every pod against every policy on every sync.

    `selected[policy][(direction, rule, peer)]` holds the keys of the pods a selector peer picks;
    `isolation[pod][direction]` the policies isolating each of `node`'s pods, in name order."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.pods: dict[str, Pod] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.policies: dict[str, Policy] = {}
        self.pods_in: dict[str, list[str]] = {}
        # Per namespace, its pods grouped by their labels: a Deployment's pods share theirs, so a
        # selector is matched once per distinct set of labels, not once per pod.
        self.label_groups: dict[str, dict[frozenset[tuple[str, str]], tuple[Mapping[str, str], list[str]]]] = {}
        self.policies_in: dict[str, list[str]] = {}
        self.selected: dict[str, dict[PeerRef, set[str]]] = {}
        self.isolation: dict[str, dict[Direction, tuple[str, ...]]] = {}

    def labels_of_namespace(self, name: str) -> Mapping[str, str]:
        ns = self.namespaces.get(name)
        return ns.labels if ns is not None else {NAMESPACE_NAME_LABEL: name}

    def is_local(self, pod: Pod) -> bool:
        return pod.node == self.node and not pod.host_network and any(ip.version == 4 for ip in pod.ips)

    def update(self, policies: Iterable[Policy], pods: Iterable[Pod], namespaces: Iterable[Namespace]) -> Changes:
        new_pods = {p.key: p for p in pods}
        new_namespaces = {n.name: n for n in namespaces}
        new_policies = {p.key: p for p in policies}
        changed_pods = _changed(self.pods, new_pods)
        changed_namespaces = _changed(self.namespaces, new_namespaces)
        changed_policies = _changed(self.policies, new_policies)
        old_pods, old_policies = self.pods, self.policies
        # A policy's change can only change the isolation of pods in its own namespace.
        touched = {p.namespace for k in changed_policies for p in (old_policies.get(k), new_policies.get(k)) if p}
        self.pods, self.namespaces, self.policies = new_pods, new_namespaces, new_policies
        if changed_pods:
            self.pods_in, self.label_groups = {}, {}
            for key, pod in sorted(new_pods.items()):
                if not pod.host_network:
                    self.pods_in.setdefault(pod.namespace, []).append(key)
                    groups = self.label_groups.setdefault(pod.namespace, {})
                    groups.setdefault(frozenset(pod.labels.items()), (pod.labels, []))[1].append(key)
        if changed_policies:
            self.policies_in = {}
            for key, policy in sorted(new_policies.items(), key=lambda kv: (kv[1].namespace, kv[1].name)):
                self.policies_in.setdefault(policy.namespace, []).append(key)
        changes = Changes(policies=set(changed_policies), pods=changed_pods, destinations={
            k for k in changed_pods if _as_destination(old_pods.get(k)) != _as_destination(new_pods.get(k))
        })
        for key in changed_policies:
            self.selected.pop(key, None)
            if key in new_policies:
                self.selected[key] = self._select(new_policies[key])
        if changed_pods or changed_namespaces:
            moved = [k for ns in changed_namespaces for k in self.pods_in.get(ns, ())]
            for key, selections in self.selected.items():
                if key not in changed_policies and self._reselect(new_policies[key], selections, changed_pods, moved):
                    changes.policies.add(key)
        self._isolate(changed_pods, changed_policies, touched)
        return changes

    def _peers(self, policy: Policy) -> Iterator[tuple[PeerRef, Peer]]:
        directions: tuple[Direction, ...] = ("Ingress", "Egress")
        for direction in directions:
            for i, rule in enumerate(policy.rules(direction) or ()):
                for j, peer in enumerate(rule.peers or ()):
                    if not peer.broken and peer.ip_block is None:
                        yield (direction, i, j), peer

    def picks(self, peer: Peer, policy: Policy, pod: Pod | None) -> bool:
        """Does selector PEER of POLICY pick POD (None: a pod that is gone)? As ClusterView.peer_matches."""
        if pod is None or pod.host_network:
            return False
        if peer.namespace_selector is None:
            if pod.namespace != policy.namespace:
                return False
        elif not peer.namespace_selector.matches(self.labels_of_namespace(pod.namespace)):
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)

    def _select(self, policy: Policy) -> dict[PeerRef, set[str]]:
        out: dict[PeerRef, set[str]] = {}
        for ref, peer in self._peers(policy):
            if peer.namespace_selector is None:
                namespaces = [policy.namespace]
            else:
                selector = peer.namespace_selector
                namespaces = [ns for ns in self.label_groups if selector.matches(self.labels_of_namespace(ns))]
            out[ref] = {
                k for ns in namespaces for labels, keys in self.label_groups.get(ns, {}).values()
                if peer.pod_selector is None or peer.pod_selector.matches(labels) for k in keys
            }
        return out

    def _reselect(self, policy: Policy, selections: dict[PeerRef, set[str]],
                  changed_pods: set[str], moved: list[str]) -> bool:
        """Judge the changed pods (and those of relabelled namespaces) against POLICY's peers again."""
        dirty = False
        for ref, peer in self._peers(policy):
            chosen = selections[ref]
            candidates = changed_pods if peer.namespace_selector is None else changed_pods.union(moved)
            for key in candidates:
                was, now = key in chosen, self.picks(peer, policy, self.pods.get(key))
                if was != now:
                    (chosen.add if now else chosen.discard)(key)
                if was or now:
                    dirty = True  # picked before or after: the pod's addresses may be in the set
        return dirty

    def _isolate(self, changed_pods: set[str], changed_policies: set[str], namespaces: set[str]) -> None:
        """Bring `isolation` up to date: a changed pod is judged against its namespace's policies; an
        unchanged pod of a namespace whose policies changed, against the changed policies only."""
        directions: tuple[Direction, ...] = ("Ingress", "Egress")
        judged: dict[tuple[str, frozenset[tuple[str, str]]], dict[Direction, tuple[str, ...]]] = {}
        for key in changed_pods:
            pod = self.pods.get(key)
            if pod is None or not self.is_local(pod):
                self.isolation.pop(key, None)
                continue
            same = (pod.namespace, frozenset(pod.labels.items()))  # pods with the same labels, the same answer
            if same not in judged:
                mine = [self.policies[k] for k in self.policies_in.get(pod.namespace, ())]
                selecting = [p for p in mine if p.pod_selector.matches(pod.labels)]
                judged[same] = {d: tuple(p.key for p in selecting if p.rules(d) is not None) for d in directions}
            self.isolation[key] = dict(judged[same])
        for ns in namespaces:
            changed = [k for k in changed_policies if k.startswith(f"{ns}/")]
            in_order = self.policies_in.get(ns, ())
            for key in self.pods_in.get(ns, ()):
                isolation = self.isolation.get(key)
                if key in changed_pods or isolation is None:
                    continue  # judged above, or not one of the node's pods
                labels = self.pods[key].labels
                for d in directions:
                    now = {k for k in changed if k in self.policies and self.policies[k].rules(d) is not None
                           and self.policies[k].pod_selector.matches(labels)}
                    keep = set(isolation[d]).difference(changed) | now
                    isolation[d] = tuple(k for k in in_order if k in keep)
