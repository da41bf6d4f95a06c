"""A node's NetworkPolicy ruleset for nftables: the decision of decide.py, in the kernel.

The table holds a bounded number of chains however many pods there are: pods are keys of two verdict
maps (egress by source address, ingress by destination address), each pointing at the chain of the
*group* of policies isolating it, so a thousand pods selected by the same policies share one chain.

    forward-egress  (hook forward, priority 0)   replies pass; a pod reaching itself through a Service
    forward-ingress (hook forward, priority 1)   passes; else the pod's group chain, by address
    <dir>-isolated-<n>                           jump to each isolating policy's chain, then drop
    <dir>-<namespace>/<name>                     one rule per policy rule: peers set, ports set, accept

Peers are one interval set per rule (pod addresses chosen by the selectors plus ipBlocks less their
excepts); ports are a concatenated interval set of destination address . protocol . port, where a
numeric port applies to every address (0.0.0.0/0) and a named port to each destination pod that has
it, with that pod's own number. Only IPv4 is programmed (the cluster is single-stack IPv4).

Traffic of the node itself never crosses the forward hook (it leaves through OUTPUT and arrives
through INPUT), so probes from the pod's own node and a pod's calls to its node are never judged: the
"always allowed" of the API falls out of where the chains hook.

Replies are accepted by conntrack state before any policy, so a connection allowed once keeps working
until it ends even if a policy changes; new connections meet the new rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from netaddr import IPSet

from netpol.decide import ClusterView
from netpol.model import Direction, Pod, Policy, PortRule, Rule

TABLE = "kubesim-netpol"
FAMILY = "ip"
# nftables names are at most 256 bytes (NFT_NAME_MAXLEN); longer ones keep a readable head and a hash.
MAX_NAME = 200
EVERY_ADDRESS = "0.0.0.0/0"
PROTOCOL_NAMES = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
DIRECTIONS: tuple[Direction, ...] = ("Egress", "Ingress")
# After the filter tables of kube-proxy and iptables (priority 0): a packet kube-proxy rejects is
# rejected before a policy judges it, as on a kind node where the policy agent hooks later.
BASE_PRIORITY = 10


# The kernel keeps at most 128 bytes of a rule's comment (NFTNL_UDATA_COMMENT_MAXLEN).
MAX_COMMENT = 128


def _cut(text: str, limit: int) -> str:
    """TEXT if it fits, else a readable head and a hash of the whole, so distinct texts stay distinct."""
    if len(text.encode()) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text.encode()[:limit - 17].decode(errors='ignore')}-{digest}"


def object_name(text: str) -> str:
    return _cut(text, MAX_NAME)


def comment(text: str) -> str:
    return '"' + _cut(text, MAX_COMMENT).replace('"', "'") + '"'


def policy_chain(direction: Direction, policy: Policy) -> str:
    return object_name(f"{direction.lower()}-{policy.key}")


def group_chain(direction: Direction, index: int) -> str:
    return f"{direction.lower()}-isolated-{index}"


def rule_comment(policy: Policy, direction: Direction, index: int) -> str:
    """The words the trace shows for a rule: `x/p ingress rule 0`, as decide.RuleRef prints."""
    return f"{policy.key} {direction.lower()} rule {index}"


def _ipv4(pod: Pod) -> list[str]:
    return [str(ip) for ip in pod.ips if ip.version == 4]


@dataclass
class _Builder:
    view: ClusterView
    node: str

    def __post_init__(self) -> None:
        self.lines: list[str] = []
        self.local = [p for p in self.view.pods if p.node == self.node and not p.host_network and _ipv4(p)]

    def peers(self, policy: Policy, direction: Direction, rule: Rule) -> IPSet | None:
        """Addresses the rule's peers allow; None when the rule names no peers (every address)."""
        if rule.peers is None:
            return None
        allowed = IPSet()
        for peer in rule.peers:
            if peer.broken:
                continue
            if peer.ip_block is not None:
                if peer.ip_block.cidr.version == 4:
                    block = IPSet([str(peer.ip_block.cidr)])
                    allowed |= block - IPSet(str(hole) for hole in peer.ip_block.excepts)
                continue
            for pod in self.view.pods:
                if pod.host_network:
                    continue
                for ip in pod.ips:
                    if ip.version == 4 and self.view.peer_matches(peer, policy, ip, pod):
                        allowed.add(str(ip))
        return allowed

    def ports(self, policy: Policy, direction: Direction, rule: Rule, members: list[Pod]) -> list[str] | None:
        """`address . protocol . ports` elements; None when the rule names no ports (every port)."""
        if not rule.ports:
            return None
        # Named ports resolve on the destination: the isolated pods themselves for ingress, any pod
        # the traffic may go to for egress.
        destinations = members if direction == "Ingress" else [p for p in self.view.pods if not p.host_network]
        out: list[str] = []
        for port in rule.ports:
            out.extend(self.port_elements(port, destinations))
        return out

    def port_elements(self, port: PortRule, destinations: Iterable[Pod]) -> list[str]:
        if port.broken:
            return []
        proto = PROTOCOL_NAMES[port.protocol]
        if port.port is None:
            return [f"{EVERY_ADDRESS} . {proto} . 0-65535"]
        if isinstance(port.port, int):
            numbers = f"{port.port}-{port.end_port}" if port.end_port is not None else str(port.port)
            return [f"{EVERY_ADDRESS} . {proto} . {numbers}"]
        out: list[str] = []
        for pod in destinations:
            number = pod.named_ports.get((port.port, port.protocol))
            if number is not None:
                out.extend(f"{ip} . {proto} . {number}" for ip in _ipv4(pod))
        return out

    def policy_chain(self, policy: Policy, direction: Direction, members: list[Pod]) -> None:
        chain = policy_chain(direction, policy)
        # An ingress rule judges where the packet comes from; an egress rule where it goes.
        peer_match = "ip saddr" if direction == "Ingress" else "ip daddr"
        rules: list[str] = []
        for index, rule in enumerate(policy.rules(direction) or ()):
            ref = rule_comment(policy, direction, index)
            matches = []
            peers = self.peers(policy, direction, rule)
            if peers is not None:
                if not peers:
                    continue  # matches nothing: no addresses left (the trace says why, from the plan)
                name = object_name(f"{chain}-{index}-peers")
                elements = ", ".join(str(cidr) for cidr in peers.iter_cidrs())
                self.lines.append(f"  set {name} {{ type ipv4_addr; flags interval; elements = {{ {elements} }} }}")
                matches.append(f"{peer_match} @{name}")
            ports = self.ports(policy, direction, rule, members)
            if ports is not None:
                if not ports:
                    continue
                name = object_name(f"{chain}-{index}-ports")
                self.lines.append(
                    f"  set {name} {{ type ipv4_addr . inet_proto . inet_service; flags interval; "
                    f"elements = {{ {', '.join(sorted(set(ports)))} }} }}"
                )
                matches.append(f"ip daddr . meta l4proto . th dport @{name}")
            rules.append("    " + " ".join([*matches, "accept", "comment", comment(ref)]))
        self.lines.append(f"  chain {chain} {{")
        self.lines.extend(rules)
        self.lines.append("  }")

    def direction(self, direction: Direction) -> None:
        groups: dict[tuple[str, ...], list[Pod]] = {}
        policies: dict[str, Policy] = {}
        for pod in self.local:
            isolating = self.view.isolating(pod, direction)
            if isolating:
                groups.setdefault(tuple(p.key for p in isolating), []).append(pod)
                policies.update((p.key, p) for p in isolating)
        members_of: dict[str, list[Pod]] = {}
        for keys, pods in groups.items():
            for key in keys:
                members_of.setdefault(key, []).extend(pods)
        for key in sorted(policies):
            self.policy_chain(policies[key], direction, members_of[key])
        verdicts: list[str] = []
        for index, (keys, pods) in enumerate(sorted(groups.items())):
            chain = group_chain(direction, index)
            self.lines.append(f"  chain {chain} {{")
            self.lines.extend(f"    jump {policy_chain(direction, policies[k])}" for k in keys)
            isolated_by = ", ".join(keys)
            self.lines.append(f"    counter drop comment {comment(f'{direction.lower()} isolated by {isolated_by}')}")
            self.lines.append("  }")
            verdicts.extend(f"{ip} : goto {chain}" for pod in pods for ip in _ipv4(pod))
        pods_map = f"{direction.lower()}-pods"
        elements = f" elements = {{ {', '.join(verdicts)} }};" if verdicts else ""
        self.lines.append(f"  map {pods_map} {{ type ipv4_addr : verdict;{elements} }}")

    def render(self) -> str:
        selves = [f"{ip} . {ip}" for pod in self.local for ip in _ipv4(pod)]
        elements = f" elements = {{ {', '.join(selves)} }};" if selves else ""
        self.lines.append(f"  set local-self {{ type ipv4_addr . ipv4_addr;{elements} }}")
        for direction in DIRECTIONS:
            self.direction(direction)
        for priority, direction in enumerate(DIRECTIONS):
            key = "ip saddr" if direction == "Egress" else "ip daddr"
            self.lines += [
                f"  chain forward-{direction.lower()} {{",
                f"    type filter hook forward priority {BASE_PRIORITY + priority}; policy accept;",
                "    ct state established,related accept",
                "    ip saddr . ip daddr @local-self accept",
                f"    {key} vmap @{direction.lower()}-pods",
                "  }",
            ]
        return "\n".join([f"table {FAMILY} {TABLE} {{", *self.lines, "}"]) + "\n"


def render(view: ClusterView, node: str) -> str:
    """The whole table for `node`'s pods, as a transaction that replaces any earlier one atomically."""
    body = _Builder(view, node).render()
    return f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n{body}"


def cleanup() -> str:
    return f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
