"""The scheduler's view of pods and nodes: parsed once per object version, then read by every plugin.

`PodInfo` and `NodeInfo` mirror upstream's framework.PodInfo / framework.NodeInfo
(pkg/scheduler/framework/types.go): the pod's summed requests, tolerations and affinity are computed
when the object arrives, and a NodeInfo keeps running totals of its pods' requests, so that a filter
or score is arithmetic on integers, never a walk over JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from control.api import EVERYTHING, NOTHING, Selector, SelectorError, label_selector_as_selector
from control.api import labels as api_labels
from control.api.quantity import QuantityError, milli_value, value

log = logging.getLogger("control.scheduler")

JsonObject = dict[str, Any]

DEFAULT_SCHEDULER_NAME = "default-scheduler"

# Requests assumed for a container that sets none, for scoring only (pkg/scheduler/util/pod_resources.go:
# DefaultMilliCPURequest, DefaultMemoryRequest), so that many request-less pods still spread.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_ZONE = "topology.kubernetes.io/zone"

TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"

_CPU, _MEMORY, _EPHEMERAL, _PODS = "cpu", "memory", "ephemeral-storage", "pods"


class Code(IntEnum):
    """framework.Code, the ones a filter can return."""

    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    # The node can't be made to fit by preempting pods on it (framework.UnschedulableAndUnresolvable).
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3


@dataclass(frozen=True, slots=True)
class Status:
    """Why a plugin rejected a node: one or more reasons (e.g. "Insufficient cpu", "Insufficient memory")."""

    code: Code
    reasons: tuple[str, ...]
    plugin: str = ""

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)


# --- resources -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Resource:
    """framework.Resource: cpu in millicores, memory and ephemeral storage in bytes, extended resources."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0
    allowed_pods: int = 0
    scalars: dict[str, int] = field(default_factory=dict)

    def add(self, other: Resource) -> None:
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        self.ephemeral_storage += other.ephemeral_storage
        for name, amount in other.scalars.items():
            self.scalars[name] = self.scalars.get(name, 0) + amount

    def sub(self, other: Resource) -> None:
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        self.ephemeral_storage -= other.ephemeral_storage
        for name, amount in other.scalars.items():
            self.scalars[name] = self.scalars.get(name, 0) - amount

    def set_max(self, other: Resource) -> None:
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral_storage = max(self.ephemeral_storage, other.ephemeral_storage)
        for name, amount in other.scalars.items():
            self.scalars[name] = max(self.scalars.get(name, 0), amount)

    def copy(self) -> Resource:
        return Resource(self.milli_cpu, self.memory, self.ephemeral_storage, self.allowed_pods, dict(self.scalars))

    def is_zero(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral_storage or any(self.scalars.values()))


def resource_list(raw: Mapping[str, Any] | None, *, what: str = "") -> Resource:
    """A ResourceList ({"cpu": "500m", "memory": "1Gi", "pods": "110", ...}) as integers.

    A value that is not a quantity counts as 0 and is logged: the apiserver should have refused it, and
    one bad object must not stop the scheduler (upstream never sees one, its decoder rejects it).
    """
    out = Resource()
    for name, raw_value in (raw or {}).items():
        try:
            if name == _CPU:
                out.milli_cpu = milli_value(raw_value)
            elif name == _MEMORY:
                out.memory = value(raw_value)
            elif name == _EPHEMERAL:
                out.ephemeral_storage = value(raw_value)
            elif name == _PODS:
                out.allowed_pods = value(raw_value)
            else:
                out.scalars[str(name)] = value(raw_value)
        except QuantityError as exc:
            log.warning("%s: resource %s: %s; counting it as 0", what or "object", name, exc)
    return out


def _container_requests(container: Mapping[str, Any], what: str) -> tuple[Resource, int, int]:
    """A container's requests, plus its cpu and memory with the scoring defaults for missing ones."""
    resources = container.get("resources") or {}
    requests = dict(resources.get("requests") or {})
    # API defaulting (pkg/apis/core/v1/defaults.go, SetDefaults_Pod): a limit without a request makes the
    # request equal to the limit. Our apiserver may not default, so the scheduler applies it itself.
    for name, limit in (resources.get("limits") or {}).items():
        requests.setdefault(name, limit)
    res = resource_list(requests, what=what)
    non_zero_cpu = res.milli_cpu if _CPU in requests else DEFAULT_MILLI_CPU_REQUEST
    non_zero_mem = res.memory if _MEMORY in requests else DEFAULT_MEMORY_REQUEST
    return res, non_zero_cpu, non_zero_mem


