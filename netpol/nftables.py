"""A node's NetworkPolicy ruleset for nftables: the decision of decide.py, in the kernel.

The table holds a bounded number of chains however many pods there are: pods are keys of two verdict
maps (egress by source address, ingress by destination address), each pointing at the chain of the
*group* of policies isolating it, so a thousand pods selected by the same policies share one chain.

    forward-egress  (hook forward, priority 10)  replies pass; a pod reaching itself through a Service
    forward-ingress (hook forward, priority 11)  passes; else, by the pod's address, in this order:
      @<dir>-admin    jump   <dir>-admin-<hash>  the rules of the ANPs selecting the pod, inline, in
                                                 evaluation order: Allow accept, Deny drop, Pass return
      @<dir>-pods     goto   <dir>-isolated-<hash>  jump to each isolating policy's chain, then drop
      @<dir>-baseline goto   <dir>-baseline      the BANP's rules, for pods no NetworkPolicy isolates
    <dir>-<namespace>/<name>                     each policy rule: peers, ports, accept

An ANP chain is entered by a jump, so a Pass (return) or no matching rule comes back to the base chain,
whose next rule is the NetworkPolicies' map; a pod they isolate ends in its group chain (accept or
drop), so only the others reach the baseline's map. The ANP rules are spliced into each group's chain
rather than jumped to per policy: a Pass must leave every later ANP behind at once. Every admin rule's
comment names it (`AdminNetworkPolicy/<name> ingress rule 0: Deny`), which is what a trace shows.

A policy rule becomes a kernel rule per form of its peers and of its ports (see render_policy): pod
addresses a plain set, an ipBlock less its excepts inline prefixes (an interval set when it is wide),
numeric ports inline, named ports a plain set of destination address . protocol . port, each
destination pod with its own number. Only IPv4 is programmed (the cluster is single-stack IPv4).

The desired table is data (Plan), computed by a Planner that renders again only the policies whose
inputs changed; `full_transaction` writes a whole Plan, `delta_transaction` the difference between
two, so one changed policy costs one flushed and refilled chain, not the table.

Traffic of the node itself never crosses the forward hook (it leaves through OUTPUT and arrives
through INPUT), so probes from the pod's own node and a pod's calls to its node are never judged: the
"always allowed" of the API falls out of where the chains hook.

Replies are accepted by conntrack state before any policy, so a connection allowed once keeps working
until it ends even if a policy changes; new connections meet the new rules.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netaddr import IPSet

from netpol.admin import AdminPolicy
from netpol.decide import AdminGrouping, ClusterIndex, ClusterView, RuleRef, admin_selection
from netpol.model import Direction, IPBlock, Namespace, Pod, Policy, PortRule, Rule

TABLE = "kubesim-netpol"
FAMILY = "ip"
# nftables names are at most 256 bytes (NFT_NAME_MAXLEN); longer ones keep a readable head and a hash.
MAX_NAME = 200
# An ipBlock (less its excepts) of at most this many prefixes is matched inline, without a set.
INLINE_CIDRS = 8
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


def group_chain(direction: Direction, suffix: str) -> str:
    return f"{direction.lower()}-isolated-{suffix}"


def rule_comment(policy: Policy, direction: Direction, index: int) -> str:
    """The words the trace shows for a rule: `x/p ingress rule 0`, as decide.RuleRef prints."""
    return f"{policy.key} {direction.lower()} rule {index}"


def group_key_chain(direction: Direction, keys: tuple[str, ...]) -> str:
    """The chain of the group of pods isolated by exactly the policies KEYS (in name order).

    Named by a hash of the keys, not by position, so that a group appearing or going does not rename
    every other group's chain (which would rewrite the whole verdict map on each change)."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    return group_chain(direction, digest)


def admin_map(direction: Direction) -> str:
    return f"{direction.lower()}-admin"


def baseline_map(direction: Direction) -> str:
    return f"{direction.lower()}-baseline"


