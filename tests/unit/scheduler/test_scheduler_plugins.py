"""Plugins as pure functions: each filter's verdict and reason string, each score, and the messages."""

from __future__ import annotations

from typing import Any

import pytest
from scheduler_testlib import node, node_info, pod, pod_info

from control.api import EVERYTHING, parse_selector
from control.scheduler import (
    SKIP,
    Algorithm,
    Code,
    FitError,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesBalancedAllocation,
    NodeResourcesFit,
    NodeUnschedulable,
    PodTopologySpread,
    QuantityError,
    SchedulingFailure,
    Status,
    TaintToleration,
    default_normalize_score,
    fit_error_message,
    make_profile,
    milli_value,
    num_feasible_nodes_to_find,
    pod_requests,
    value,
)

CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}

# --- quantities ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "milli"), [
    ("100m", 100), ("1", 1000), ("0.5", 500), ("1.5m", 2), ("2k", 2_000_000), ("1e3", 1_000_000),
    ("250u", 1), (3, 3000), (0.25, 250), ("+1", 1000), (".5", 500),
])
def test_cpu_quantities_are_millicores_rounded_up(text: Any, milli: int) -> None:
    assert milli_value(text) == milli


@pytest.mark.parametrize(("text", "units"), [
    ("1Ki", 1024), ("128Mi", 128 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("1.5", 2), ("1E", 10**18),
    ("1E3", 1000), ("500m", 1), ("110", 110),
])
def test_quantities_as_units_round_up(text: str, units: int) -> None:
    assert value(text) == units


@pytest.mark.parametrize("text", ["", "abc", "1Gb", "1.2.3", "--1", "1 Gi", True, None])
def test_bad_quantities_are_refused(text: Any) -> None:
    with pytest.raises(QuantityError):
        milli_value(text)


# --- requests --------------------------------------------------------------------------------------


def test_requests_sum_containers_and_take_the_largest_init_container() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                       {"resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "500m", "memory": "16Mi"}}},
                           {"resources": {"requests": {"cpu": "50m", "memory": "1Gi"}}}],
        "overhead": {"cpu": "10m"},
    }
    total, nz_cpu, nz_mem = pod_requests(spec)
    assert (total.milli_cpu, total.memory) == (510, 2**30)
    assert (nz_cpu, nz_mem) == (510, 2**30)


def test_sidecar_init_containers_run_alongside() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "100m"}}}],
        "initContainers": [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                           {"resources": {"requests": {"cpu": "250m"}}}],
    }
    total, _, _ = pod_requests(spec)
    # The sidecar (200m) runs with the containers (300m) and with the later init container (450m).
    assert total.milli_cpu == 450


def test_limits_default_requests_and_missing_requests_get_scoring_defaults() -> None:
    spec = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}, {"name": "no-requests"}]}
    total, nz_cpu, nz_mem = pod_requests(spec)
    assert (total.milli_cpu, total.memory) == (1000, 2**30)
    assert (nz_cpu, nz_mem) == (1100, 2**30 + 200 * 2**20)


# --- filters ---------------------------------------------------------------------------------------