def pod_requests(spec: Mapping[str, Any], what: str = "pod") -> tuple[Resource, int, int]:
    """The pod's effective request (k8s.io/component-helpers resource.PodRequests, as the scheduler's
    computePodResourceRequest uses it): the sum over containers, raised to the largest init container
    (init containers run one at a time before them), with restartable init containers ("sidecars") added
    to both since they keep running; then the pod overhead. Returns (request, non-zero cpu, non-zero mem),
    the last two with the scoring defaults for containers that request nothing."""
    total = Resource()
    nz_cpu = nz_mem = 0
    for container in spec.get("containers") or []:
        res, c, m = _container_requests(container, what)
        total.add(res)
        nz_cpu += c
        nz_mem += m
    init_max = Resource()
    init_nz_cpu = init_nz_mem = 0
    sidecars = Resource()
    sidecar_cpu = sidecar_mem = 0
    for container in spec.get("initContainers") or []:
        res, c, m = _container_requests(container, what)
        if container.get("restartPolicy") == "Always":
            total.add(res)
            nz_cpu += c
            nz_mem += m
            sidecars.add(res)
            sidecar_cpu += c
            sidecar_mem += m
            running, run_cpu, run_mem = sidecars.copy(), sidecar_cpu, sidecar_mem
        else:
            running = res.copy()
            running.add(sidecars)
            run_cpu, run_mem = c + sidecar_cpu, m + sidecar_mem
        init_max.set_max(running)
        init_nz_cpu = max(init_nz_cpu, run_cpu)
        init_nz_mem = max(init_nz_mem, run_mem)
    total.set_max(init_max)
    nz_cpu = max(nz_cpu, init_nz_cpu)
    nz_mem = max(nz_mem, init_nz_mem)
    overhead = spec.get("overhead")
    if overhead:
        extra = resource_list(overhead, what=what)
        total.add(extra)
        nz_cpu += extra.milli_cpu
        nz_mem += extra.memory
    return total, nz_cpu, nz_mem