ADMIN_MAPS = tuple(name for d in DIRECTIONS for name in (admin_map(d), baseline_map(d)))
# What an admin rule's action is in the kernel. Pass returns to the base chain, whose next rule is the
# NetworkPolicies' map; so does an ANP chain none of whose rules matched.
ADMIN_VERDICTS = {"Allow": "accept", "Deny": "drop", "Pass": "return"}


def admin_group_chain(direction: Direction, keys: tuple[str, ...]) -> str:
    """The chain of the pods that exactly the ANPs KEYS (in evaluation order) select: their rules, inline."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    return f"{direction.lower()}-admin-{digest}"


def baseline_chain(direction: Direction) -> str:
    return f"{direction.lower()}-baseline"


def render_admin(
    policy: AdminPolicy, direction: Direction, selected: Mapping[tuple[int, int], Iterable[Pod]],
    destinations: Iterable[Pod],
) -> tuple[tuple[str, ...], tuple[NftSet, ...]]:
    """An admin policy's rules for DIRECTION, in order, each ending in its action's verdict and a comment
    naming the policy, rule and action (`AdminNetworkPolicy/deny-y ingress rule 0: Deny`); and their sets.
    The rules are spliced into the chains of the groups of pods the policy selects, as a Pass must
    leave every later ANP behind at once."""
    short = "anp" if policy.tier == "admin" else "banp"
    prefix = object_name(f"{direction.lower()}-{short}-{policy.name}")
    destinations = list(destinations)
    rules: list[str] = []
    sets: list[NftSet] = []
    for index, admin_rule in enumerate(policy.rules(direction)):
        matches, rule_sets = rule_matches(admin_rule.rule, index, prefix, direction, selected, destinations)
        sets.extend(rule_sets)
        ref = comment(str(RuleRef(policy.key, direction, index, admin_rule.action)))
        verdict = ADMIN_VERDICTS[admin_rule.action]
        rules.extend(" ".join(m for m in (match, f"{verdict} comment", ref) if m) for match in matches)
    return tuple(rules), tuple(sets)


# --- the desired state, as data ---------------------------------------------------------------------

@dataclass(frozen=True)
class NftSet:
    name: str
    type: str
    interval: bool
    elements: tuple[str, ...]

    def spec(self) -> str:
        return f"type {self.type};" + (" flags interval;" if self.interval else "")


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class PolicyChain:
    """One policy's rules for one direction: its chain and the sets the chain's rules look up."""

    chain: Chain
    sets: tuple[NftSet, ...]


@dataclass
class Plan:
    """The node's table: every set, every regular chain (policy chains, then group chains, per
    direction) and the verdict maps, pod address -> group chain. The base chains never change."""

    sets: dict[str, NftSet] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)
    verdicts: dict[Direction, dict[str, str]] = field(default_factory=dict)
    isolated: dict[Direction, int] = field(default_factory=dict)  # local pods isolated, for metrics
    # The admin tiers' maps (`<dir>-admin`, `<dir>-baseline`): pod address -> "jump <chain>" / "goto <chain>".
    admin_maps: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def rules(self) -> int:
        """The rules of the policy and admin chains (a policy rule may take one per peer and port form);
        not the group chains' jumps and drops."""
        return sum(len(chain.rules) for chain in self.chains.values() if "-isolated-" not in chain.name)


def _ipv4(pod: Pod) -> list[str]:
    return [str(ip) for ip in pod.ips if ip.version == 4]


def uses_named_ports(policy: Policy, direction: Direction) -> bool:
    return any(isinstance(port.port, str) for rule in policy.rules(direction) or () for port in rule.ports)