FILTER_CASES: list[tuple[str, Any, dict[str, Any], dict[str, Any], list[dict[str, Any]], Status | None]] = [
    ("unschedulable node", NodeUnschedulable(), pod("p"), node("n", unschedulable=True), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) were unschedulable",), "NodeUnschedulable")),
    ("unschedulable node, tolerated", NodeUnschedulable(),
     pod("p", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
     node("n", unschedulable=True), [], None),
    ("schedulable node", NodeUnschedulable(), pod("p"), node("n"), [], None),
    ("node name matches", NodeName(), pod("p", node_name="n"), node("n"), [], None),
    ("node name differs", NodeName(), pod("p", node_name="m"), node("n"), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) didn't match the requested node name",), "NodeName")),
    ("control-plane taint", TaintToleration(), pod("p"), node("n", taints=[CONTROL_PLANE_TAINT]), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            ("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",), "TaintToleration")),
    ("taint with a value", TaintToleration(), pod("p"),
     node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",),
            "TaintToleration")),
    ("not-ready NoExecute", TaintToleration(), pod("p"),
     node("n", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",),
            "TaintToleration")),
    ("unreachable tolerated", TaintToleration(),
     pod("p", tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": 300}]),
     node("n", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]), [], None),
    ("Equal toleration", TaintToleration(),
     pod("p", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu"}]),
     node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]), [], None),
    ("Equal toleration, other value", TaintToleration(),
     pod("p", tolerations=[{"key": "dedicated", "value": "cpu"}]),
     node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",),
            "TaintToleration")),
    ("toleration of another effect", TaintToleration(),
     pod("p", tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]),
     node("n", taints=[{"key": "dedicated", "effect": "NoSchedule"}]), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: }",), "TaintToleration")),
    ("tolerate everything", TaintToleration(), pod("p", tolerations=[{"operator": "Exists"}]),
     node("n", taints=[CONTROL_PLANE_TAINT, {"key": "x", "effect": "NoExecute"}]), [], None),
    ("PreferNoSchedule does not filter", TaintToleration(), pod("p"),
     node("n", taints=[{"key": "x", "effect": "PreferNoSchedule"}]), [], None),
    ("nodeSelector matches", NodeAffinity(), pod("p", node_selector={"disk": "ssd"}),
     node("n", labels={"disk": "ssd"}), [], None),
    ("nodeSelector differs", NodeAffinity(), pod("p", node_selector={"disk": "ssd"}),
     node("n", labels={"disk": "hdd"}), [],
     Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) didn't match Pod's node affinity/selector",),
            "NodeAffinity")),
    ("Insufficient cpu", NodeResourcesFit(), pod("p", cpu="3"), node("n", cpu="4"), [pod("q", cpu="2")],
     Status(Code.UNSCHEDULABLE, ("Insufficient cpu",), "NodeResourcesFit")),
    ("cpu fits exactly", NodeResourcesFit(), pod("p", cpu="2"), node("n", cpu="4"), [pod("q", cpu="2")], None),
    ("cpu and memory", NodeResourcesFit(), pod("p", cpu="5", memory="9Gi"), node("n"), [],
     Status(Code.UNSCHEDULABLE, ("Insufficient cpu", "Insufficient memory"), "NodeResourcesFit")),
    ("Too many pods", NodeResourcesFit(), pod("p"), node("n", pods=1), [pod("q")],
     Status(Code.UNSCHEDULABLE, ("Too many pods",), "NodeResourcesFit")),
    ("extended resource", NodeResourcesFit(), pod("p", requests={"example.com/gpu": "1"}), node("n"), [],
     Status(Code.UNSCHEDULABLE, ("Insufficient example.com/gpu",), "NodeResourcesFit")),
    ("extended resource present", NodeResourcesFit(), pod("p", requests={"example.com/gpu": "1"}),
     node("n", extra={"example.com/gpu": "2"}), [pod("q", requests={"example.com/gpu": "1"})], None),
    ("ephemeral storage", NodeResourcesFit(), pod("p", requests={"ephemeral-storage": "2Gi"}),
     node("n", ephemeral="1Gi"), [],
     Status(Code.UNSCHEDULABLE, ("Insufficient ephemeral-storage",), "NodeResourcesFit")),
    ("best-effort pod on a full node", NodeResourcesFit(), pod("p"), node("n", cpu="1"), [pod("q", cpu="1")], None),
    ("host port taken", NodePorts(), pod("p", host_port=8080), node("n"), [pod("q", host_port=8080)],
     Status(Code.UNSCHEDULABLE, ("node(s) didn't have free ports for the requested pod ports",), "NodePorts")),
    ("host port free", NodePorts(), pod("p", host_port=8080), node("n"), [pod("q", host_port=8081)], None),
]


@pytest.mark.parametrize(("plugin", "the_pod", "the_node", "others", "want"),
                         [case[1:] for case in FILTER_CASES], ids=[case[0] for case in FILTER_CASES])
