"""kubesim's scheduler: filter -> score -> bind, as plugins, for pods that name it.

    async with Scheduler(client, scheduler_name="default-scheduler", profile="default"):
        ...                                   # pods with spec.schedulerName == that name get nodes

    python -m control.scheduler --kubeconfig KUBECONFIG [--scheduler-name NAME] [--profile default|most-allocated]

The pieces, each after upstream's pkg/scheduler:
- `_types`: PodInfo / NodeInfo (requests summed once, running totals per node), taints, selectors.
- `_plugins`: filters NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
  NodeResourcesFit, PodTopologySpread; scores TaintToleration, NodeAffinity, NodeResourcesFit
  (LeastAllocated / MostAllocated), NodeResourcesBalancedAllocation, PodTopologySpread.
- `_framework`: profiles and the algorithm (filter a share of nodes, score, pick; FitError messages).
- `_queue`: activeQ / backoffQ / unschedulable pods; `_cache`: nodes, bound and assumed pods.
- `_scheduler`: informers, the scheduling loop, binding, status conditions and events.

Preemption is not implemented: the failure message carries upstream's preemption diagnosis, but no pod
is evicted. Inter-pod affinity, volumes, image locality, extenders and leader election are out of scope.

Exceptions (the algorithm's outcomes, not crashes; apiserver errors are control.client's
`KubeClientError`s, which the scheduler logs and answers with a retry after backoff):

    QuantityError (ValueError)   a string that is not a Kubernetes quantity
    SchedulingFailure            the pod fits no node now; .message goes into its condition and event
    └── FitError                 with each node's Status and the preemption diagnosis
"""

from __future__ import annotations

from control.api.quantity import QuantityError, milli_value, value
from control.scheduler._cache import Cache
from control.scheduler._framework import (
    PROFILES,
    Algorithm,
    FitError,
    Profile,
    ScheduleResult,
    SchedulingFailure,
    fit_error_message,
    make_profile,
    num_feasible_nodes_to_find,
)
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
    default_normalize_score,
)
from control.scheduler._queue import QueuedPodInfo, SchedulingQueue
from control.scheduler._scheduler import Scheduler, Stats
from control.scheduler._types import (
    DEFAULT_SCHEDULER_NAME,
    Code,
    NodeInfo,
    PodInfo,
    Resource,
    Status,
    pod_requests,
)

__all__ = [
    "DEFAULT_SCHEDULER_NAME",
    "PROFILES",
    "SKIP",
    "Algorithm",
    "Cache",
    "Code",
    "FilterPlugin",
    "FitError",
    "NodeAffinity",
    "NodeInfo",
    "NodeName",
    "NodePorts",
    "NodeResourcesBalancedAllocation",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "PodInfo",
    "PodTopologySpread",
    "Profile",
    "QuantityError",
    "QueuedPodInfo",
    "Resource",
    "ScheduleResult",
    "Scheduler",
    "SchedulingFailure",
    "SchedulingQueue",
    "ScorePlugin",
    "Stats",
    "Status",
    "TaintToleration",
    "default_normalize_score",
    "fit_error_message",
    "make_profile",
    "milli_value",
    "num_feasible_nodes_to_find",
    "pod_requests",
    "value",
]
