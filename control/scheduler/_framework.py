"""Profiles and the scheduling algorithm: filter every node, score the feasible ones, pick the best.

The shape of upstream's pkg/scheduler/schedule_one.go (schedulePod, findNodesThatFitPod,
prioritizeNodes, selectHost) and framework/types.go (FitError), without goroutines: a scheduling
cycle runs synchronously on the event loop, so the cache it reads cannot change under it and serves as
its own snapshot (upstream has to copy NodeInfos into a Snapshot because its informers run in parallel).

Preemption is not implemented (no pod is ever evicted). The PostFilter step still runs upstream's dry
run as a diagnosis, so the message says, as kube-scheduler's does, whether evicting lower-priority pods
could have helped.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from control.scheduler._plugins import (
    SKIP,
    FilterPlugin,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesBalancedAllocation,
    NodeResourcesFit,
    NodeUnschedulable,
    PodTopologySpread,
    ScorePlugin,
    TaintToleration,
)
from control.scheduler._plugins import DefaultSelector as DefaultSelector
from control.scheduler._types import Code, NodeInfo, PodInfo, Status
from control.scheduler._volumebinding import VolumeBinding, VolumeLister

#: The profiles `--profile` accepts.
PROFILES: Final = ("default", "most-allocated")

# schedule_one.go: below 100 nodes every node is filtered; above, an adaptive share of them
# (50% - nodes/125, at least 5%, at least 100 nodes) is enough to pick from.
MIN_FEASIBLE_NODES_TO_FIND: Final = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: Final = 5

NO_NODES_AVAILABLE: Final = "no nodes available to schedule pods"
PREEMPTION_NOT_HELPFUL: Final = "Preemption is not helpful for scheduling"
NO_VICTIMS: Final = "No preemption victims found for incoming pod"
# Our own words for the one case upstream would act on: it would evict the lower-priority pods.
PREEMPTION_NOT_IMPLEMENTED: Final = "Preemption would help, but this scheduler does not preempt"


@dataclass(frozen=True)
class Profile:
    """A scheduler name with its plugins (KubeSchedulerProfile): filters in order, scores with weights."""

    scheduler_name: str
    kind: str
    filters: tuple[FilterPlugin, ...]
    scorers: tuple[tuple[ScorePlugin, int], ...]
    #: percentageOfNodesToScore; 0 = upstream's adaptive default.
    percentage_of_nodes_to_score: int = 0


def make_profile(kind: str = "default", scheduler_name: str = "default-scheduler", *,
                 default_selector: DefaultSelector | None = None, volumes: VolumeLister | None = None) -> Profile:
    """`default`: upstream's default plugins and weights (apis/config/v1/default_plugins.go) minus the
    ones kubesim has no objects for (images, inter-pod affinity): TaintToleration 3,
    NodeAffinity 2, PodTopologySpread 2, NodeResourcesFit (LeastAllocated) 1,
    NodeResourcesBalancedAllocation 1. VolumeBinding filters when the scheduler gives its VOLUMES views.

    `most-allocated`: bin packing, as the "Resource Bin Packing" configuration in the upstream docs:
    NodeResourcesFit with the MostAllocated strategy, weighted 5 so that it outweighs the rest;
    no spreading and no balancing, which would work against packing.
    """
    spread = PodTopologySpread(default_selector)
    taints, affinity = TaintToleration(), NodeAffinity()
    if kind == "default":
        fit = NodeResourcesFit("LeastAllocated")
        scorers: tuple[tuple[ScorePlugin, int], ...] = (
            (taints, 3), (affinity, 2), (spread, 2), (fit, 1), (NodeResourcesBalancedAllocation(), 1))
    elif kind == "most-allocated":
        fit = NodeResourcesFit("MostAllocated")
        scorers = ((taints, 3), (affinity, 2), (fit, 5))
    else:
        raise ValueError(f"unknown profile {kind!r}: use one of {', '.join(PROFILES)}")
    filters: tuple[FilterPlugin, ...] = (NodeUnschedulable(), NodeName(), taints, affinity, NodePorts(), fit)
    if volumes is not None:
        # Where upstream's default profile has it: after the resource fit, before spreading.
        filters += (VolumeBinding(volumes),)
    filters += (spread,)
    return Profile(scheduler_name, kind, filters, scorers)


@dataclass(frozen=True)
class ScheduleResult:
    node: str
    evaluated_nodes: int
    feasible_nodes: int
    score: int = 0


class SchedulingFailure(Exception):
    """The pod fits no node now; `message` is what goes into its condition and FailedScheduling event."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FitError(SchedulingFailure):
    """framework.FitError: how many nodes said what, plus what preemption's dry run found."""

    def __init__(self, num_all_nodes: int, statuses: dict[str, Status], *, pre_filter_msg: str = "",
                 post_filter_msg: str = "") -> None:
        self.num_all_nodes = num_all_nodes
        self.statuses = statuses
        self.pre_filter_msg = pre_filter_msg
        self.post_filter_msg = post_filter_msg
        super().__init__(fit_error_message(num_all_nodes, statuses, pre_filter_msg, post_filter_msg))


