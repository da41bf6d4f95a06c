"""A node's NetworkPolicy ruleset for iptables: the decision of decide.py as `KUBE-NWPLCY-*` chains.

The iptables mode, for clusters whose kube-proxy runs in iptables mode (the agent follows it, so one
node never mixes the two). Calico-style chains in the filter table:

    FORWARD -> KUBE-NWPLCY-FORWARD       replies accepted; a pod reaching itself (hairpin through a
                                         Service) accepted; then per pod: its egress group by source,
                                         its ingress group by destination
    KUBE-NWPLCY-{EG,IG}-<hash>           one per group of policies isolating a pod: each policy's chain
                                         in name order, RETURN once one has allowed, else DROP
    KUBE-NWPLCY-{E,I}-<ns>.<name>        one per policy and direction: one rule per peer CIDR x port,
                                         which sets the ALLOWED mark bit (hash-named when too long)

The admin tiers sit around the group dispatch, per pod and direction: first KUBE-NWPLCY-{E,I}A-<hash>
(the rules of the ANPs selecting the pod, inline, in evaluation order: Deny DROPs, Pass RETURNs, Allow
sets the DECIDED mark bit and RETURNs), then the NetworkPolicy group (skipped once DECIDED is set),
then, for a pod no NetworkPolicy isolates, KUBE-NWPLCY-{E,I}B (the BANP's rules; also skipped once
DECIDED is set). Each direction clears DECIDED before its admin dispatch, so the other direction is
still judged. Every admin rule is commented `AdminNetworkPolicy/<name> ingress rule N: Deny`.

A rule allowing a packet cannot ACCEPT it: that would end the FORWARD chain before the other side
(the destination's ingress) is judged. It sets a mark bit that the group chain turns into a RETURN,
as Calico does; each group chain clears the bit first, and the top chain clears it when done.

Peers are one rule per CIDR (`-s` for ingress, `-d` for egress): no ipset is assumed on the node.
Ports are `-p PROTO -m PROTO --dport N` or `N:M` (endPort); a named port is resolved per destination
pod into `-d <pod> --dport <its number>`. Only IPv4 is programmed (the cluster is single-stack IPv4).

Where the jumps go (kube-proxy's own hooks are in proxy/iptables/layout.py, JUMPS): kube-proxy
prepends KUBE-PROXY-FIREWALL, KUBE-FORWARD, KUBE-SERVICES, KUBE-EXTERNAL-SERVICES to FORWARD. Ours
goes right after the last of them, so a connection kube-proxy REJECTs (a Service without endpoints)
is refused before a policy could drop it, as in nftables mode. KUBE-FORWARD, though, ACCEPTs every
packet carrying kube-proxy's masquerade mark (off-cluster clients of a ClusterIP, NodePorts,
external IPs), which would then never reach a policy; so a second jump, for marked packets only, goes
right before KUBE-FORWARD. A marked packet has been DNATed to an endpoint already, so no REJECT of
kube-proxy's applies to it. Both jumps are deleted and re-inserted in every transaction (atomic in
one iptables-restore), so their place follows kube-proxy's even if it hooked in after us.

`render()` is pure (view in, the desired chains as iptables-restore text out); `complete()` is pure
too (that text and `iptables-save -t filter` in, the transaction out: stale chains of ours removed,
jumps placed); `IptablesCommand` is the thin runner between them and the kernel.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from netaddr import IPSet

# The iptables tools shared with kube-proxy, and kube-proxy's own hooks (where ours must sit).
from firewall.errors import IptablesError
from firewall.iptables import FILTER, FakeIptables, Flavour, IptablesRunner, SubprocessIptables, comment, saved_chains
from netpol.admin import AdminPolicy
from netpol.decide import AdminGrouping, Changes, ClusterIndex, ClusterView, RuleRef, admin_selection
from netpol.errors import NetpolError
from netpol.model import Direction, Namespace, Pod, Policy, PortRule, Rule
from netpol.nftables import uses_named_ports
from proxy.iptables.layout import JUMPS, KUBE_FORWARD
from proxy.plan import DEFAULT_MASQUERADE_MARK

__all__ = [
    "Chains", "FakeIptables", "Flavour", "IptablesCommand", "Planner", "cleanup", "complete", "delta", "group_chain",
    "policy_chain", "render", "restore_text", "rule_count",
]

PREFIX = "KUBE-NWPLCY-"
TOP = "KUBE-NWPLCY-FORWARD"
MAX_CHAIN = 28  # XT_EXTENSION_MAXNAMELEN - 1: iptables refuses longer chain names
# iptables allows 256 bytes of comment, but iptables-nft stores it as the nft rule's comment, which
# the kernel caps at 128 (NFTNL_UDATA_COMMENT_MAXLEN).
MAX_COMMENT = 128
# The bit a policy rule sets to say "allowed": clear of kube-proxy's masquerade (0x4000) and drop
# (0x8000) bits.
ALLOWED = 0x20000
# kube-proxy's masquerade mark (--iptables-masquerade-bit 14, upstream's default and ours).
MASQUERADE = DEFAULT_MASQUERADE_MARK
PROTOCOL_NAMES = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
DIRECTIONS: tuple[Direction, ...] = ("Egress", "Ingress")
# What a rule allowing a packet ends with: the server counts these as the ruleset's rules.
RULE_MARKER = f"-j MARK --or-mark {ALLOWED:#x}"
# The bit an admin tier's Allow sets: this direction is decided, so the NetworkPolicies' and the
# baseline's dispatch for it are skipped (`! --mark`), while the other direction is still judged.
DECIDED = 0x40000
_DECIDED = f"{DECIDED:#x}/{DECIDED:#x}"
ADMIN_TARGETS = {"Allow": f"MARK --or-mark {DECIDED:#x}", "Deny": "DROP", "Pass": "RETURN"}

# The jumps from FORWARD, as iptables-save prints them (so a saved line compares equal).
JUMP = f"{comment('kubernetes network policies')} -j {TOP}"
MARKED_JUMP = (f"-m mark --mark {MASQUERADE:#x}/{MASQUERADE:#x} "
               f"{comment('kubernetes network policies: masqueraded service traffic')} -j {TOP}")
PROXY_FORWARD_TARGETS = frozenset(j.target for j in JUMPS if j.table == FILTER and j.chain == "FORWARD")

_MARK = f"{ALLOWED:#x}/{ALLOWED:#x}"


def _hash(text: str, length: int) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:length]


def _comment(text: str) -> str:
    raw = text.encode()
    if len(raw) > MAX_COMMENT:
        text = f"{raw[:MAX_COMMENT - 17].decode(errors='ignore')}-{_hash(text, 16)}"
    return comment(text)


def policy_chain(direction: Direction, policy: Policy) -> str:
    """KUBE-NWPLCY-I-<ns>.<name> when it fits, else a hash (uppercase: never equal to a readable name).

    A namespace is a DNS label (no dots), so the first dot separates it from the name unambiguously.
    """
    head = f"{PREFIX}{direction[0]}-"
    readable = f"{head}{policy.namespace}.{policy.name}"
    return readable if len(readable) <= MAX_CHAIN else head + _hash(f"{direction}/{policy.key}", MAX_CHAIN - len(head))


def group_chain(direction: Direction, keys: Iterable[str]) -> str:
    """Named by the policies of the group, so a group keeps its chain while others come and go."""
    head = f"{PREFIX}{direction[0]}G-"
    return head + _hash(f"{direction}/{','.join(keys)}", MAX_CHAIN - len(head))


def admin_group_chain(direction: Direction, keys: Iterable[str]) -> str:
    """The chain of the pods exactly the ANPs KEYS (in evaluation order) select: their rules, inline."""
    head = f"{PREFIX}{direction[0]}A-"
    return head + _hash(f"{direction}/{','.join(keys)}", MAX_CHAIN - len(head))


def baseline_chain(direction: Direction) -> str:
    return f"{PREFIX}{direction[0]}B"


def rule_comment(policy: Policy, direction: Direction, index: int) -> str:
    return f"{policy.key} {direction.lower()} rule {index}"


def _ipv4(pod: Pod) -> list[str]:
    return [str(ip) for ip in pod.ips if ip.version == 4]


@dataclass(frozen=True)
class _Port:
    """One `ports` entry resolved: protocol, numbers ("" every port), and the pod it applies to."""

    protocol: str
    numbers: str = ""
    destination: str | None = None  # a named port: only this pod's address

    def match(self) -> str:
        proto = PROTOCOL_NAMES[self.protocol]
        return f"-p {proto} -m {proto} --dport {self.numbers}" if self.numbers else f"-p {proto}"


class _Builder:
    """One sync's chains, from the index of who selects whom (decide.ClusterIndex). A policy chain
    whose inputs did not change since the last sync comes from the planner's cache."""

    def __init__(self, planner: Planner, changes: Changes) -> None:
        self.planner = planner
        self.index = planner.index
        self.changes = changes
        self.pods = [p for _, p in sorted(self.index.pods.items()) if not p.host_network]
        self.local = [p for p in self.pods if self.index.is_local(p)]
        self.chains: dict[str, tuple[str, ...]] = {TOP: ()}
        self.used: set[tuple[str, Direction]] = set()  # the (policy, direction) chains of this sync

    def peers(self, policy: Policy, direction: Direction, index: int, rule: Rule) -> list[str] | None:
        """The CIDRs the rule's peers allow; None when it names no peers (every address)."""
        if rule.peers is None:
            return None
        allowed = IPSet()
        selected = self.index.selected.get(policy.key, {})
        for j, peer in enumerate(rule.peers):
            if peer.broken:
                continue
            if peer.ip_block is not None:
                if peer.ip_block.cidr.version == 4:
                    allowed |= IPSet([str(peer.ip_block.cidr)]) - IPSet(str(h) for h in peer.ip_block.excepts)
                continue
            for key in selected.get((direction, index, j), ()):
                allowed.update(self.planner.addresses(key))
        return [str(cidr) for cidr in allowed.iter_cidrs()]

    @staticmethod
    def ports(rule: Rule, destinations: list[Pod]) -> list[_Port] | None:
        """None when the rule names no ports (every port and protocol)."""
        if not rule.ports:
            return None
        out: list[_Port] = []
        for port in rule.ports:
            out.extend(_Builder.resolve(port, destinations))
        return out

    @staticmethod
    def resolve(port: PortRule, destinations: list[Pod]) -> Iterator[_Port]:
        if port.broken:
            return
        if port.port is None:
            yield _Port(port.protocol)
        elif isinstance(port.port, int):
            end = f":{port.end_port}" if port.end_port is not None and port.end_port != port.port else ""
            yield _Port(port.protocol, f"{port.port}{end}")
        else:
            # Named: resolved against each destination pod's own container ports.
            for pod in destinations:
                number = pod.named_ports.get((port.port, port.protocol))
                if number is not None:
                    yield from (_Port(port.protocol, str(number), ip) for ip in _ipv4(pod))

    @staticmethod
    def rule_lines(direction: Direction, peers: list[str] | None, ports: list[_Port] | None) -> list[str]:
        lines: list[str] = []
        for peer in peers if peers is not None else [None]:
            for port in ports if ports is not None else [None]:
                parts: list[str] = []
                if direction == "Ingress":
                    if peer is not None:
                        parts.append(f"-s {peer}")
                    if port is not None and port.destination is not None:
                        parts.append(f"-d {port.destination}/32")
                elif port is not None and port.destination is not None:
                    # An egress peer and a named port both pick the destination: the pod, if the peer has it.
                    if peer is not None and ipaddress.ip_address(port.destination) not in ipaddress.ip_network(peer):
                        continue
                    parts.append(f"-d {port.destination}/32")
                elif peer is not None:
                    parts.append(f"-d {peer}")
                if port is not None:
                    parts.append(port.match())
                line = " ".join(parts)
                if line not in lines:
                    lines.append(line)
        return lines

    def policy(self, policy: Policy, direction: Direction, members: list[Pod]) -> None:
        """POLICY's chain for DIRECTION; MEMBERS: the local pods it isolates. Rendered again only when
        its inputs changed: the policy or the pods its peers pick (both in `changes.policies`), or, for
        a named port, the pods it resolves on."""
        slot = (policy.key, direction)
        named = uses_named_ports(policy, direction)
        resolved_on = frozenset(p.key for p in members) if named and direction == "Ingress" else frozenset()
        cached = self.planner.rendered.get(slot)
        if cached is not None and named:
            if direction == "Ingress":
                if cached[0] != resolved_on or not self.changes.destinations.isdisjoint(resolved_on):
                    cached = None
            elif self.changes.destinations:
                cached = None  # egress named ports resolve on every pod
        if cached is None:
            cached = (resolved_on, self.render_policy(policy, direction, members))
            self.planner.rendered[slot] = cached
        self.used.add(slot)
        self.chains[self.planner.chain_name(direction, policy.key)] = cached[1]

    def render_policy(self, policy: Policy, direction: Direction, members: list[Pod]) -> tuple[str, ...]:
        # Named ports resolve on the destination: the isolated pods themselves for ingress, any pod
        # the traffic may go to for egress.
        destinations = members if direction == "Ingress" else self.pods
        blocks: list[list[str]] = []
        for index, rule in enumerate(policy.rules(direction) or ()):
            peers = self.peers(policy, direction, index, rule)
            ports = self.ports(rule, destinations)
            if peers == [] or ports == []:
                continue  # matches nothing (`kubesim policy` says why, from the decision)
            why = _comment(rule_comment(policy, direction, index))
            blocks.append([" ".join(p for p in (match, why, RULE_MARKER) if p)
                           for match in self.rule_lines(direction, peers, ports)])
        rules: list[str] = []
        for i, block in enumerate(blocks):
            if i:
                rules.append(f"-m mark --mark {_MARK} -j RETURN")  # decided: later rules need not run
            rules.extend(block)
        return tuple(rules)

    def direction(self, direction: Direction) -> list[str]:
        """Build the policy and group chains of one direction; return the top chain's dispatch rules."""
        groups: dict[tuple[str, ...], list[Pod]] = {}
        for pod in self.local:
            keys = self.index.isolation.get(pod.key, {}).get(direction, ())
            if keys:
                groups.setdefault(keys, []).append(pod)
        before, after = self.admin(direction, {pod.key for pods in groups.values() for pod in pods})
        members: dict[str, list[Pod]] = {}
        for keys, pods in groups.items():
            for key in keys:
                members.setdefault(key, []).extend(pods)
        policies = self.index.policies
        for key in sorted(members, key=lambda k: (policies[k].namespace, policies[k].name)):
            self.policy(policies[key], direction, members[key])
        dispatch: list[str] = []
        where = "-s" if direction == "Egress" else "-d"
        # Once an ANP has allowed this direction, the NetworkPolicies do not judge it.
        guard = f"-m mark ! --mark {_DECIDED} " if len(before) > 1 else ""
        for keys, pods in sorted(groups.items()):
            chain, rules = self.planner.group(direction, keys)
            self.chains[chain] = rules
            for pod in pods:
                dispatch += self.planner.lines((direction, pod.key), pod, guard + chain, _dispatch_lines, where,
                                               direction, pod.key, self.planner.addresses(pod.key), chain, guard)
        return [*before, *dispatch, *after]

    def admin(self, direction: Direction, isolated: set[str]) -> tuple[list[str], list[str]]:
        """The admin tiers' chains of one direction (from the planner's AdminPart) and the top chain's
        dispatch to them: the ANPs' before the NetworkPolicies', the BANP's after, for the pods the
        NetworkPolicies do not isolate (ISOLATED: those they do)."""
        part = self.planner.admin.get(direction)
        if part is None:
            return [], []
        where = "-s" if direction == "Egress" else "-d"
        before: list[str] = []
        for chain, (rules, pods) in part.anp_chains.items():
            self.chains[chain] = rules
            before += [f"{where} {ip}/32 {_comment(f'{pod.key} {direction.lower()} admin')} -j {chain}"
                       for pod in pods for ip in self.planner.addresses(pod.key)]
        after: list[str] = []
        baseline = [pod for pod in part.baseline_pods if pod.key not in isolated]
        if baseline:
            chain = baseline_chain(direction)
            self.chains[chain] = part.baseline_rules
            after = [f"{where} {ip}/32 -m mark ! --mark {_DECIDED} "
                     f"{_comment(f'{pod.key} {direction.lower()} baseline')} -j {chain}"
                     for pod in baseline for ip in self.planner.addresses(pod.key)]
        if before or after:
            # Clear what the other direction's admin tier may have decided.
            before.insert(0, f"-j MARK --set-xmark 0x0/{DECIDED:#x}")
        return before, after

    def build(self) -> Chains:
        top = [f"-m conntrack --ctstate RELATED,ESTABLISHED {comment('replies of allowed connections')} -j ACCEPT"]
        for pod in self.local:
            top += self.planner.lines(("self", pod.key), pod, "", _self_lines, pod.key,
                                      self.planner.addresses(pod.key))
        for direction in DIRECTIONS:
            top += self.direction(direction)
        top.append(f"-m mark --mark {_MARK} -j MARK --set-xmark 0x0/{ALLOWED:#x}")
        if self.planner.admin:
            top.append(f"-m mark --mark {_DECIDED} -j MARK --set-xmark 0x0/{DECIDED:#x}")
        self.chains[TOP] = tuple(top)
        return self.chains