def test_filters(plugin: Any, the_pod: dict[str, Any], the_node: dict[str, Any], others: list[dict[str, Any]],
                 want: Status | None) -> None:
    info = node_info(the_node, *others)
    p = pod_info(the_pod)
    assert plugin.filter(p, info, plugin.pre_filter(p, [info])) == want


def _affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def _expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


@pytest.mark.parametrize(("affinity", "fits"), [
    (_affinity(_expr("zone", "In", "a", "b")), True),
    (_affinity(_expr("zone", "In", "c")), False),
    (_affinity(_expr("zone", "NotIn", "c")), True),
    (_affinity(_expr("zone", "Exists")), True),
    (_affinity(_expr("gpu", "DoesNotExist")), True),
    (_affinity(_expr("cores", "Gt", "4")), True),
    (_affinity(_expr("cores", "Lt", "4")), False),
    (_affinity(_expr("zone", "Gt", "4")), False),  # not an integer: no match
    (_affinity(_expr("zone", "In", "c"), _expr("cores", "Exists")), True),  # terms are ORed
    (_affinity({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                     {"key": "cores", "operator": "Lt", "values": ["4"]}]}), False),  # ANDed
    (_affinity({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}), True),
    (_affinity({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n"]}]}), False),
    (_affinity({}), False),  # an empty term matches nothing
    (_affinity(), False),  # no terms: nothing
])
def test_required_node_affinity(affinity: dict[str, Any], fits: bool) -> None:
    info = node_info(node("n", labels={"zone": "a", "cores": "8"}))
    assert (NodeAffinity().filter(pod_info(pod("p", affinity=affinity)), info, None) is None) is fits


def test_spread_filter_honours_do_not_schedule() -> None:
    constraint = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                  "labelSelector": {"matchLabels": {"app": "web"}}}
    web = {"app": "web"}
    a = node_info(node("a"), pod("w1", labels=web), pod("w2", labels=web))
    b = node_info(node("b"), pod("w3", labels=web))
    c = node_info(node("c", labels={"kubernetes.io/hostname": "c"}))
    del c.labels["kubernetes.io/hostname"]
    plugin = PodTopologySpread()
    p = pod_info(pod("new", labels=web, spread=[constraint]))
    state = plugin.pre_filter(p, [a, b, c])
    assert plugin.filter(p, a, state) == Status(Code.UNSCHEDULABLE, (PodTopologySpread.REASON_NOT_MATCH,),
                                                "PodTopologySpread")
    assert plugin.filter(p, b, state) is None
    assert plugin.filter(p, c, state) == Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                                                (PodTopologySpread.REASON_MISSING_LABEL,), "PodTopologySpread")


# --- scores ----------------------------------------------------------------------------------------


def _scores(plugin: Any, the_pod: dict[str, Any], nodes: list[Any]) -> list[int] | None:
    p = pod_info(the_pod)
    state = plugin.pre_score(p, nodes, nodes)
    if state is SKIP:
        return None
    scores = [plugin.score(p, n, state) for n in nodes]
    plugin.normalize_score(p, nodes, scores, state)
    return scores


def test_least_allocated_prefers_free_nodes() -> None:
    empty = node_info(node("a", cpu="4", memory="8Gi"))
    half = node_info(node("b", cpu="4", memory="8Gi"), pod("q", cpu="2", memory="4Gi"))
    # cpu (4000-1000)*100/4000 = 75, memory (8Gi-1Gi)*100/8Gi = 87 -> (75+87)//2 = 81; then 25 and 37 -> 31.
    assert _scores(NodeResourcesFit("LeastAllocated"), pod("p", cpu="1", memory="1Gi"), [empty, half]) == [81, 31]


def test_most_allocated_prefers_full_nodes() -> None:
    empty = node_info(node("a", cpu="4", memory="8Gi"))
    half = node_info(node("b", cpu="4", memory="8Gi"), pod("q", cpu="2", memory="4Gi"))
    assert _scores(NodeResourcesFit("MostAllocated"), pod("p", cpu="1", memory="1Gi"), [empty, half]) == [18, 68]


