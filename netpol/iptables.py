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
still judged.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netaddr import IPSet

# The iptables tools shared with kube-proxy, and kube-proxy's own hooks (where ours must sit).
from firewall.errors import IptablesError
from firewall.iptables import FILTER, FakeIptables, Flavour, IptablesRunner, SubprocessIptables, comment, saved_chains
from netpol.admin import AdminPolicy
from netpol.decide import _NO_POLICY, ClusterView, RuleRef
from netpol.errors import NetpolError
from netpol.model import Direction, Pod, Policy, PortRule, Rule
from proxy.iptables.layout import JUMPS, KUBE_FORWARD
from proxy.plan import DEFAULT_MASQUERADE_MARK

__all__ = [
    "FakeIptables", "Flavour", "IptablesCommand", "cleanup", "complete", "group_chain", "policy_chain", "render",
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
    def __init__(self, view: ClusterView, node: str) -> None:
        self.view = view
        self.node = node
        self.pods = [p for p in view.pods if not p.host_network]
        self.local = [p for p in self.pods if p.node == node and _ipv4(p)]
        self.chains: dict[str, list[str]] = {TOP: []}

    def peers(self, policy: Policy, rule: Rule) -> list[str] | None:
        """The CIDRs the rule's peers allow; None when it names no peers (every address)."""
        if rule.peers is None:
            return None
        allowed = IPSet()
        for peer in rule.peers:
            if peer.broken:
                continue
            if peer.ip_block is not None:
                if peer.ip_block.cidr.version == 4:
                    allowed |= IPSet([str(peer.ip_block.cidr)]) - IPSet(str(h) for h in peer.ip_block.excepts)
                continue
            for pod in self.pods:
                for ip in pod.ips:
                    if ip.version == 4 and self.view.peer_matches(peer, policy, ip, pod):
                        allowed.add(str(ip))
        return [str(cidr) for cidr in allowed.iter_cidrs()]

    def ports(self, rule: Rule, destinations: list[Pod]) -> list[_Port] | None:
        """None when the rule names no ports (every port and protocol)."""
        if not rule.ports:
            return None
        out: list[_Port] = []
        for port in rule.ports:
            out.extend(self.resolve(port, destinations))
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

    def rule_lines(self, direction: Direction, peers: list[str] | None, ports: list[_Port] | None) -> list[str]:
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
        # Named ports resolve on the destination: the isolated pods themselves for ingress, any pod
        # the traffic may go to for egress.
        destinations = members if direction == "Ingress" else self.pods
        blocks: list[list[str]] = []
        for index, rule in enumerate(policy.rules(direction) or ()):
            peers = self.peers(policy, rule)
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
        self.chains[policy_chain(direction, policy)] = rules

    def admin_rules(self, policy: AdminPolicy, direction: Direction, members: list[Pod]) -> list[str]:
        """POLICY's DIRECTION rules in order: Allow marks DECIDED and returns, Deny drops, Pass returns
        (to the top chain, whose next rules are the NetworkPolicies'), each commented with the rule."""
        destinations = members if direction == "Ingress" else self.pods
        lines: list[str] = []
        for index, admin_rule in enumerate(policy.rules(direction)):
            peers = self.peers(_NO_POLICY, admin_rule.rule)
            ports = self.ports(admin_rule.rule, destinations)
            if peers == [] or ports == []:
                continue  # matches nothing
            why = _comment(str(RuleRef(policy.key, direction, index, admin_rule.action)))
            target = {"Allow": f"MARK --or-mark {DECIDED:#x}", "Deny": "DROP", "Pass": "RETURN"}[admin_rule.action]
            lines += [" ".join(p for p in (match, why, f"-j {target}") if p)
                      for match in self.rule_lines(direction, peers, ports)]
            if admin_rule.action == "Allow":
                lines.append(f"-m mark --mark {_DECIDED} -j RETURN")  # decided: later rules need not run
        return lines

    def admin(self, direction: Direction, isolated: set[str]) -> tuple[list[str], list[str]]:
        """Build the admin tiers' chains of one direction; return the top chain's dispatch rules that
        come before the NetworkPolicies' (ANPs) and after them (the BANP, for pods NetworkPolicies
        do not isolate: ISOLATED are those pods' keys)."""
        view = self.view
        groups: dict[tuple[str, ...], list[Pod]] = {}
        baseline: list[Pod] = []
        for pod in self.local:
            applying = view.admin_applying(pod, direction)
            keys = tuple(p.key for p in applying if p.tier == "admin")
            if keys:
                groups.setdefault(keys, []).append(pod)
            if any(p.tier == "baseline" for p in applying) and pod.key not in isolated:
                baseline.append(pod)
        members: dict[str, list[Pod]] = {}
        for keys, pods in groups.items():
            for key in keys:
                members.setdefault(key, []).extend(pods)
        rendered = {p.key: self.admin_rules(p, direction, members[p.key]) for p in view.anps if p.key in members}
        where = "-s" if direction == "Egress" else "-d"
        before: list[str] = []
        for keys, pods in sorted(groups.items()):
            chain = admin_group_chain(direction, keys)
            self.chains[chain] = [rule for key in keys for rule in rendered[key]]
            before += [f"{where} {ip}/32 {_comment(f'{pod.key} {direction.lower()} admin')} -j {chain}"
                       for pod in pods for ip in _ipv4(pod)]
        after: list[str] = []
        if baseline and view.banp is not None:
            chain = baseline_chain(direction)
            self.chains[chain] = self.admin_rules(view.banp, direction, baseline)
            after = [f"{where} {ip}/32 -m mark ! --mark {_DECIDED} "
                     f"{_comment(f'{pod.key} {direction.lower()} baseline')} -j {chain}"
                     for pod in baseline for ip in _ipv4(pod)]
        if before or after:
            # Clear what the other direction's admin tier may have decided.
            before.insert(0, f"-j MARK --set-xmark 0x0/{DECIDED:#x}")
        return before, after

    def direction(self, direction: Direction) -> list[str]:
        """Build the policy and group chains of one direction; return the top chain's dispatch rules."""
        groups: dict[tuple[str, ...], list[Pod]] = {}
        policies: dict[str, Policy] = {}
        for pod in self.local:
            isolating = self.view.isolating(pod, direction)
            if isolating:
                groups.setdefault(tuple(p.key for p in isolating), []).append(pod)
                policies.update((p.key, p) for p in isolating)
        members: dict[str, list[Pod]] = {}
        for keys, pods in groups.items():
            for key in keys:
                members.setdefault(key, []).extend(pods)
        for key in sorted(policies):
            self.policy(policies[key], direction, members[key])
        before, after = self.admin(direction, {pod.key for pods in groups.values() for pod in pods})
        # Once an ANP has allowed this direction, the NetworkPolicies do not judge it.
        guard = f" -m mark ! --mark {_DECIDED}" if len(before) > 1 else ""
        dispatch: list[str] = []
        where = "-s" if direction == "Egress" else "-d"
        for keys, pods in sorted(groups.items()):
            chain = group_chain(direction, keys)
            rules = [f"-j MARK --set-xmark 0x0/{ALLOWED:#x}"]
            for key in keys:
                rules += [f"-j {policy_chain(direction, policies[key])}", f"-m mark --mark {_MARK} -j RETURN"]
            isolated_by = f"{direction.lower()} isolated by {', '.join(keys)}"
            rules.append(f"{_comment(isolated_by)} -j DROP")
            self.chains[chain] = rules
            dispatch += [f"{where} {ip}/32{guard} {_comment(f'{pod.key} {direction.lower()}')} -j {chain}"
                         for pod in pods for ip in _ipv4(pod)]
        return [*before, *dispatch, *after]

    def render(self) -> str:
        top = [f"-m conntrack --ctstate RELATED,ESTABLISHED {comment('replies of allowed connections')} -j ACCEPT"]
        top += [f"-s {ip}/32 -d {ip}/32 {_comment(f'{pod.key} reaching itself')} -j ACCEPT"
                for pod in self.local for ip in _ipv4(pod)]
        for direction in DIRECTIONS:
            top += self.direction(direction)
        top.append(f"-m mark --mark {_MARK} -j MARK --set-xmark 0x0/{ALLOWED:#x}")
        if any(rule.endswith(f"-j MARK --set-xmark 0x0/{DECIDED:#x}") for rule in top):
            top.append(f"-m mark --mark {_DECIDED} -j MARK --set-xmark 0x0/{DECIDED:#x}")
        self.chains[TOP] = top
        lines = [f"*{FILTER}", *(f":{chain} - [0:0]" for chain in self.chains)]
        lines += [f"-A {chain} {rule}" for chain, rules in self.chains.items() for rule in rules]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def render(view: ClusterView, node: str) -> str:
    """The desired chains for `node`'s pods: iptables-restore --noflush text declaring (so flushing)
    and filling every chain of ours, not yet hooked into FORWARD (`complete()` does that)."""
    return _Builder(view, node).render()


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

    def cleanup(self) -> None:
        try:
            self.runner.restore(cleanup(self.runner.save(FILTER)))
        except IptablesError as err:
            raise NetpolError(f"iptables could not remove the agent's chains: {err}") from err