def _port_matches(ports: Iterable[PortRule], destinations: list[Pod], named_set: str) -> tuple[list[str], list[str]]:
    """A rule's ports as (matches, named-port elements): the matches are alternatives (one rule each);
    a named port becomes `address . protocol . port` elements of the set NAMED_SET, resolved per pod."""
    exact: list[str] = []
    matches: list[str] = []
    named: set[str] = set()
    for port in ports:
        if port.broken:
            continue
        proto = PROTOCOL_NAMES[port.protocol]
        if port.port is None:
            matches.append(f"meta l4proto {proto}")
        elif isinstance(port.port, str):
            for pod in destinations:
                number = pod.named_ports.get((port.port, port.protocol))
                if number is not None:
                    named.update(f"{ip} . {proto} . {number}" for ip in _ipv4(pod))
        elif port.end_port is not None and port.end_port != port.port:
            matches.append(f"meta l4proto {proto} th dport {port.port}-{port.end_port}")
        else:
            exact.append(f"{proto} . {port.port}")
    exact = sorted(set(exact))
    if len(exact) == 1:
        proto, dport = exact[0].split(" . ")
        matches.insert(0, f"meta l4proto {proto} th dport {dport}")
    elif exact:
        matches.insert(0, f"meta l4proto . th dport {{ {', '.join(exact)} }}")
    if named:
        matches.append(f"ip daddr . meta l4proto . th dport @{named_set}")
    return matches, sorted(named)


@functools.lru_cache(maxsize=4096)
def _block_pieces(block: IPBlock) -> tuple[str, ...]:
    """An IPv4 ipBlock less its excepts, as prefixes (remembered: a policy is rendered again whenever
    the pods it picks change, its blocks never do)."""
    if block.cidr.version != 4:
        return ()
    if not block.excepts:
        return (str(block.cidr),)
    left = IPSet([str(block.cidr)]) - IPSet(str(hole) for hole in block.excepts)
    return tuple(str(cidr) for cidr in left.iter_cidrs())


def rule_matches(
    rule: Rule, index: int, name: str, direction: Direction, selected: Mapping[tuple[int, int], Iterable[Pod]],
    destinations: list[Pod],
) -> tuple[list[str], list[NftSet]]:
    """A rule's matches (alternatives: one kernel rule each) and the sets they look up; no matches
    when the rule matches nothing. NAME prefixes the sets' names; `selected[(index, peer)]` are the
    pods a selector peer picks; DESTINATIONS the pods a named port resolves on."""
    # An ingress rule judges where the packet comes from; an egress rule where it goes.
    peer_match = "ip saddr" if direction == "Ingress" else "ip daddr"
    sets: list[NftSet] = []
    peer_forms = [""]
    if rule.peers is not None:
        pods: set[str] = set()
        pieces: list[str] = []
        for j, peer in enumerate(rule.peers):
            if peer.broken:
                continue
            if peer.ip_block is not None:
                pieces.extend(_block_pieces(peer.ip_block))
                continue
            pods.update(ip for pod in selected.get((index, j), ()) for ip in _ipv4(pod))
        # One IPSet of every piece at once: merging them one by one is quadratic (5,000 peers: 12 s).
        blocks = IPSet(pieces)
        # The merged blocks cover overlapping ipBlocks and except holes once; a pod address inside
        # them needs no entry of its own. (Asked only when there are blocks: a lookup in an IPSet,
        # even an empty one, costs ~90 us, which 5,000 pod addresses turn into half a second.)
        if pieces:
            pods = {ip for ip in pods if ip not in blocks}
        cidrs = [str(cidr) for cidr in blocks.iter_cidrs()]
        peer_forms = []
        if pods:
            peers = NftSet(object_name(f"{name}-{index}-peers"), "ipv4_addr", False, tuple(sorted(pods)))
            sets.append(peers)
            peer_forms.append(f"{peer_match} @{peers.name}")
        if len(cidrs) > INLINE_CIDRS:
            wide = NftSet(object_name(f"{name}-{index}-blocks"), "ipv4_addr", True, tuple(cidrs))
            sets.append(wide)
            peer_forms.append(f"{peer_match} @{wide.name}")
        else:
            peer_forms.extend(f"{peer_match} {cidr}" for cidr in cidrs)
        if not peer_forms:
            return [], []  # matches nothing: no addresses left (the trace says why, from the plan)
    port_forms = [""]
    if rule.ports:
        named_set = object_name(f"{name}-{index}-ports")
        port_forms, named = _port_matches(rule.ports, destinations, named_set)
        if named:
            sets.append(NftSet(named_set, "ipv4_addr . inet_proto . inet_service", False, tuple(named)))
        if not port_forms:
            return [], []
    return [" ".join(m for m in (peers_m, ports_m) if m) for peers_m in peer_forms for ports_m in port_forms], sets