def _dispatch_lines(where: str, direction: Direction, pod_key: str, ips: list[str], chain: str,
                    guard: str = "") -> list[str]:
    return [f"{where} {ip}/32 {guard}{_comment(f'{pod_key} {direction.lower()}')} -j {chain}" for ip in ips]


@dataclass
class AdminPart:
    """One direction of the admin tiers on a node: each ANP group chain (its rules and the local pods it
    is for), and the BANP's rules and the local pods it selects."""

    anp_chains: dict[str, tuple[tuple[str, ...], list[Pod]]]
    baseline_rules: tuple[str, ...]
    baseline_pods: list[Pod]


def _admin_peers(rule: Rule, selected: Iterable[Pod]) -> list[str] | None:
    """An admin rule's peer CIDRs: its networks and the addresses of the pods its selectors picked."""
    if rule.peers is None:
        return None  # a fail-closed rule: every address
    allowed = IPSet()
    for peer in rule.peers:
        if not peer.broken and peer.ip_block is not None and peer.ip_block.cidr.version == 4:
            allowed.add(str(peer.ip_block.cidr))
    allowed.update(ip for pod in selected for ip in _ipv4(pod))
    return [str(cidr) for cidr in allowed.iter_cidrs()]


def _admin_rules(view: ClusterView, policy: AdminPolicy, direction: Direction, members: list[Pod],
                 pods: list[Pod]) -> tuple[str, ...]:
    """POLICY's DIRECTION rules in order: Allow marks DECIDED and returns, Deny drops, Pass returns (to
    the top chain, whose next rules are the NetworkPolicies'), each commented with the rule. Named ports
    resolve on MEMBERS (the subject pods) for ingress, on every pod for egress."""
    destinations = members if direction == "Ingress" else pods
    selected = admin_selection(view, policy, direction)
    lines: list[str] = []
    for index, admin_rule in enumerate(policy.rules(direction)):
        rule = admin_rule.rule
        peers = _admin_peers(rule, [p for j in range(len(rule.peers or ())) for p in selected.get((index, j), ())])
        ports = _Builder.ports(rule, destinations)
        if peers == [] or ports == []:
            continue  # matches nothing
        why = _comment(str(RuleRef(policy.key, direction, index, admin_rule.action)))
        lines += [" ".join(p for p in (match, why, f"-j {ADMIN_TARGETS[admin_rule.action]}") if p)
                  for match in _Builder.rule_lines(direction, peers, ports)]
        if admin_rule.action == "Allow":
            lines.append(f"-m mark --mark {_DECIDED} -j RETURN")  # decided: later rules need not run
    return tuple(lines)