# --- taints, tolerations, selectors ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = ""
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        """v1.Toleration.ToleratesTaint (staging/src/k8s.io/api/core/v1/toleration.go)."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator in ("", "Equal"):
            return self.value == taint.value
        return self.operator == "Exists"


def tolerated(taint: Taint, tolerations: Sequence[Toleration]) -> bool:
    return any(t.tolerates(taint) for t in tolerations)


def label_selector(raw: Mapping[str, Any] | None) -> Selector:
    """metav1.LabelSelectorAsSelector: nil matches nothing, {} matches everything. An invalid selector
    (which the apiserver's validation refuses) matches nothing rather than stopping the scheduler."""
    try:
        return label_selector_as_selector(raw)
    except SelectorError:
        return NOTHING


# NodeSelectorOperator -> selection.Operator (nodeaffinity's nodeSelectorRequirementsAsSelector).
_NODE_OPERATORS = {"In": api_labels.IN, "NotIn": api_labels.NOT_IN, "Exists": api_labels.EXISTS,
                   "DoesNotExist": api_labels.DOES_NOT_EXIST, "Gt": api_labels.GREATER_THAN, "Lt": api_labels.LESS_THAN}


def _node_label_selector(items: Any) -> Selector:
    """A term's matchExpressions; any invalid requirement makes the whole term match nothing."""
    reqs = []
    for expr in items:
        operator = _NODE_OPERATORS.get(str(expr.get("operator", "")))
        if operator is None:
            return NOTHING
        try:
            reqs.append(api_labels.requirement(str(expr.get("key", "")), operator,
                                           [str(v) for v in expr.get("values") or ()]))
        except SelectorError:
            return NOTHING
    return EVERYTHING.add(*reqs)


def _node_field_selector(items: Any) -> Selector:
    """A term's matchFields (nodeSelectorRequirementsAsFieldSelector): only metadata.name, with In or
    NotIn and exactly one value; anything else makes the term match nothing."""
    reqs = []
    for expr in items:
        values = list(expr.get("values") or ())
        operator = {"In": api_labels.EQUALS, "NotIn": api_labels.NOT_EQUALS}.get(str(expr.get("operator", "")))
        if expr.get("key") != "metadata.name" or len(values) != 1 or operator is None:
            return NOTHING
        reqs.append(api_labels.Requirement("metadata.name", operator, (str(values[0]),)))
    return EVERYTHING.add(*reqs)


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    match_expressions: Selector | None  # None: the term has none
    match_fields: Selector | None

    def matches(self, node_labels: Mapping[str, str], node_fields: Mapping[str, str]) -> bool:
        # An empty term matches no node (nodeaffinity.nodeSelectorTerm: "len(...) == 0 -> false").
        if self.match_expressions is None and self.match_fields is None:
            return False
        return ((self.match_expressions is None or self.match_expressions.matches(node_labels))
                and (self.match_fields is None or self.match_fields.matches(node_fields)))


def _term(raw: Mapping[str, Any]) -> NodeSelectorTerm:
    expressions, fields = raw.get("matchExpressions") or (), raw.get("matchFields") or ()
    return NodeSelectorTerm(_node_label_selector(expressions) if expressions else None,
                            _node_field_selector(fields) if fields else None)


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    """A topologySpreadConstraint (or a system default one, built from the pod's Services and owner)."""

    max_skew: int
    topology_key: str
    when_unsatisfiable: str
    selector: Selector
    min_domains: int = 1


# --- pods ------------------------------------------------------------------------------------------


def _int(raw: Any, default: int) -> int:
    """An integer field as the API would have validated it; anything else counts as DEFAULT, so that one
    malformed object cannot stop the scheduler (upstream's decoder would have refused it)."""
    if isinstance(raw, bool):
        return default
    try:
        return int(raw) if raw is not None else default
    except (TypeError, ValueError):
        return default


@dataclass(slots=True, eq=False)
class PodInfo:
    """A pod as the scheduler reads it, computed once per object version by `PodInfo.of`."""

    obj: JsonObject
    key: str
    uid: str
    namespace: str
    name: str
    labels: dict[str, str]
    node_name: str
    scheduler_name: str
    priority: int
    preemption_policy: str
    request: Resource
    non_zero_cpu: int
    non_zero_mem: int
    tolerations: tuple[Toleration, ...]
    node_selector: dict[str, str]
    required_terms: tuple[NodeSelectorTerm, ...] | None
    preferred_terms: tuple[tuple[int, NodeSelectorTerm], ...]
    spread_constraints: tuple[SpreadConstraint, ...]
    owner_uid: str
    controller: tuple[str, str, str] | None  # (apiVersion, kind, name) of the controlling owner
    host_ports: tuple[tuple[str, str, int], ...]
    terminating: bool
    phase: str
    #: spec.schedulingGates is non-empty: not to be tried until they are all removed.
    gated: bool = False

    @classmethod
    def of(cls, pod: JsonObject) -> PodInfo:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        ns = str(meta.get("namespace") or "default")
        name = str(meta.get("name") or "")
        key = f"{ns}/{name}"
        request, nz_cpu, nz_mem = pod_requests(spec, key)
        affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        required_terms = None
        if required is not None:
            required_terms = tuple(_term(t) for t in required.get("nodeSelectorTerms") or ())
        preferred = tuple(
            (_int(p.get("weight"), 0), _term(p.get("preference") or {}))
            for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        )
        constraints = tuple(
            SpreadConstraint(_int(c.get("maxSkew"), 1), str(c.get("topologyKey") or ""),
                             str(c.get("whenUnsatisfiable") or "DoNotSchedule"), label_selector(c.get("labelSelector")),
                             _int(c.get("minDomains"), 1))
            for c in spec.get("topologySpreadConstraints") or ()
        )
        owners = meta.get("ownerReferences") or []
        controller = next(((str(o.get("apiVersion", "")), str(o.get("kind", "")), str(o.get("name", "")))
                           for o in owners if o.get("controller")), None)
        ports = tuple(
            (str(p.get("hostIP") or "0.0.0.0"), str(p.get("protocol") or "TCP"), _int(p["hostPort"], 0))
            for c in spec.get("containers") or () for p in c.get("ports") or () if p.get("hostPort")
        )
        return cls(
            obj=pod, key=key, uid=str(meta.get("uid") or ""), namespace=ns, name=name,
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            node_name=str(spec.get("nodeName") or ""),
            scheduler_name=str(spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME),
            priority=_int(spec.get("priority"), 0),
            preemption_policy=str(spec.get("preemptionPolicy") or "PreemptLowerPriority"),
            request=request, non_zero_cpu=nz_cpu, non_zero_mem=nz_mem,
            tolerations=tuple(
                Toleration(str(t.get("key") or ""), str(t.get("operator") or ""), str(t.get("value") or ""),
                           str(t.get("effect") or ""))
                for t in spec.get("tolerations") or ()),
            node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
            required_terms=required_terms, preferred_terms=preferred, spread_constraints=constraints,
            owner_uid=str(owners[0].get("uid") or "") if owners else "",
            controller=controller, host_ports=ports,
            terminating=bool(meta.get("deletionTimestamp")),
            phase=str((pod.get("status") or {}).get("phase") or ""),
            gated=bool(spec.get("schedulingGates")),
        )


# --- nodes -----------------------------------------------------------------------------------------


class NodeInfo:
    """A node and the pods on it (assumed ones included), with running totals of their requests."""

    __slots__ = ("allocatable", "generation", "labels", "name", "non_zero_cpu", "non_zero_mem", "obj",
                 "owner_counts", "pods", "requested", "taints", "unschedulable", "used_ports")

    def __init__(self, node: JsonObject | None = None, *, name: str = "") -> None:
        self.name = name
        self.obj: JsonObject = {}
        self.labels: dict[str, str] = {}
        self.taints: tuple[Taint, ...] = ()
        self.unschedulable = False
        self.allocatable = Resource()
        self.requested = Resource()
        self.non_zero_cpu = 0
        self.non_zero_mem = 0
        self.pods: dict[str, PodInfo] = {}
        self.owner_counts: dict[str, int] = {}
        self.used_ports: dict[tuple[str, str, int], int] = {}
        self.generation = 0
        if node is not None:
            self.set_node(node)

    def __repr__(self) -> str:
        return f"NodeInfo({self.name!r}, pods={len(self.pods)})"

    def set_node(self, node: JsonObject) -> None:
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        self.obj = node
        self.name = str(meta.get("name") or self.name)
        self.labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        self.taints = tuple(Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
                            for t in spec.get("taints") or ())
        self.unschedulable = bool(spec.get("unschedulable"))
        self.allocatable = resource_list((node.get("status") or {}).get("allocatable"), what=f"node {self.name}")
        self.generation += 1

    @property
    def has_node(self) -> bool:
        return bool(self.obj)

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        self.requested.add(pod.request)
        self.non_zero_cpu += pod.non_zero_cpu
        self.non_zero_mem += pod.non_zero_mem
        if pod.owner_uid:
            self.owner_counts[pod.owner_uid] = self.owner_counts.get(pod.owner_uid, 0) + 1
        for port in pod.host_ports:
            self.used_ports[port] = self.used_ports.get(port, 0) + 1
        self.generation += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        self.requested.sub(pod.request)
        self.non_zero_cpu -= pod.non_zero_cpu
        self.non_zero_mem -= pod.non_zero_mem
        if pod.owner_uid:
            left = self.owner_counts.get(pod.owner_uid, 0) - 1
            if left > 0:
                self.owner_counts[pod.owner_uid] = left
            else:
                self.owner_counts.pop(pod.owner_uid, None)
        for port in pod.host_ports:
            left = self.used_ports.get(port, 0) - 1
            if left > 0:
                self.used_ports[port] = left
            else:
                self.used_ports.pop(port, None)
        self.generation += 1
        return pod