def test_least_allocated_counts_request_less_pods_at_the_defaults() -> None:
    info = node_info(node("a", cpu="1", memory="1000Mi"))
    # 100m of 1000m and 200Mi of 1000Mi -> 90 and 80.
    assert _scores(NodeResourcesFit(), pod("p"), [info]) == [85]


def test_balanced_allocation() -> None:
    balanced = node_info(node("a", cpu="4", memory="8Gi"))
    lopsided = node_info(node("b", cpu="4", memory="8Gi"), pod("q", cpu="3"))
    # a: 1/4 cpu, 1/8 memory -> std 0.0625 -> 93; b: 4/4, 1/8 -> 0.4375 -> 56.
    assert _scores(NodeResourcesBalancedAllocation(), pod("p", cpu="1", memory="1Gi"), [balanced, lopsided]) == [93, 56]
    assert _scores(NodeResourcesBalancedAllocation(), pod("p"), [balanced]) is None  # best-effort: skipped


def test_taint_toleration_score_prefers_fewer_prefer_no_schedule_taints() -> None:
    soft = {"key": "x", "effect": "PreferNoSchedule"}
    nodes = [node_info(node("a")), node_info(node("b", taints=[soft])),
             node_info(node("c", taints=[soft, {"key": "y", "effect": "PreferNoSchedule"}]))]
    assert _scores(TaintToleration(), pod("p"), nodes) == [100, 50, 0]
    tolerant = pod("p", tolerations=[{"key": "x", "operator": "Exists", "effect": "PreferNoSchedule"}])
    assert _scores(TaintToleration(), tolerant, nodes) == [100, 100, 0]


def test_preferred_node_affinity_score() -> None:
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 80, "preference": _expr("disk", "In", "ssd")},
        {"weight": 20, "preference": _expr("zone", "In", "a")}]}}
    nodes = [node_info(node("a", labels={"disk": "ssd", "zone": "a"})), node_info(node("b", labels={"disk": "ssd"})),
             node_info(node("c", labels={"zone": "a"})), node_info(node("d"))]
    assert _scores(NodeAffinity(), pod("p", affinity=affinity), nodes) == [100, 80, 20, 0]
    assert _scores(NodeAffinity(), pod("p"), nodes) is None


def test_default_normalize_score() -> None:
    scores = [0, 5, 10]
    default_normalize_score(scores, reverse=False)
    assert scores == [0, 50, 100]
    scores = [0, 0]
    default_normalize_score(scores, reverse=True)
    assert scores == [100, 100]


def test_spread_score_prefers_nodes_with_fewer_siblings() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-1", "controller": True}
    web = {"app": "web"}
    nodes = [node_info(node("a"), pod("w1", labels=web, owner=owner), pod("w2", labels=web, owner=owner)),
             node_info(node("b"), pod("w3", labels=web, owner=owner)), node_info(node("c"))]
    plugin = PodTopologySpread(lambda p: parse_selector("app in (web)"))
    scores = _scores(plugin, pod("new", labels=web, owner=owner), nodes)
    assert scores is not None and scores[2] > scores[1] > scores[0]
    # Without a Service or controller selecting it, a pod is not spread.
    assert _scores(PodTopologySpread(lambda p: EVERYTHING), pod("lone"), nodes) is None


def test_spread_score_by_service_selector_for_pods_without_owner() -> None:
    web = {"app": "web"}
    nodes = [node_info(node("a"), pod("w1", labels=web), pod("w2", labels=web), pod("other", labels={"app": "db"})),
             node_info(node("b"), pod("w3", labels=web), pod("gone", namespace="elsewhere", labels=web)),
             node_info(node("c"))]
    plugin = PodTopologySpread(lambda p: parse_selector("app in (web)"))
    # Counts 2, 1, 0 (other namespaces and labels don't count) times log(3 nodes + 2), plus maxSkew - 1 = 2:
    # raw 5, 4, 2; normalized 100 * (max + min - s) / max.
    assert _scores(plugin, pod("new", labels=web), nodes) == [40, 60, 100]