def fit_error_message(num_all_nodes: int, statuses: dict[str, Status], pre_filter_msg: str = "",
                      post_filter_msg: str = "") -> str:
    """FitError.Error(): "0/N nodes are available: <histogram of reasons, sorted>." and the PostFilter's
    message. Before 1.30 the preemption part ended in ".." (a period appended to a message that had
    one, kubernetes/kubernetes#123301); we mirror 1.30 and later: one period."""
    message = f"0/{num_all_nodes} nodes are available:"
    if pre_filter_msg:
        message += f" {pre_filter_msg}."
    else:
        histogram = Counter(reason for status in statuses.values() for reason in status.reasons)
        parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
        if parts:
            message += " " + ", ".join(parts) + "."
    if post_filter_msg:
        message += f" {post_filter_msg.rstrip('.')}."
    return message


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage == 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Algorithm:
    """One profile's scheduling algorithm. Keeps upstream's nextStartNodeIndex so that, when only a
    share of the nodes is filtered, successive pods start where the last one stopped."""

    def __init__(self, profile: Profile, *, rng: random.Random | None = None) -> None:
        self.profile = profile
        self.rng = rng or random.Random()
        self.next_start_node_index = 0

    def schedule(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> ScheduleResult:
        """Picks a node for POD among NODES, or raises SchedulingFailure / FitError."""
        if not nodes:
            raise SchedulingFailure(NO_NODES_AVAILABLE)
        states: list[Any] = []
        for plugin in self.profile.filters:
            state = plugin.pre_filter(pod, nodes)
            if isinstance(state, Status):
                statuses = {n.name: state for n in nodes}
                raise FitError(len(nodes), statuses, pre_filter_msg=state.message,
                               post_filter_msg=self._diagnose_preemption(pod, nodes, statuses, states))
            states.append(state)
        feasible, statuses = self._find_nodes_that_fit(pod, nodes, states)
        if not feasible:
            raise FitError(len(nodes), statuses,
                           post_filter_msg=self._diagnose_preemption(pod, nodes, statuses, states))
        evaluated = len(feasible) + len(statuses)
        if len(feasible) == 1:
            # Upstream skips scoring when there is nothing to choose between.
            return ScheduleResult(feasible[0].name, evaluated, 1)
        totals = self._prioritize(pod, feasible, nodes)
        best = self._select_host(totals)
        return ScheduleResult(feasible[best].name, evaluated, len(feasible), totals[best])

    def _find_nodes_that_fit(self, pod: PodInfo, nodes: Sequence[NodeInfo],
                             states: list[Any]) -> tuple[list[NodeInfo], dict[str, Status]]:
        count = len(nodes)
        wanted = num_feasible_nodes_to_find(count, self.profile.percentage_of_nodes_to_score)
        start = self.next_start_node_index % count
        # PreFilter's Skip: a plugin with nothing to check for this pod is left out of the node loop.
        filters = [(plugin, state) for plugin, state in zip(self.profile.filters, states, strict=True)
                   if state is not SKIP]
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        processed = 0
        checks = [(plugin.filter, state) for plugin, state in filters]
        for i in range(count):
            node = nodes[(start + i) % count]
            processed += 1
            for check, state in checks:
                status = check(pod, node, state)
                if status is not None:
                    # Like upstream's RunFilterPlugins: the first plugin to reject a node has the say.
                    statuses[node.name] = status
                    break
            else:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
        self.next_start_node_index = (start + processed) % count
        return feasible, statuses

    def _prioritize(self, pod: PodInfo, feasible: list[NodeInfo], nodes: Sequence[NodeInfo]) -> list[int]:
        totals = [0] * len(feasible)
        for plugin, weight in self.profile.scorers:
            state = plugin.pre_score(pod, feasible, nodes)
            if state is SKIP:
                continue
            scores = plugin.score_nodes(pod, feasible, state)
            plugin.normalize_score(pod, feasible, scores, state)
            for i, s in enumerate(scores):
                totals[i] += s * weight
        return totals

    def _select_host(self, totals: list[int]) -> int:
        # selectHost: the highest total, ties broken uniformly at random (upstream samples a reservoir;
        # one choice among the tied indices is the same distribution for one random draw).
        best = max(totals)
        tied = [i for i, total in enumerate(totals) if total == best]
        return tied[0] if len(tied) == 1 else self.rng.choice(tied)

    def _diagnose_preemption(self, pod: PodInfo, nodes: Sequence[NodeInfo], statuses: dict[str, Status],
                             states: list[Any]) -> str:
        """DefaultPreemption's PostFilter message, from its dry run (preemption.Evaluator.Preempt,
        SelectVictimsOnNode) but without evicting anyone."""
        if pod.preemption_policy == "Never":
            return "preemption: not eligible due to preemptionPolicy=Never."
        diagnosis: dict[str, Status] = {}
        for node in nodes:
            status = statuses.get(node.name)
            if status is None or status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                diagnosis[node.name] = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (PREEMPTION_NOT_HELPFUL,))
                continue
            victims = [key for key, p in node.pods.items() if p.priority < pod.priority]
            if not victims:
                diagnosis[node.name] = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NO_VICTIMS,))
                continue
            without = _without_pods(node, victims)
            failed = None
            for plugin, state in zip(self.profile.filters, states, strict=True):
                if state is SKIP:
                    continue
                failed = plugin.filter(pod, without, state)
                if failed is not None:
                    break
            diagnosis[node.name] = failed or Status(Code.UNSCHEDULABLE, (PREEMPTION_NOT_IMPLEMENTED,))
        return "preemption: " + fit_error_message(len(diagnosis), diagnosis)


def _without_pods(node: NodeInfo, keys: list[str]) -> NodeInfo:
    copy = NodeInfo(node.obj, name=node.name)
    drop = set(keys)
    for key, pod in node.pods.items():
        if key not in drop:
            copy.add_pod(pod)
    return copy
