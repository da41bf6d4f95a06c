"""Filter and score plugins: pure functions of (pod, node, the node's pods), as upstream's framework.

Each mirrors one plugin of pkg/scheduler/framework/plugins (its name is upstream's, so profiles and
logs read the same). Extension points, as upstream's framework/interface.go:

    FilterPlugin.pre_filter(pod, nodes) -> state | SKIP   once per cycle (e.g. spread counts);
                                                          SKIP: this plugin's filter has nothing to check
    FilterPlugin.filter(pod, node, state) -> Status | None   None = the node fits
    ScorePlugin.pre_score(pod, feasible, nodes) -> state | SKIP
    ScorePlugin.score(pod, node, state) -> int        0..100 after normalize_score
                                                      (score_nodes: the same for a list of nodes)
    ScorePlugin.normalize_score(pod, feasible, scores, state)   in place

Reasons are upstream's exact strings, since users grep FailedScheduling events for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from control.api import NOTHING, Selector
from control.scheduler._types import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    TAINT_UNSCHEDULABLE,
    Code,
    NodeInfo,
    PodInfo,
    SpreadConstraint,
    Status,
    Taint,
    Toleration,
    tolerated,
)

MAX_NODE_SCORE: Final = 100


class _Skip:
    def __repr__(self) -> str:
        return "SKIP"


#: Returned by pre_score when the plugin has nothing to say about this pod (framework.Skip): it then
#: adds nothing to any node's score.
SKIP: Final = _Skip()


class FilterPlugin:
    name = ""

    def pre_filter(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        return None

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        raise NotImplementedError


class ScorePlugin:
    name = ""

    def pre_score(self, pod: PodInfo, feasible: Sequence[NodeInfo], nodes: Sequence[NodeInfo]) -> Any:
        return None

    def score(self, pod: PodInfo, node: NodeInfo, state: Any) -> int:
        raise NotImplementedError

    def score_nodes(self, pod: PodInfo, nodes: Sequence[NodeInfo], state: Any) -> list[int]:
        """Score on every feasible node. Upstream runs Score per node in parallel goroutines; in Python
        the per-call overhead dominates, so hot plugins override this with one loop."""
        return [self.score(pod, node, state) for node in nodes]

    def normalize_score(self, pod: PodInfo, nodes: Sequence[NodeInfo], scores: list[int], state: Any) -> None:
        return None


def default_normalize_score(scores: list[int], reverse: bool, max_priority: int = MAX_NODE_SCORE) -> None:
    """helper.DefaultNormalizeScore: scale to [0, max_priority] by the highest score, optionally reversed."""
    highest = max(scores, default=0)
    if highest == 0:
        if reverse:
            scores[:] = [max_priority] * len(scores)
        return
    for i, s in enumerate(scores):
        s = max_priority * s // highest
        scores[i] = max_priority - s if reverse else s


# --- filters ---------------------------------------------------------------------------------------

_UNSCHEDULABLE_TAINT = Taint(TAINT_UNSCHEDULABLE, "", "NoSchedule")


class NodeUnschedulable(FilterPlugin):
    """Rejects cordoned nodes (spec.unschedulable) unless the pod tolerates the unschedulable taint."""

    name = "NodeUnschedulable"
    REASON = "node(s) were unschedulable"

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        if node.unschedulable and not tolerated(_UNSCHEDULABLE_TAINT, pod.tolerations):
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (self.REASON,), self.name)
        return None


class NodeName(FilterPlugin):
    name = "NodeName"
    REASON = "node(s) didn't match the requested node name"

    def pre_filter(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        return None if pod.node_name else SKIP

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        if pod.node_name and pod.node_name != node.name:
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (self.REASON,), self.name)
        return None


class TaintToleration(FilterPlugin, ScorePlugin):
    """Filter: the first NoSchedule / NoExecute taint the pod does not tolerate (so also the node
    lifecycle controller's not-ready and unreachable taints). Score: fewer untolerated
    PreferNoSchedule taints is better (normalized reversed)."""

    name = "TaintToleration"
    _FILTER_EFFECTS = ("NoSchedule", "NoExecute")

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        if not node.taints:
            return None
        for taint in node.taints:
            if taint.effect in self._FILTER_EFFECTS and not tolerated(taint, pod.tolerations):
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                              (f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}",), self.name)
        return None

    def pre_score(self, pod: PodInfo, feasible: Sequence[NodeInfo], nodes: Sequence[NodeInfo]) -> Any:
        return tuple(t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule"))

    def score(self, pod: PodInfo, node: NodeInfo, state: Any) -> int:
        if not node.taints:
            return 0
        tolerations: tuple[Toleration, ...] = state
        return sum(1 for t in node.taints if t.effect == "PreferNoSchedule" and not tolerated(t, tolerations))

    def score_nodes(self, pod: PodInfo, nodes: Sequence[NodeInfo], state: Any) -> list[int]:
        return [self.score(pod, n, state) if n.taints else 0 for n in nodes]

    def normalize_score(self, pod: PodInfo, nodes: Sequence[NodeInfo], scores: list[int], state: Any) -> None:
        default_normalize_score(scores, reverse=True)


def matches_required_affinity(pod: PodInfo, node: NodeInfo) -> bool:
    """spec.nodeSelector (every label) and requiredDuringScheduling nodeSelectorTerms (any term)."""
    labels = node.labels
    for key, want in pod.node_selector.items():
        if labels.get(key) != want:
            return False
    if pod.required_terms is None:
        return True
    fields = {"metadata.name": node.name}
    return any(term.matches(labels, fields) for term in pod.required_terms)


class NodeAffinity(FilterPlugin, ScorePlugin):
    name = "NodeAffinity"
    REASON = "node(s) didn't match Pod's node affinity/selector"

    def pre_filter(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        return None if pod.node_selector or pod.required_terms is not None else SKIP

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        if not matches_required_affinity(pod, node):
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (self.REASON,), self.name)
        return None

    def pre_score(self, pod: PodInfo, feasible: Sequence[NodeInfo], nodes: Sequence[NodeInfo]) -> Any:
        return pod.preferred_terms or SKIP

    def score(self, pod: PodInfo, node: NodeInfo, state: Any) -> int:
        fields = {"metadata.name": node.name}
        return sum(weight for weight, term in pod.preferred_terms if weight and term.matches(node.labels, fields))

    def normalize_score(self, pod: PodInfo, nodes: Sequence[NodeInfo], scores: list[int], state: Any) -> None:
        default_normalize_score(scores, reverse=False)


class NodePorts(FilterPlugin):
    name = "NodePorts"
    REASON = "node(s) didn't have free ports for the requested pod ports"

    def pre_filter(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        return None if pod.host_ports else SKIP

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        if not node.used_ports:
            return None
        for ip, proto, port in pod.host_ports:
            for used_ip, used_proto, used_port in node.used_ports:
                # HostPortInfo.CheckConflict: 0.0.0.0 conflicts with every address on the same port.
                if used_port == port and used_proto == proto and (
                        ip == used_ip or "0.0.0.0" in (ip, used_ip)):
                    return Status(Code.UNSCHEDULABLE, (self.REASON,), self.name)
        return None


class NodeResourcesFit(FilterPlugin, ScorePlugin):
    """Filter: pod count, cpu, memory, ephemeral storage and extended resources against allocatable
    minus what the node's pods (assumed ones included) request. Score: the LeastAllocated or
    MostAllocated strategy over cpu and memory (weight 1 each), on the non-zero requests."""

    name = "NodeResourcesFit"

    def __init__(self, strategy: str = "LeastAllocated") -> None:
        if strategy not in ("LeastAllocated", "MostAllocated"):
            raise ValueError(f"scoring strategy {strategy!r}: use LeastAllocated or MostAllocated")
        self.strategy = strategy

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        alloc, used, req = node.allocatable, node.requested, pod.request
        # The common case first: room for one more pod and for its cpu and memory, nothing else asked.
        if (len(node.pods) < alloc.allowed_pods and req.milli_cpu <= alloc.milli_cpu - used.milli_cpu
                and req.memory <= alloc.memory - used.memory and not req.ephemeral_storage and not req.scalars):
            return None
        reasons: list[str] = []
        if len(node.pods) + 1 > alloc.allowed_pods:
            reasons.append("Too many pods")
        if req.milli_cpu > 0 and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
            reasons.append("Insufficient cpu")
        if req.memory > 0 and req.memory > alloc.memory - used.memory:
            reasons.append("Insufficient memory")
        if req.ephemeral_storage > 0 and req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage:
            reasons.append("Insufficient ephemeral-storage")
        for name, amount in req.scalars.items():
            if amount > 0 and amount > alloc.scalars.get(name, 0) - used.scalars.get(name, 0):
                reasons.append(f"Insufficient {name}")
        if reasons:
            return Status(Code.UNSCHEDULABLE, tuple(reasons), self.name)
        return None

    def score(self, pod: PodInfo, node: NodeInfo, state: Any) -> int:
        alloc = node.allocatable
        least = self.strategy == "LeastAllocated"
        total = weights = 0
        for requested, capacity in ((node.non_zero_cpu + pod.non_zero_cpu, alloc.milli_cpu),
                                    (node.non_zero_mem + pod.non_zero_mem, alloc.memory)):
            if capacity == 0:
                continue
            if least:
                # leastRequestedScore: the free fraction; an over-committed node scores 0.
                total += 0 if requested > capacity else (capacity - requested) * MAX_NODE_SCORE // capacity
            else:
                # mostRequestedScore: the used fraction, capped at the capacity.
                total += min(requested, capacity) * MAX_NODE_SCORE // capacity
            weights += 1
        return total // weights if weights else 0

    def score_nodes(self, pod: PodInfo, nodes: Sequence[NodeInfo], state: Any) -> list[int]:
        if self.strategy != "LeastAllocated":
            return [self.score(pod, n, state) for n in nodes]
        # The common case inlined: both capacities set and nothing over-committed.
        cpu, mem, top = pod.non_zero_cpu, pod.non_zero_mem, MAX_NODE_SCORE
        out = []
        for n in nodes:
            cap_cpu, cap_mem = n.allocatable.milli_cpu, n.allocatable.memory
            req_cpu, req_mem = n.non_zero_cpu + cpu, n.non_zero_mem + mem
            if cap_cpu and cap_mem and req_cpu <= cap_cpu and req_mem <= cap_mem:
                out.append(((cap_cpu - req_cpu) * top // cap_cpu + (cap_mem - req_mem) * top // cap_mem) // 2)
            else:
                out.append(self.score(pod, n, state))
        return out


class NodeResourcesBalancedAllocation(ScorePlugin):
    """Prefers nodes whose cpu and memory would be used in equal fractions: 100 * (1 - std deviation)."""

    name = "NodeResourcesBalancedAllocation"

    def pre_score(self, pod: PodInfo, feasible: Sequence[NodeInfo], nodes: Sequence[NodeInfo]) -> Any:
        # Upstream skips best-effort pods (kubernetes/kubernetes#129138): otherwise they pile onto the
        # one node whose fractions are already balanced.
        if pod.request.milli_cpu == 0 and pod.request.memory == 0:
            return SKIP
        return None

    def score(self, pod: PodInfo, node: NodeInfo, state: Any) -> int:
        alloc = node.allocatable
        fractions = []
        for requested, capacity in ((node.requested.milli_cpu + pod.request.milli_cpu, alloc.milli_cpu),
                                    (node.requested.memory + pod.request.memory, alloc.memory)):
            if capacity:
                fractions.append(min(requested / capacity, 1.0))
        std = abs(fractions[0] - fractions[1]) / 2 if len(fractions) == 2 else 0.0
        return int((1 - std) * MAX_NODE_SCORE)

    def score_nodes(self, pod: PodInfo, nodes: Sequence[NodeInfo], state: Any) -> list[int]:
        cpu, mem = pod.request.milli_cpu, pod.request.memory
        out = []
        for n in nodes:
            cap_cpu, cap_mem = n.allocatable.milli_cpu, n.allocatable.memory
            if cap_cpu and cap_mem:
                f_cpu = min((n.requested.milli_cpu + cpu) / cap_cpu, 1.0)
                f_mem = min((n.requested.memory + mem) / cap_mem, 1.0)
                out.append(int((1 - abs(f_cpu - f_mem) / 2) * MAX_NODE_SCORE))
            else:
                out.append(self.score(pod, n, state))
        return out


# --- topology spread -------------------------------------------------------------------------------

DefaultSelector = Callable[[PodInfo], Selector]

# The system default constraints (podtopologyspread/plugin.go systemDefaultConstraints), which replaced
# the SelectorSpread plugin: spread a Service's / ReplicaSet's pods over hosts and zones, softly.
SYSTEM_DEFAULT_CONSTRAINTS: Final = ((LABEL_HOSTNAME, 3), (LABEL_ZONE, 5))


def count_matching(node: NodeInfo, selector: Selector, namespace: str) -> int:
    """countPodsMatchSelector: live pods of that namespace on the node whose labels the selector matches."""
    return sum(1 for p in node.pods.values()
               if not p.terminating and p.namespace == namespace and selector.matches(p.labels))


def _self_match(pod: PodInfo, selector: Selector) -> int:
    return 1 if selector.matches(pod.labels) else 0


class PodTopologySpread(FilterPlugin, ScorePlugin):
    """Filter: the pod's DoNotSchedule topologySpreadConstraints. Score: its ScheduleAnyway ones or,
    when it has none, the system defaults over the selector of its Services and controlling
    ReplicaSet / ReplicationController (`default_selector`, given by the scheduler's listers)."""

    name = "PodTopologySpread"
    REASON_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
    REASON_NOT_MATCH = "node(s) didn't match pod topology spread constraints"

    def __init__(self, default_selector: DefaultSelector | None = None) -> None:
        self.default_selector = default_selector

    # filter

    def pre_filter(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        constraints = [c for c in pod.spread_constraints if c.when_unsatisfiable == "DoNotSchedule"]
        if not constraints:
            return SKIP
        keys = [c.topology_key for c in constraints]
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in nodes:
            # nodeInclusionPolicy defaults: honour node affinity, ignore taints.
            if not matches_required_affinity(pod, node) or any(k not in node.labels for k in keys):
                continue
            for i, c in enumerate(constraints):
                value = node.labels[c.topology_key]
                counts[i][value] = counts[i].get(value, 0) + count_matching(node, c.selector, pod.namespace)
        minima = []
        for i, c in enumerate(constraints):
            # With fewer domains than minDomains the global minimum is taken as 0.
            minima.append(0 if len(counts[i]) < c.min_domains else min(counts[i].values(), default=0))
        return constraints, counts, minima

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        if state is None or state is SKIP:
            return None
        constraints, counts, minima = state
        for i, c in enumerate(constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (self.REASON_MISSING_LABEL,), self.name)
            skew = counts[i].get(value, 0) + _self_match(pod, c.selector) - minima[i]
            if skew > c.max_skew:
                return Status(Code.UNSCHEDULABLE, (self.REASON_NOT_MATCH,), self.name)
        return None

    # score

    def pre_score(self, pod: PodInfo, feasible: Sequence[NodeInfo], nodes: Sequence[NodeInfo]) -> Any:
        if pod.spread_constraints:
            constraints = [c for c in pod.spread_constraints if c.when_unsatisfiable == "ScheduleAnyway"]
            require_all = True
        else:
            selector = self.default_selector(pod) if self.default_selector is not None else None
            if selector is None or selector.empty() or selector == NOTHING:
                return SKIP
            constraints = [SpreadConstraint(skew, key, "ScheduleAnyway", selector)
                           for key, skew in SYSTEM_DEFAULT_CONSTRAINTS]
            # Only user constraints require every topology label, so nodes without a zone label
            # still get hostname spreading (scoring.go, requireAllTopologies).
            require_all = False
        if not constraints:
            return SKIP
        keys = [c.topology_key for c in constraints]
        ignored: set[str] = set()
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in feasible:
            if require_all and any(k not in node.labels for k in keys):
                ignored.add(node.name)
                continue
            for i, c in enumerate(constraints):
                if c.topology_key != LABEL_HOSTNAME:
                    counts[i].setdefault(node.labels.get(c.topology_key, ""), 0)
        weights = []
        for i, c in enumerate(constraints):
            size = len(feasible) - len(ignored) if c.topology_key == LABEL_HOSTNAME else len(counts[i])
            weights.append(math.log(size + 2))
        if any(counts):
            for node in nodes:
                if not matches_required_affinity(pod, node):
                    continue
                if require_all and any(k not in node.labels for k in keys):
                    continue
                for i, c in enumerate(constraints):
                    value = node.labels.get(c.topology_key, "")
                    if value not in counts[i]:
                        continue
                    counts[i][value] += self._count(pod, node, c)
        return constraints, ignored, counts, weights

    @staticmethod
    def _count(pod: PodInfo, node: NodeInfo, c: SpreadConstraint) -> int:
        # Upstream counts a controlled pod's siblings by owner uid (NodeInfo.PodsWithOwnerRef), which
        # is what the default selector would select and far cheaper than matching labels.
        if pod.owner_uid:
            return node.owner_counts.get(pod.owner_uid, 0)
        return count_matching(node, c.selector, pod.namespace)

    def score(self, pod: PodInfo, node: NodeInfo, state: Any) -> int:
        constraints, ignored, counts, weights = state
        if node.name in ignored:
            return 0
        total = 0.0
        for i, c in enumerate(constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                continue
            count = self._count(pod, node, c) if c.topology_key == LABEL_HOSTNAME else counts[i].get(value, 0)
            total += count * weights[i] + (c.max_skew - 1)
        return math.floor(total + 0.5)  # Go's math.Round: half away from zero (total is never negative)

    def normalize_score(self, pod: PodInfo, nodes: Sequence[NodeInfo], scores: list[int], state: Any) -> None:
        _, ignored, _, _ = state
        valid = [s for s, n in zip(scores, nodes, strict=True) if n.name not in ignored]
        low, high = (min(valid), max(valid)) if valid else (0, 0)
        for i, node in enumerate(nodes):
            if node.name in ignored:
                scores[i] = 0
            elif high == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (high + low - scores[i]) // high