def test_malformed_fields_do_not_break_pod_parsing() -> None:
    bad = pod("p", priority=0, host_port=80)
    bad["spec"]["priority"] = "high"
    bad["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "lots"}}
    info = pod_info(bad)
    assert info.priority == 0 and info.request.milli_cpu == 0


# --- the algorithm and its messages ----------------------------------------------------------------


def test_fit_error_message_has_kubernetes_shape() -> None:
    statuses = {
        "cp": Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                     ("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",)),
        "w1": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",)),
        "w2": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",)),
    }
    assert fit_error_message(3, statuses, post_filter_msg="preemption: 0/3 nodes are available: "
                             "3 Preemption is not helpful for scheduling.") == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


def _cluster() -> list[Any]:
    return [node_info(node("cp", cpu="8", taints=[CONTROL_PLANE_TAINT])),
            node_info(node("w1", cpu="2")), node_info(node("w2", cpu="2"))]


def test_algorithm_reports_every_nodes_reason_and_the_preemption_diagnosis() -> None:
    with pytest.raises(FitError) as caught:
        Algorithm(make_profile()).schedule(pod_info(pod("big", cpu="5")), _cluster())
    assert caught.value.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.")


def test_preemption_diagnosis_with_lower_priority_pods() -> None:
    nodes = [*_cluster(), node_info(node("w3", cpu="1"))]
    nodes[1].add_pod(pod_info(pod("low", cpu="1", priority=0, node_name="w1")))
    nodes[2].add_pod(pod_info(pod("high", cpu="1", priority=200, node_name="w2")))
    nodes[3].add_pod(pod_info(pod("low2", cpu="1", priority=0, node_name="w3")))
    with pytest.raises(FitError) as caught:
        Algorithm(make_profile()).schedule(pod_info(pod("big", cpu="2", priority=100)), nodes)
    # w1 would fit if its lower-priority pod went (upstream would preempt there); w2 has no lower-priority
    # pod; w3 is too small even when empty.
    assert caught.value.message == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "3 Insufficient cpu. preemption: 0/4 nodes are available: 1 Insufficient cpu, "
        "1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling, "
        "1 Preemption would help, but this scheduler does not preempt.")


def test_pods_that_never_preempt_say_so() -> None:
    never = pod("big", cpu="5")
    never["spec"]["preemptionPolicy"] = "Never"
    with pytest.raises(FitError) as caught:
        Algorithm(make_profile()).schedule(pod_info(never), _cluster())
    assert caught.value.message.endswith("2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.")


def test_no_nodes() -> None:
    with pytest.raises(SchedulingFailure) as caught:
        Algorithm(make_profile()).schedule(pod_info(pod("p")), [])
    assert caught.value.message == "no nodes available to schedule pods"


def test_algorithm_picks_the_best_node() -> None:
    nodes = [node_info(node("busy", cpu="4"), pod("q", cpu="3")), node_info(node("idle", cpu="4"))]
    assert Algorithm(make_profile()).schedule(pod_info(pod("p", cpu="500m")), nodes).node == "idle"
    assert Algorithm(make_profile("most-allocated")).schedule(pod_info(pod("p", cpu="500m")), nodes).node == "busy"


@pytest.mark.parametrize(("nodes", "found"), [(5, 5), (99, 99), (100, 100), (1000, 420), (5000, 500),
                                              (10000, 500)])
def test_num_feasible_nodes_to_find(nodes: int, found: int) -> None:
    assert num_feasible_nodes_to_find(nodes) == found


def test_large_clusters_evaluate_a_share_of_nodes_round_robin() -> None:
    nodes = [node_info(node(f"n{i:04d}")) for i in range(1000)]
    algorithm = Algorithm(make_profile())
    first = algorithm.schedule(pod_info(pod("p")), nodes)
    assert (first.feasible_nodes, first.evaluated_nodes) == (420, 420)
    assert algorithm.next_start_node_index == 420
    algorithm.schedule(pod_info(pod("q")), nodes)
    assert algorithm.next_start_node_index == 840


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        make_profile("spread-everything")
