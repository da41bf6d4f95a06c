"""Network faults on a live cluster: a node's link cut, two members partitioned, packet loss, a rate
limit, a delay. Each is a few kernel objects in the cluster's own namespaces, never in the root one:

    link-down NODE        the fabric's end of NODE's cable (p-NODE on br0) set down: eth0 loses carrier,
                          its addresses and routes stay, so link-up brings back exactly what was there
    partition A B         in the fabric namespace, `table bridge kubesim-fault` drops every frame br0
                          would forward between p-A and p-B, both ways (ARP, pods, VXLAN, everything
                          on that wire); the control plane is a node like any other
    loss PCT NODE         in NODE's namespace, `table inet kubesim-fault` drops PCT% of what NODE sends
                          out of eth0 (`numgen random mod 100 < PCT`): netem's loss on eth0, without netem
    rate RATE NODE        a tbf qdisc (handle 1f4a:, kubesim's) as the root qdisc of NODE's eth0
    delay DELAY NODE      a netem qdisc there instead, only where the kernel has sch_netem

The wanted state is a pure function of the fault list (`plan`), rendered into one `nft -f` transaction
and `tc`/`ip` commands per namespace (`render`), and applied only to the namespaces whose plan changed
(`reconcile`). Everything carries kubesim's own names (the table, the qdisc handle), so removing a fault
never touches a rule, qdisc or link that is not ours.

Errors (netsim.errors): FaultInputError for a fault asked wrongly (unknown member, PCT outside 0-100,
a malformed rate), FaultError when the kernel refuses or lacks what a fault needs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netsim import names, namespaces
from netsim.errors import FaultError, FaultInputError

if TYPE_CHECKING:
    from netsim.topology import Topology

KINDS = ("link-down", "partition", "loss", "rate", "delay")
TABLE = "kubesim-fault"
#: the root qdisc handle kubesim gives a node's eth0: a qdisc without it is never removed
QDISC_HANDLE = "1f4a:"
MIN_RATE_BPS = 8_000  # below one full frame per 1.5 s nothing useful gets through
MAX_RATE_BPS = 100_000_000_000
MAX_DELAY_US = 60_000_000
# tc's rate units (tc(8)): SI prefixes, bits or bytes per second.
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
               "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9, "tbps": 8 * 10**12}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$")
_TIME_UNITS = {"us": 1, "ms": 1_000, "s": 1_000_000}
_TIME = re.compile(r"^(\d+(?:\.\d+)?)\s*(us|ms|s)$")


# ---------------------------------------------------------------------------------------------------
# The fault model and its validation


@dataclass(frozen=True)
class Fault:
    """One fault. NODES holds one member, or two (sorted) for a partition."""

    kind: str
    nodes: tuple[str, ...]
    percent: int | None = None  # loss
    rate: str | None = None  # rate, canonical tc text such as 10mbit
    delay: str | None = None  # delay, such as 100ms
    jitter: str | None = None  # delay, optional

    @property
    def slot(self) -> tuple[str, ...]:
        """What a fault is "of": a new fault of the same slot replaces the old one (as `tc qdisc replace`
        does), so asking for loss 30 and then loss 10 on a node leaves 10."""
        return (self.kind, *self.nodes)

    def involves(self, member: str) -> bool:
        return member in self.nodes

    def to_dict(self) -> dict[str, Any]:
        """The fault in the shape of the topology file's `faults:` entries and `fault list --json`."""
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "partition":
            out["nodes"] = list(self.nodes)
        else:
            out["node"] = self.nodes[0]
        for key in ("percent", "rate", "delay", "jitter"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def describe(self) -> str:
        if self.kind == "partition":
            return f"partition {self.nodes[0]} <-> {self.nodes[1]}"
        node = self.nodes[0]
        detail = {"link-down": "link down", "loss": f"loss {self.percent}%", "rate": f"rate {self.rate}",
                  "delay": f"delay {self.delay}" + (f" jitter {self.jitter}" if self.jitter else "")}[self.kind]
        return f"{detail} on {node}"


def parse_percent(value: Any) -> int:
    """A loss percentage: a whole number 0-100, written 30 or "30%"."""
    text = str(value).strip().removesuffix("%").strip() if not isinstance(value, bool) else ""
    if not text.isdigit() or not 0 <= int(text) <= 100:
        raise FaultInputError(f"loss {value!r}: give a whole percentage from 0 to 100, e.g. 30 (or 30%)",
                              field="percent")
    return int(text)


def rate_bits(value: Any) -> int:
    """A rate in tc's units (tc(8): bit, kbit, mbit, gbit, bps, kbps, mbps, ...) in bits per second."""
    match = _RATE.fullmatch(str(value).strip().lower()) if isinstance(value, str) else None
    if match is None or match[2] not in _RATE_UNITS:
        raise FaultInputError(f"rate {value!r} is malformed: write a number and one of tc's units "
                              f"({', '.join(_RATE_UNITS)}), e.g. 10mbit or 500kbit", field="rate")
    bits = int(float(match[1]) * _RATE_UNITS[match[2]])
    if not MIN_RATE_BPS <= bits <= MAX_RATE_BPS:
        raise FaultInputError(f"rate {value!r} is outside {_rate_text(MIN_RATE_BPS)}..{_rate_text(MAX_RATE_BPS)}; "
                              "pick a rate in between, e.g. 10mbit", field="rate")
    return bits


def _rate_text(bits: int) -> str:
    """BITS per second in the largest of tc's bit units that writes it whole (10000000 -> 10mbit)."""
    for unit, factor in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits % factor == 0:
            return f"{bits // factor}{unit}"
    return f"{bits}bit"


def parse_rate(value: Any) -> str:
    """RATE checked and written canonically: 10Mbit, 10mbit and 10000kbit are all 10mbit."""
    return _rate_text(rate_bits(value))


def time_us(value: Any, what: str = "delay") -> int:
    match = _TIME.fullmatch(str(value).strip().lower()) if isinstance(value, str) else None
    if match is None:
        raise FaultInputError(f"{what} {value!r} is malformed: write a number and us, ms or s, e.g. 100ms",
                              field=what)
    micros = int(float(match[1]) * _TIME_UNITS[match[2]])
    if not 0 < micros <= MAX_DELAY_US and not (what == "jitter" and micros == 0):
        raise FaultInputError(f"{what} {value!r} must be more than 0 and at most 60s, e.g. 100ms", field=what)
    return micros


def _time_text(micros: int) -> str:
    if micros % 1_000_000 == 0:
        return f"{micros // 1_000_000}s"
    return f"{micros // 1000}ms" if micros % 1000 == 0 else f"{micros}us"


def make_fault(kind: str, nodes: Iterable[str], *, percent: Any = None, rate: Any = None, delay: Any = None,
               jitter: Any = None) -> Fault:
    """A fault of KIND on NODES with its value checked (membership is `check`'s job): FaultInputError
    naming what is wrong and how to write it."""
    targets = tuple(nodes)
    if kind not in KINDS:
        raise FaultInputError(f"fault type {kind!r} is not one of {', '.join(KINDS)}")
    wanted = 2 if kind == "partition" else 1
    if len(targets) != wanted or not all(isinstance(t, str) and t for t in targets):
        need = "two members (A B)" if wanted == 2 else "one node"
        raise FaultInputError(f"a {kind} fault takes {need}, got {list(targets)!r}")
    if kind == "partition":
        if targets[0] == targets[1]:
            raise FaultInputError(f"partition {targets[0]} {targets[1]}: a node cannot be partitioned from itself; "
                                  "name two different members, e.g. worker-1 control-plane")
        return Fault(kind, tuple(sorted(targets)))
    if kind == "loss":
        return Fault(kind, targets, percent=parse_percent(percent))
    if kind == "rate":
        return Fault(kind, targets, rate=parse_rate(rate))
    if kind == "delay":
        base = time_us(delay)
        spread = time_us(jitter, "jitter") if jitter is not None else None
        if spread is not None and spread > base:
            raise FaultInputError(f"jitter {jitter!r} is larger than delay {delay!r}; netem would go below zero",
                                  field="jitter")
        return Fault(kind, targets, delay=_time_text(base), jitter=_time_text(spread) if spread else None)
    return Fault(kind, targets)


def fault_from_dict(raw: Any) -> Fault:
    """A fault written as a mapping (a topology's `faults:` entry, the state file): FaultInputError whose
    `field` names the field that is wrong."""
    if not isinstance(raw, dict):
        raise FaultInputError(f"must be a mapping such as {{type: loss, node: worker-2, percent: 30}}, got {raw!r}")
    kind = raw.get("type")
    if kind not in KINDS:
        raise FaultInputError(f"{kind!r} is not one of {', '.join(KINDS)}", field="type")
    allowed = {"type", "nodes"} if kind == "partition" else {"type", "node"}
    values = {"loss": ("percent",), "rate": ("rate",), "delay": ("delay", "jitter")}.get(kind, ())
    allowed |= set(values)
    unknown = sorted(str(k) for k in set(raw) - allowed)
    if unknown:
        raise FaultInputError(f"unknown field for a {kind} fault (allowed: {', '.join(sorted(allowed))})",
                              field=unknown[0])
    if kind == "partition":
        nodes = raw.get("nodes")
        if not isinstance(nodes, list) or len(nodes) != 2 or not all(isinstance(n, str) for n in nodes):
            raise FaultInputError(f"a partition names two members, e.g. nodes: [worker-1, control-plane]; got "
                                  f"{nodes!r}", field="nodes")
    else:
        if not isinstance(raw.get("node"), str):
            raise FaultInputError(f"a {kind} fault names one node, e.g. node: worker-2", field="node")
        nodes = [raw["node"]]
    for key in values[:1]:
        if key not in raw:
            example = {"percent": "percent: 30", "rate": "rate: 10mbit", "delay": "delay: 100ms"}[key]
            raise FaultInputError(f"required for a {kind} fault, e.g. {example}", field=key)
    try:
        return make_fault(kind, nodes, percent=raw.get("percent"), rate=raw.get("rate"), delay=raw.get("delay"),
                          jitter=raw.get("jitter"))
    except FaultInputError as exc:
        raise FaultInputError(str(exc), field=exc.field or "nodes") from None


def check(faults: Iterable[Fault], members: Iterable[str]) -> None:
    """Faults that can be applied together to a cluster with MEMBERS (nodes and external hosts)."""
    known = list(members)
    qdisc_owner: dict[str, Fault] = {}
    for fault in faults:
        for node in fault.nodes:
            if node not in known:
                raise FaultInputError(f"{node!r} is not a node or external host of this cluster (it has: "
                                      f"{', '.join(known)})", field="nodes" if fault.kind == "partition" else "node")
        if fault.kind in ("rate", "delay"):
            other = qdisc_owner.setdefault(fault.nodes[0], fault)
            if other.kind != fault.kind:
                raise FaultInputError(f"{fault.nodes[0]} already has a {other.kind} fault: kubesim puts one qdisc on a "
                                      f"node's eth0, so clear it first (kubesim fault clear {fault.nodes[0]})",
                                      field="type")


def merge(existing: Iterable[Fault], new: Fault) -> list[Fault]:
    """EXISTING with NEW added, replacing a fault of the same slot."""
    return [f for f in existing if f.slot != new.slot] + [new]


# ---------------------------------------------------------------------------------------------------
# Plan: the wanted state of each namespace, a pure function of the faults


@dataclass(frozen=True)
class NamespacePlan:
    """What kubesim's faults want in one namespace: rules of its `kubesim-fault` table, its eth0's root
    qdisc (tc's words after `root handle 1f4a:`), and the fabric ports held down."""

    family: str = "inet"
    rules: tuple[str, ...] = ()
    qdisc: tuple[str, ...] = ()
    links_down: tuple[str, ...] = ()


def _member_ns(topology: Topology, member: str) -> str:
    if any(n.name == member for n in topology.nodes):
        return names.node_ns(topology.name, member)
    return names.external_ns(topology.name, member)


def tbf_args(rate: str) -> tuple[str, ...]:
    """tbf for RATE: a bucket of 20 ms at that rate (at least 16 KiB, a few full frames, so a slow rate still
    passes whole frames and GSO is segmented rather than starved), and 50 ms of queue before dropping."""
    bits = rate_bits(rate)
    burst = max(bits // 8 // 50, 16 * 1024)
    return ("tbf", "rate", f"{bits}bit", "burst", str(burst), "latency", "50ms")


def netem_args(delay: str, jitter: str | None) -> tuple[str, ...]:
    return ("netem", "delay", delay, *((jitter,) if jitter else ()))


def plan(topology: Topology, faults: Iterable[Fault]) -> dict[str, NamespacePlan]:
    """The namespaces FAULTS touch and what each should hold; a namespace not named holds none of ours."""
    rules: dict[str, list[str]] = {}
    qdiscs: dict[str, tuple[str, ...]] = {}
    down: list[str] = []
    partitions: list[str] = []
    for fault in faults:
        if fault.kind == "partition":
            a, b = (names.fabric_port(n) for n in fault.nodes)
            partitions += [f'iifname "{a}" oifname "{b}" drop', f'iifname "{b}" oifname "{a}" drop']
            continue
        ns = _member_ns(topology, fault.nodes[0])
        if fault.kind == "link-down":
            down.append(names.fabric_port(fault.nodes[0]))
        elif fault.kind == "loss" and fault.percent:
            rules.setdefault(ns, []).append(
                f'oifname "{names.NODE_UPLINK}" numgen random mod 100 < {fault.percent} drop')
        elif fault.kind == "rate" and fault.rate:
            qdiscs[ns] = tbf_args(fault.rate)
        elif fault.kind == "delay" and fault.delay:
            qdiscs[ns] = netem_args(fault.delay, fault.jitter)
    plans = {ns: NamespacePlan(rules=tuple(rules.get(ns, ())), qdisc=qdiscs.get(ns, ()))
             for ns in sorted(set(rules) | set(qdiscs))}
    if partitions or down:
        plans[names.fabric_ns(topology.name)] = NamespacePlan(family="bridge", rules=tuple(partitions),
                                                              links_down=tuple(sorted(set(down))))
    return plans


# ---------------------------------------------------------------------------------------------------
# Render: the commands that put a namespace in its planned state


def nft_script(family: str, rules: Iterable[str]) -> str:
    """One transaction replacing kubesim's fault table: declare it (so the delete cannot fail when it is
    absent), delete it, and, if there are rules, make it again with them. All or nothing."""
    body = list(rules)
    lines = [f"table {family} {TABLE}", f"delete table {family} {TABLE}"]
    if body:
        # inet: what the member sends out of eth0, forwarded or its own (postrouting sees both);
        # bridge: what br0 forwards from one port to another.
        chain, hook = ("forward", "forward") if family == "bridge" else ("egress", "postrouting")
        lines += [f"table {family} {TABLE} {{",
                  f"\tchain {chain} {{",
                  f"\t\ttype filter hook {hook} priority 0; policy accept;",
                  *(f"\t\t{rule}" for rule in body),
                  "\t}", "}"]
    return "\n".join(lines) + "\n"


def qdisc_replace_argv(qdisc: tuple[str, ...]) -> list[str]:
    return ["tc", "qdisc", "replace", "dev", names.NODE_UPLINK, "root", "handle", QDISC_HANDLE, *qdisc]


def qdisc_show_argv() -> list[str]:
    return ["tc", "qdisc", "show", "dev", names.NODE_UPLINK, "root"]


def qdisc_delete_argv() -> list[str]:
    return ["tc", "qdisc", "del", "dev", names.NODE_UPLINK, "root", "handle", QDISC_HANDLE]


def link_argv(port: str, up: bool) -> list[str]:
    return ["ip", "link", "set", "dev", port, "up" if up else "down"]


def is_ours(qdisc_show: str) -> bool:
    """Whether `tc qdisc show dev eth0 root` shows kubesim's qdisc (by its handle)."""
    return any(f" {QDISC_HANDLE} root" in line for line in qdisc_show.splitlines())


# ---------------------------------------------------------------------------------------------------
# Apply


Runner = Callable[[str, list[str], str | None], str]
"""run(namespace, argv, stdin) -> stdout; raises FaultError when the command fails."""


def run_in(ns: str, argv: list[str], stdin: str | None = None) -> str:
    """ARGV inside namespace NS (never the root one)."""
    if not ns.startswith(names.PREFIX):
        raise FaultError(f"refusing to run {argv[0]} outside kubesim's namespaces ({ns!r})")
    done = subprocess.run(namespaces.command_in(ns, argv), input=stdin, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise FaultError(f"{' '.join(argv[:4])} in {ns} failed: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def apply_namespace(ns: str, before: NamespacePlan, after: NamespacePlan, *, run: Runner = run_in,
                    force: bool = False) -> None:
    """Take NS from BEFORE to AFTER, touching only what differs (everything, if FORCE) and only kubesim's
    own objects: its table, the qdisc with its handle, the fabric ports it holds down."""
    if force or before.rules != after.rules:
        run(ns, ["nft", "-f", "-"], nft_script(after.family, after.rules))
    if force or before.qdisc != after.qdisc:
        if after.qdisc:
            run(ns, qdisc_replace_argv(after.qdisc), None)
        elif after.family == "inet" and is_ours(run(ns, qdisc_show_argv(), None)):  # a member: it has an eth0
            run(ns, qdisc_delete_argv(), None)
    for port in sorted(set(after.links_down) - (set() if force else set(before.links_down))):
        run(ns, link_argv(port, up=False), None)
    for port in sorted(set(before.links_down) - set(after.links_down)):
        run(ns, link_argv(port, up=True), None)


def reconcile(old: Mapping[str, NamespacePlan], new: Mapping[str, NamespacePlan], *, run: Runner = run_in,
              exists: Callable[[str], bool] | None = None) -> list[str]:
    """Apply NEW where it differs from OLD; on a failure put OLD back where it was already changed and
    re-raise, so a fault is never left half-applied. A fault for a namespace that does not exist is
    refused before anything is touched; a namespace that is gone holds nothing to undo (its rules went
    with it) and is skipped. Returns the namespaces changed."""
    exists = exists or namespaces.exists
    missing = [ns for ns in sorted(new) if new[ns] != old.get(ns) and not exists(ns)]
    if missing:
        raise FaultError(f"namespace {missing[0]} does not exist, so no fault can be put in it: the cluster is not "
                         "whole (run `kubesim down` and `kubesim up` again); nothing was changed")
    changed: list[str] = []
    try:
        for ns in sorted(set(old) | set(new)):
            before, after = _pair(old, new, ns)
            if before == after or not exists(ns):
                continue
            changed.append(ns)
            apply_namespace(ns, before, after, run=run)
    except BaseException:
        for ns in reversed(changed):
            before, after = _pair(old, new, ns)
            # The first error is the one to report; `fault clear --all` sweeps whatever is left.
            with suppress(FaultError):
                apply_namespace(ns, after, before, run=run, force=True)
        raise
    return changed


def remove_all(plans: Mapping[str, NamespacePlan], *, run: Runner = run_in,
               exists: Callable[[str], bool] | None = None) -> list[str]:
    """Take every namespace of PLANS to no faults, whatever it holds now (force), going on past a failure
    so that one refusal leaves as little as possible; never puts anything back. The first failure is
    raised at the end. Returns the namespaces cleaned."""
    exists = exists or namespaces.exists
    cleaned: list[str] = []
    first: FaultError | None = None
    for ns in sorted(plans):
        if not exists(ns):
            continue
        before, after = _pair(plans, {}, ns)
        try:
            apply_namespace(ns, before, after, run=run, force=True)
            cleaned.append(ns)
        except FaultError as exc:
            first = first or exc
    if first is not None:
        raise first
    return cleaned


def _pair(old: Mapping[str, NamespacePlan], new: Mapping[str, NamespacePlan],
          ns: str) -> tuple[NamespacePlan, NamespacePlan]:
    """OLD's and NEW's plan of NS; a side that has none is empty, in the other side's table family (a
    namespace's family never changes: inet in members, bridge in the fabric)."""
    before, after = old.get(ns), new.get(ns)
    family = (before or after or NamespacePlan()).family
    return before or NamespacePlan(family=family), after or NamespacePlan(family=family)


def sweep_plan(topology: Topology) -> dict[str, NamespacePlan]:
    """Every fault object kubesim could have made in the cluster, whatever the record says: given to
    remove_all, it removes every member's table and qdisc and the fabric's table, and sets every fabric
    port up again."""
    members = [n.name for n in topology.nodes] + [h.name for h in topology.external_hosts]
    plans = {_member_ns(topology, m): NamespacePlan() for m in members}
    plans[names.fabric_ns(topology.name)] = NamespacePlan(
        family="bridge", links_down=tuple(sorted(names.fabric_port(m) for m in members)))
    return plans


def netem_available() -> tuple[bool, str]:
    """Whether this kernel can make a netem qdisc, tried for real in a throwaway namespace (unshare
    makes one that vanishes with the command); (False, tc's answer) when it cannot."""
    done = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0, done.stderr.strip()