def render_policy(
    policy: Policy, direction: Direction, selected: Mapping[tuple[int, int], Iterable[Pod]],
    destinations: Iterable[Pod],
) -> PolicyChain:
    """One policy's chain for one direction, from what its inputs resolved to.

    `selected[(rule, peer)]` are the pods a selector peer picks; `destinations` the pods a named port
    resolves on (the isolated pods themselves for ingress, every pod for egress).

    A policy rule becomes one kernel rule per (peer form x port form), all with the policy rule's
    comment: pod addresses are a plain set, an ipBlock's few CIDRs are inline prefixes, numeric ports
    inline, named ports a plain set of `address . protocol . port`. No interval sets unless an ipBlock
    spans more than INLINE_CIDRS prefixes: nft fetches every interval set's elements into its cache
    before any change to the table, which would make each small update cost as much as the table
    is large (measured: ~50 ms per 2,000 interval sets)."""
    name = policy_chain(direction, policy)
    destinations = list(destinations)
    rules: list[str] = []
    sets: list[NftSet] = []
    for index, rule in enumerate(policy.rules(direction) or ()):
        matches, rule_sets = rule_matches(rule, index, name, direction, selected, destinations)
        sets.extend(rule_sets)
        ref = comment(rule_comment(policy, direction, index))
        rules.extend(" ".join(m for m in (match, "accept comment", ref) if m) for match in matches)
    return PolicyChain(Chain(name, tuple(rules)), tuple(sets))


def group_rules(direction: Direction, keys: tuple[str, ...], policies: Mapping[str, Policy]) -> tuple[str, ...]:
    isolated_by = ", ".join(keys)
    return (
        *(f"jump {policy_chain(direction, policies[k])}" for k in keys),
        f"counter drop comment {comment(f'{direction.lower()} isolated by {isolated_by}')}",
    )


# --- the transactions ---------------------------------------------------------------------------------

def _base_chains() -> list[str]:
    lines = []
    for priority, direction in enumerate(DIRECTIONS):
        key = "ip saddr" if direction == "Egress" else "ip daddr"
        lines += [
            f"  chain forward-{direction.lower()} {{",
            f"    type filter hook forward priority {BASE_PRIORITY + priority}; policy accept;",
            "    ct state established,related accept",
            "    ip saddr . ip daddr @local-self accept",
            # AdminNetworkPolicies first: a jump, so that Pass (return) and no match come back here.
            f"    {key} vmap @{admin_map(direction)}",
            f"    {key} vmap @{direction.lower()}-pods",
            # Reached only by pods no NetworkPolicy isolates (the vmap above ends in their group's drop).
            f"    {key} vmap @{baseline_map(direction)}",
            "  }",
        ]
    return lines


def _elements(items: Iterable[str]) -> str:
    return ", ".join(items)


