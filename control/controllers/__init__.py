"""The controller-manager: control loops that move the cluster's state toward what its objects ask for.

    async with ControllerManager(client, Options(cluster_cidr="10.244.0.0/16"), controllers=["*"]) as cm:
        ...                                   # every controller runs until the block ends

Each controller is a loop over shared informers with a rate-limited work queue of keys (client-go's
workqueue); handlers only enqueue. Controllers (names as kube-controller-manager's --controllers):
replicaset, replicationcontroller, deployment, job, daemonset, statefulset, cronjob, endpointslice, endpoint,
namespace, serviceaccount, nodelifecycle, service-lb, garbagecollector, nodeipam.

As a process (what `kubesim up` starts), until SIGTERM:

    python -m control.controllers --kubeconfig PATH --cluster-cidr 10.244.0.0/16 [--node-cidr-mask-size 24]
        [--lb-pool 172.18.255.200-172.18.255.250] [--node-monitor-grace-period 40s]
        [--pod-eviction-timeout 5m] [--controllers '*']

Errors: a sync that raises any exception is logged and retried with per-key exponential backoff; the
manager itself raises `ValueError` for unknown controller names and `TimeoutError` when the informers
cannot sync.
"""

from __future__ import annotations

from control.api.duration import parse_duration
from control.controllers._base import Context, Controller, Expectations, Options, SharedInformers
from control.controllers._cronjob import CronJobController
from control.controllers._daemonset import DaemonSetController
from control.controllers._deployment import (
    DeploymentController,
    compute_hash,
    equal_ignore_hash,
    fenceposts,
    new_rs_new_replicas,
)
from control.controllers._endpoints import EndpointsController
from control.controllers._endpointslice import EndpointSliceController, TriggerTimeTracker, find_port
from control.controllers._garbagecollector import GarbageCollector
from control.controllers._job import JobController, format_indexes
from control.controllers._loadbalancer import LoadBalancerController, Pool, parse_pool
from control.controllers._manager import ControllerManager, registry, select_controllers
from control.controllers._namespace import NamespaceController, ServiceAccountController
from control.controllers._nodeipam import NodeIPAMController
from control.controllers._nodelifecycle import NodeLifecycleController, eviction_delay, tolerates
from control.controllers._replicaset import (
    ReplicaSetController,
    ReplicationControllerController,
    pod_deletion_order,
)
from control.controllers._statefulset import StatefulSetController
from control.controllers._workqueue import ShutDown, WorkQueue

__all__ = [
    "Context",
    "Controller",
    "ControllerManager",
    "CronJobController",
    "DaemonSetController",
    "DeploymentController",
    "EndpointSliceController",
    "EndpointsController",
    "Expectations",
    "GarbageCollector",
    "JobController",
    "LoadBalancerController",
    "NamespaceController",
    "NodeIPAMController",
    "NodeLifecycleController",
    "Options",
    "Pool",
    "ReplicaSetController",
    "ReplicationControllerController",
    "ServiceAccountController",
    "SharedInformers",
    "ShutDown",
    "StatefulSetController",
    "TriggerTimeTracker",
    "WorkQueue",
    "compute_hash",
    "equal_ignore_hash",
    "eviction_delay",
    "fenceposts",
    "find_port",
    "format_indexes",
    "new_rs_new_replicas",
    "parse_duration",
    "parse_pool",
    "pod_deletion_order",
    "registry",
    "select_controllers",
    "tolerates",
]