def admin_parts(index: ClusterIndex, admin: tuple[AdminPolicy, ...]) -> dict[Direction, AdminPart]:
    """The admin tiers' chains for INDEX's node, per direction that has any."""
    view = ClusterView(pods=index.pods.values(), namespaces=index.namespaces.values(), admin=admin)
    local = [pod for _, pod in sorted(index.pods.items()) if index.is_local(pod)]
    every_pod = [pod for _, pod in sorted(index.pods.items()) if not pod.host_network]
    out: dict[Direction, AdminPart] = {}
    for direction in DIRECTIONS:
        grouping = AdminGrouping.of(view, local, direction)
        groups, baseline, members = grouping.groups, grouping.baseline, grouping.members
        if not groups and not baseline:
            continue
        rendered = {p.key: _admin_rules(view, p, direction, members[p.key], every_pod)
                    for p in view.anps if p.key in members}
        chains = {admin_group_chain(direction, keys): (tuple(r for k in keys for r in rendered[k]), pods)
                  for keys, pods in sorted(groups.items())}
        banp_rules = _admin_rules(view, view.banp, direction, baseline, every_pod) \
            if baseline and view.banp is not None else ()
        out[direction] = AdminPart(chains, banp_rules, baseline)
    return out


def _self_lines(pod_key: str, ips: list[str]) -> list[str]:
    return [f"-s {ip}/32 -d {ip}/32 {_comment(f'{pod_key} reaching itself')} -j ACCEPT" for ip in ips]