def full_transaction(plan: Plan) -> str:
    """The whole table, replacing any earlier one atomically (add first, so the delete cannot fail)."""
    lines = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", f"table {FAMILY} {TABLE} {{"]
    for s in plan.sets.values():
        elements = f" elements = {{ {_elements(s.elements)} }};" if s.elements else ""
        lines.append(f"  set {s.name} {{ {s.spec()}{elements} }}")
    for chain in plan.chains.values():
        lines.append(f"  chain {chain.name} {{")
        lines.extend(f"    {rule}" for rule in chain.rules)
        lines.append("  }")
    for direction in DIRECTIONS:
        verdicts = plan.verdicts.get(direction, {})
        elements = f" elements = {{ {_elements(f'{ip} : goto {c}' for ip, c in verdicts.items())} }};" \
            if verdicts else ""
        lines.append(f"  map {direction.lower()}-pods {{ type ipv4_addr : verdict;{elements} }}")
    for name in ADMIN_MAPS:
        verdicts = plan.admin_maps.get(name, {})
        elements = f" elements = {{ {_elements(f'{ip} : {v}' for ip, v in verdicts.items())} }};" if verdicts else ""
        lines.append(f"  map {name} {{ type ipv4_addr : verdict;{elements} }}")
    lines += _base_chains()
    lines.append("}")
    return "\n".join(lines) + "\n"


def delta_transaction(old: Plan, new: Plan) -> str:
    """What turns the table of OLD into the table of NEW, touching only what differs; "" if nothing.

    Changed sets and chains are flushed and refilled, verdict map elements added and deleted one by one.
    The order keeps every reference valid at each step, as the kernel checks them command by command:
    new sets and chains exist before a rule or a map element names them, and a chain or set goes only
    after the rules and elements naming it are gone. Like the full one, it is one transaction: the
    kernel applies all of it or none."""
    table = f"{FAMILY} {TABLE}"
    out: list[str] = []
    for name, s in new.sets.items():
        was = old.sets.get(name)
        if was is s or was == s:
            continue
        out.append(f"add set {table} {name} {{ {s.spec()} }}" if was is None else f"flush set {table} {name}")
        if s.elements:
            out.append(f"add element {table} {name} {{ {_elements(s.elements)} }}")
    changed = [c for name, c in new.chains.items() if old.chains.get(name) != c]
    out.extend(f"add chain {table} {c.name}" for c in changed if c.name not in old.chains)
    for chain in changed:
        if chain.name in old.chains:
            out.append(f"flush chain {table} {chain.name}")
        out.extend(f"add rule {table} {chain.name} {rule}" for rule in chain.rules)
    for direction in DIRECTIONS:
        was_map, now_map = old.verdicts.get(direction, {}), new.verdicts.get(direction, {})
        gone = [ip for ip, c in was_map.items() if now_map.get(ip) != c]
        came = [f"{ip} : goto {c}" for ip, c in now_map.items() if was_map.get(ip) != c]
        if gone:
            out.append(f"delete element {table} {direction.lower()}-pods {{ {_elements(gone)} }}")
        if came:
            out.append(f"add element {table} {direction.lower()}-pods {{ {_elements(came)} }}")
    for name in ADMIN_MAPS:
        was_map, now_map = old.admin_maps.get(name, {}), new.admin_maps.get(name, {})
        gone = [ip for ip, v in was_map.items() if now_map.get(ip) != v]
        came = [f"{ip} : {v}" for ip, v in now_map.items() if was_map.get(ip) != v]
        if gone:
            out.append(f"delete element {table} {name} {{ {_elements(gone)} }}")
        if came:
            out.append(f"add element {table} {name} {{ {_elements(came)} }}")
    removed = [name for name in old.chains if name not in new.chains]
    # Flush first: a removed group chain may still jump to a removed policy chain.
    out.extend(f"flush chain {table} {name}" for name in removed)
    out.extend(f"delete chain {table} {name}" for name in removed)
    out.extend(f"delete set {table} {name}" for name in old.sets if name not in new.sets)
    return "\n".join(out) + "\n" if out else ""


# --- from the cluster to a plan, rendering again only what changed -------------------------------------

class Planner:
    """Keeps a node's Plan across syncs: `update()` with the cluster's objects renders again only the
    policy chains whose inputs changed (the policy, the pods its peers pick, the pods its named ports
    resolve on) and rebuilds the cheap rest (groups, verdict maps) from the cached pieces.

    A fresh Planner's first update is the full computation; `plan()` is exactly that, so the
    incremental path and the from-scratch path are one code path, and tests compare the two."""

    def __init__(self, node: str) -> None:
        self.index = ClusterIndex(node)
        self.rendered: dict[tuple[str, Direction], PolicyChain] = {}
        # What each rendered named-port ingress chain resolved on: its isolated pods.
        self.resolved_on: dict[tuple[str, Direction], frozenset[str]] = {}
        self.groups: dict[tuple[Direction, tuple[str, ...]], Chain] = {}
        self.addresses: dict[str, tuple[Pod, list[str]]] = {}
        self.local_self: NftSet | None = None
        self.admin_subjects: frozenset[str] = frozenset()
        self.admin_cache: tuple[object, Plan, frozenset[str]] | None = None

    def update(self, policies: Iterable[Policy], pods: Iterable[Pod], namespaces: Iterable[Namespace],
               admin: Iterable[AdminPolicy] = ()) -> Plan:
        changes = self.index.update(policies, pods, namespaces)
        index = self.index
        admin = tuple(admin)
        for slot in list(self.rendered):
            if slot[0] in changes.policies or slot[0] not in index.policies:
                del self.rendered[slot]
        admin_plan, admin_subjects = self._admin(admin, bool(changes.pods))
        if changes.pods or changes.policies or self.local_self is None or admin_subjects != self.admin_subjects:
            self.addresses = {k: v for k, v in self.addresses.items() if k in index.pods}
            self.admin_subjects = admin_subjects
            # Only a pod that some policy judges needs "reaching itself" let through first: any other
            # pod's traffic is accepted anyway. So a pod starting where no policy selects it changes no
            # rule, and the sync after it sends nft nothing.
            isolated = {key for key, by in index.isolation.items() if any(by.values())}
            judged = isolated | admin_subjects
            local = sorted(ip for key in judged for ip in self._addresses(key))
            self.local_self = NftSet("local-self", "ipv4_addr . ipv4_addr", False,
                                     tuple(f"{ip} . {ip}" for ip in local))
        plan = Plan(sets={"local-self": self.local_self})
        plan.admin_maps = admin_plan.admin_maps
        for direction in DIRECTIONS:
            groups: dict[tuple[str, ...], list[str]] = {}
            for pod_key, isolation in index.isolation.items():
                if isolation[direction]:
                    groups.setdefault(isolation[direction], []).append(pod_key)
            isolated_by: dict[str, set[str]] = {}
            for keys, pod_keys in groups.items():
                for key in keys:
                    isolated_by.setdefault(key, set()).update(pod_keys)
            used = sorted(isolated_by, key=lambda k: (index.policies[k].namespace, index.policies[k].name))
            for key in used:
                rendered = self._policy(key, direction, isolated_by[key], changes.destinations)
                plan.chains[rendered.chain.name] = rendered.chain
                plan.sets.update((s.name, s) for s in rendered.sets)
            verdicts: dict[str, str] = {}
            for keys, pod_keys in sorted(groups.items()):
                chain = self.groups.get((direction, keys))
                if chain is None:
                    chain = Chain(group_key_chain(direction, keys), group_rules(direction, keys, index.policies))
                    self.groups[(direction, keys)] = chain
                plan.chains[chain.name] = chain
                verdicts.update((ip, chain.name) for k in sorted(pod_keys) for ip in self._addresses(k))
            plan.verdicts[direction] = verdicts
            plan.isolated[direction] = sum(len(pod_keys) for pod_keys in groups.values())
        # Group chains are a function of their keys alone (the chain names are derived from the keys).
        self.groups = {slot: c for slot, c in self.groups.items() if c.name in plan.chains}
        plan.chains.update(admin_plan.chains)
        plan.sets.update(admin_plan.sets)
        return plan

    def _admin(self, admin: tuple[AdminPolicy, ...], pods_changed: bool) -> tuple[Plan, frozenset[str]]:
        """The admin tiers' chains, sets and maps, and the keys of the local pods they select.

        Computed whole when any input changed (no incremental index yet: admin policies are few and
        written by the cluster's administrators, not one per workload as NetworkPolicies are), else the
        last result again (the parse cache keeps unchanged objects identical, so comparing is cheap)."""
        index = self.index
        inputs = (admin, dict(index.namespaces))
        if not pods_changed and self.admin_cache is not None and self.admin_cache[0] == inputs:
            return self.admin_cache[1], self.admin_cache[2]
        out, subjects = self._render_admin(admin)
        self.admin_cache = (inputs, out, subjects)
        return out, subjects

    def _render_admin(self, admin: tuple[AdminPolicy, ...]) -> tuple[Plan, frozenset[str]]:
        out = Plan()
        if not admin:
            return out, frozenset()
        index = self.index
        view = ClusterView(pods=index.pods.values(), namespaces=index.namespaces.values(), admin=admin)
        local = [pod for _, pod in sorted(index.pods.items()) if index.is_local(pod)]
        subjects: set[str] = set()
        every_pod = [pod for _, pod in sorted(index.pods.items()) if not pod.host_network]
        for direction in DIRECTIONS:
            grouping = AdminGrouping.of(view, local, direction)
            groups, baseline, members = grouping.groups, grouping.baseline, dict(grouping.members)
            if baseline and view.banp is not None:
                members[view.banp.key] = baseline
            rendered: dict[str, tuple[str, ...]] = {}
            for policy in view.admin:
                if policy.key in members:
                    # Named ports resolve on the destination: the subject pods for ingress, any pod for egress.
                    destinations = members[policy.key] if direction == "Ingress" else every_pod
                    rules, sets = render_admin(policy, direction, admin_selection(view, policy, direction),
                                               destinations)
                    rendered[policy.key] = rules
                    out.sets.update((s.name, s) for s in sets)
            jumps: dict[str, str] = {}
            for keys, pods in sorted(groups.items()):
                chain = Chain(admin_group_chain(direction, keys), tuple(r for k in keys for r in rendered[k]))
                out.chains[chain.name] = chain
                jumps.update((ip, f"jump {chain.name}") for pod in pods for ip in self._addresses(pod.key))
            gotos: dict[str, str] = {}
            if baseline and view.banp is not None:
                chain = Chain(baseline_chain(direction), rendered[view.banp.key])
                out.chains[chain.name] = chain
                gotos = {ip: f"goto {chain.name}" for pod in baseline for ip in self._addresses(pod.key)}
            # Only maps with elements: an empty map and an absent one are the same table.
            out.admin_maps.update((name, v) for name, v in ((admin_map(direction), jumps),
                                                            (baseline_map(direction), gotos)) if v)
            subjects.update(pod.key for pods in groups.values() for pod in pods)
            subjects.update(pod.key for pod in baseline)
        return out, frozenset(subjects)

    def _addresses(self, key: str) -> list[str]:
        pod = self.index.pods[key]
        cached = self.addresses.get(key)
        if cached is None or cached[0] is not pod:
            cached = self.addresses[key] = (pod, _ipv4(pod))
        return cached[1]

    def _policy(self, key: str, direction: Direction, isolated: set[str],
                destinations_changed: set[str]) -> PolicyChain:
        """KEY's chain for DIRECTION, rendered again only if its inputs changed. ISOLATED: the pods it
        isolates (named ports of an ingress rule resolve on them)."""
        index, slot = self.index, (key, direction)
        policy = index.policies[key]
        named = uses_named_ports(policy, direction)
        members: frozenset[str] = frozenset()
        if named and direction == "Ingress":
            members = frozenset(isolated)
            if self.resolved_on.get(slot) != members or not destinations_changed.isdisjoint(members):
                self.rendered.pop(slot, None)
        elif named and destinations_changed:
            self.rendered.pop(slot, None)  # egress named ports resolve on every pod
        cached = self.rendered.get(slot)
        if cached is not None:
            return cached
        selections = index.selected.get(key, {})
        selected = {(i, j): [index.pods[k] for k in sorted(chosen)]
                    for (d, i, j), chosen in selections.items() if d == direction}
        if direction == "Ingress":
            destinations: Iterable[Pod] = [index.pods[k] for k in sorted(members)]
        else:
            destinations = [p for _, p in sorted(index.pods.items()) if not p.host_network] if named else ()
        rendered = render_policy(policy, direction, selected, destinations)
        self.rendered[slot] = rendered
        self.resolved_on[slot] = members
        return rendered


def plan(view: ClusterView, node: str) -> Plan:
    """The node's table from scratch."""
    return Planner(node).update(view.policies, view.pods, view.namespaces, view.admin)


def render(view: ClusterView, node: str) -> str:
    """The whole table for `node`'s pods, as a transaction that replaces any earlier one atomically."""
    return full_transaction(plan(view, node))


def cleanup() -> str:
    return f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