# chain -> its rules (iptables-restore rule specs, without `-A CHAIN`), TOP first.
Chains = dict[str, tuple[str, ...]]


class Planner:
    """Keeps a node's chains across syncs, as nftables.Planner keeps its table: `update()` renders
    again only the policy chains whose inputs changed, and rebuilds the cheap rest (group chains, the
    top chain's dispatch) from the index. A fresh Planner's first update is the full computation and
    `render()` is exactly that, so the incremental and the from-scratch paths are one code path."""

    def __init__(self, node: str) -> None:
        self.index = ClusterIndex(node)
        # (policy, direction) -> (the pods its named ports resolved on, its chain's rules)
        self.rendered: dict[tuple[str, Direction], tuple[frozenset[str], tuple[str, ...]]] = {}
        # The cheap rest, kept too, because at a thousand pods and policies even cheap adds up: each
        # pod's addresses, each policy chain's name, each group chain, each pod's lines in the top chain.
        self._addresses: dict[str, tuple[Pod, list[str]]] = {}
        self._names: dict[tuple[Direction, str], str] = {}
        self._groups: dict[tuple[Direction, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}
        self._lines: dict[tuple[str, str], tuple[Pod, str, list[str]]] = {}
        # The admin tiers, computed whole when an admin policy, a pod or a namespace changed.
        self.admin: dict[Direction, AdminPart] = {}
        self._admin_inputs: object = None

    def addresses(self, key: str) -> list[str]:
        pod = self.index.pods[key]
        cached = self._addresses.get(key)
        if cached is None or cached[0] is not pod:
            cached = self._addresses[key] = (pod, _ipv4(pod))
        return cached[1]

    def chain_name(self, direction: Direction, key: str) -> str:
        name = self._names.get((direction, key))
        if name is None:
            name = self._names[(direction, key)] = policy_chain(direction, self.index.policies[key])
        return name

    def group(self, direction: Direction, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """The group chain of the policies KEYS (a function of the keys alone): its name and rules."""
        found = self._groups.get((direction, keys))
        if found is None:
            rules = [f"-j MARK --set-xmark 0x0/{ALLOWED:#x}"]
            for key in keys:
                rules += [f"-j {self.chain_name(direction, key)}", f"-m mark --mark {_MARK} -j RETURN"]
            isolated_by = f"{direction.lower()} isolated by {', '.join(keys)}"
            rules.append(f"{_comment(isolated_by)} -j DROP")
            found = self._groups[(direction, keys)] = (group_chain(direction, keys), tuple(rules))
        return found

    def lines(self, slot: tuple[str, str], pod: Pod, target: str, make: Callable[..., list[str]],
              *args: Any) -> list[str]:
        """A pod's lines in the top chain (`make(*args)`), made again only when the pod or TARGET changed."""
        cached = self._lines.get(slot)
        if cached is None or cached[0] is not pod or cached[1] != target:
            cached = self._lines[slot] = (pod, target, make(*args))
        return cached[2]

    def update(self, policies: Iterable[Policy], pods: Iterable[Pod], namespaces: Iterable[Namespace],
               admin: Iterable[AdminPolicy] = ()) -> Chains:
        changes = self.index.update(policies, pods, namespaces)
        admin = tuple(admin)
        inputs = (admin, dict(self.index.namespaces))
        if changes.pods or inputs != self._admin_inputs:
            self.admin = admin_parts(self.index, admin) if admin else {}
            self._admin_inputs = inputs
        for slot in list(self.rendered):
            if slot[0] in changes.policies or slot[0] not in self.index.policies:
                del self.rendered[slot]
        builder = _Builder(self, changes)
        chains = builder.build()
        # A chain no pod of the node needs now is forgotten: its pods may differ when it is needed again.
        self.rendered = {slot: v for slot, v in self.rendered.items() if slot in builder.used}
        if changes.pods:
            self._addresses = {k: v for k, v in self._addresses.items() if k in self.index.pods}
            self._lines = {slot: v for slot, v in self._lines.items() if slot[1] in self.index.pods}
        if changes.policies:
            self._names = {slot: v for slot, v in self._names.items() if slot[1] in self.index.policies}
            self._groups = {slot: v for slot, v in self._groups.items() if v[0] in chains}
        return chains


def restore_text(chains: Chains) -> str:
    """CHAINS as iptables-restore --noflush text declaring (so flushing) and filling every one."""
    lines = [f"*{FILTER}", *(f":{chain} - [0:0]" for chain in chains)]
    lines += [f"-A {chain} {rule}" for chain, rules in chains.items() for rule in rules]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def delta(old: Chains, new: Chains) -> str:
    """The iptables-restore --noflush transaction from OLD (what the kernel holds, as applied) to NEW:
    changed and new chains declared (flushed) and filled, chains gone flushed and deleted; every other
    chain, and our jumps from FORWARD, left alone. "" when nothing changed."""
    changed = {c: rules for c, rules in new.items() if old.get(c) is not rules and old.get(c) != rules}
    gone = [c for c in old if c not in new]
    if not changed and not gone:
        return ""
    lines = [f"*{FILTER}", *(f":{c} - [0:0]" for c in (*changed, *gone))]
    lines += [f"-A {chain} {rule}" for chain, rules in changed.items() for rule in rules]
    lines += [f"-X {c}" for c in gone]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def rule_count(chains: Chains) -> int:
    """The rules that allow something: what the agent reports as the ruleset's rules."""
    return sum(1 for rules in chains.values() for rule in rules if rule.endswith(RULE_MARKER))


def render(view: ClusterView, node: str) -> str:
    """The desired chains for `node`'s pods: iptables-restore --noflush text declaring (so flushing)
    and filling every chain of ours, not yet hooked into FORWARD (`complete()` does that)."""
    return restore_text(Planner(node).update(view.policies, view.pods, view.namespaces, view.admin))


def _forward_rules(saved: str) -> list[str]:
    return [line[len("-A FORWARD "):] for line in saved.splitlines() if line.startswith("-A FORWARD ")]


def _target(spec: str) -> str:
    return spec.rsplit("-j ", 1)[-1].split(" ", 1)[0] if "-j " in spec else ""


def _ours(spec: str) -> bool:
    return _target(spec).startswith(PREFIX)


def complete(desired: str, saved: str) -> str:
    """`desired` (from render) as a transaction against the filter table `saved` (iptables-save -t filter).

    Adds: our jumps from FORWARD deleted and inserted again at their places (see the module's
    docstring), and the chains of ours the kernel holds but `desired` lacks flushed and deleted.
    """
    lines = desired.rstrip("\n").split("\n")
    if lines[0] != f"*{FILTER}" or lines[-1] != "COMMIT":
        raise NetpolError("iptables: a desired ruleset is one *filter ... COMMIT block (from render())")
    body = lines[1:-1]
    wanted = {line[1:].split(" ", 1)[0] for line in body if line.startswith(":")}
    stale = sorted(c for c in saved_chains(saved) if c.startswith(PREFIX) and c not in wanted)
    forward = _forward_rules(saved)
    others = [spec for spec in forward if not _ours(spec)]
    proxy = [i for i, spec in enumerate(others) if _target(spec) in PROXY_FORWARD_TARGETS]
    after_proxy = proxy[-1] + 1 if proxy else 0
    before_forward = next((i for i, spec in enumerate(others) if _target(spec) == KUBE_FORWARD), None)
    out = [f"*{FILTER}", *(f":{c} - [0:0]" for c in stale), *body]
    out += [f"-D FORWARD {spec}" for spec in forward if _ours(spec)]
    # -I N counts the rules left after the deletions above; the later position is filled first.
    out.append(f"-I FORWARD {after_proxy + 1} {JUMP}")
    if before_forward is not None:
        out.append(f"-I FORWARD {before_forward + 1} {MARKED_JUMP}")
    out += [f"-X {c}" for c in stale]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def cleanup(saved: str) -> str:
    """The transaction removing every chain of ours and every jump to them ("" when there are none)."""
    ours = [c for c in saved_chains(saved) if c.startswith(PREFIX)]
    jumps = [spec for spec in _forward_rules(saved) if _ours(spec)]
    if not ours and not jumps:
        return ""
    lines = [f"*{FILTER}", *(f":{c} - [0:0]" for c in ours), *(f"-D FORWARD {spec}" for spec in jumps)]
    lines += [f"-X {c}" for c in ours]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class IptablesCommand:
    """The runner: read the filter table, complete the desired chains against it, restore in one go."""

    def __init__(self, *, runner: IptablesRunner | None = None, flavour: Flavour = "nft") -> None:
        self.runner: IptablesRunner = runner if runner is not None else SubprocessIptables(flavour=flavour)

    def apply(self, desired: str) -> None:
        try:
            self.runner.restore(complete(desired, self.runner.save(FILTER)))
        except IptablesError as err:
            raise NetpolError(f"iptables refused the ruleset: {err}") from err

    def apply_changes(self, transaction: str) -> None:
        """A delta (from `delta()`) restored as it is, without reading the table first."""
        try:
            self.runner.restore(transaction)
        except IptablesError as err:
            raise NetpolError(f"iptables refused the changes: {err}") from err

    def cleanup(self) -> None:
        try:
            self.runner.restore(cleanup(self.runner.save(FILTER)))
        except IptablesError as err:
            raise NetpolError(f"iptables could not remove the agent's chains: {err}") from err
