"""Server-side apply's merge, removal, conflicts and managedFields bookkeeping, as pure functions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from control.apiserver.apply import ListType, Scope, apply, check_config, record_update, register, unregister
from control.apiserver.apply.fieldset import decode, encode, fields_of, path_text
from control.apiserver.apply.schema import schema_for
from control.apiserver.errors import APIError

DEPLOYMENT = Scope("Deployment", "apps/v1", True)
CONFIGMAP = Scope("ConfigMap", "v1", False)


def clock() -> float:
    return 1_700_000_000.0


def deployment(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec}


def containers(*items: dict[str, Any]) -> dict[str, Any]:
    return {"template": {"spec": {"containers": list(items)}}}


def owners(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


def run_apply(live: dict[str, Any] | None, config: dict[str, Any], manager: str, *, force: bool = False,
              scope: Scope = DEPLOYMENT) -> dict[str, Any]:
    return apply(live, config, manager=manager, force=force, scope=scope, clock=clock)


# -- merge ------------------------------------------------------------------------------------------


def test_containers_merge_by_name_and_each_manager_owns_its_own() -> None:
    first = run_apply(None, deployment(**containers({"name": "a", "image": "one"})), "alice")
    both = run_apply(first, deployment(**containers({"name": "b", "image": "two"})), "bob")
    assert [c["name"] for c in both["spec"]["template"]["spec"]["containers"]] == ["a", "b"]
    bob = owners(both)["bob"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(bob) == {'k:{"name":"b"}'}


def test_a_port_without_protocol_is_the_defaulted_live_item() -> None:
    config = deployment(**containers({"name": "a", "ports": [{"containerPort": 80}]}))
    live = run_apply(None, config, "alice")
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"  # the apiserver's default
    again = run_apply(live, config, "alice")
    assert again["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    ports = owners(again)["alice"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"a"}']["f:ports"]
    assert ports == {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}


def test_sets_union_maps_granular_atomic_lists_replaced() -> None:
    live = run_apply(None, {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "c", "labels": {"a": "1"}, "finalizers": ["x"]}}, "alice",
                     scope=CONFIGMAP)
    merged = run_apply(live, {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "c", "labels": {"b": "2"}, "finalizers": ["y"]}}, "bob",
                       scope=CONFIGMAP)
    assert merged["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert merged["metadata"]["finalizers"] == ["x", "y"]
    args = run_apply(None, deployment(**containers({"name": "a", "args": ["1", "2"]})), "alice")
    replaced = run_apply(args, deployment(**containers({"name": "a", "args": ["3"]})), "alice")
    assert replaced["spec"]["template"]["spec"]["containers"][0]["args"] == ["3"]
    leaf = owners(replaced)["alice"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"a"}']["f:args"]
    assert leaf == {}  # an atomic list is one leaf


def test_unknown_kinds_have_atomic_lists_and_a_registered_schema_makes_them_associative() -> None:
    scope = Scope("Widget", "example.com/v1", False)
    config = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"parts": [{"id": "p1", "size": 1}]}}
    assert owners(run_apply(None, config, "alice", scope=scope))["alice"]["f:spec"] == {"f:parts": {}}

    class Parts:
        def list_type(self, path: tuple[str, ...]) -> ListType:
            return ListType("map", ("id",)) if path == ("spec", "parts") else ListType("atomic")

    register("Widget", Parts())
    try:
        live = run_apply(None, config, "alice", scope=scope)
        other = copy.deepcopy(config)
        other["spec"]["parts"] = [{"id": "p2", "size": 2}]
        merged = run_apply(live, other, "bob", scope=scope)
        assert [p["id"] for p in merged["spec"]["parts"]] == ["p1", "p2"]
    finally:
        unregister("Widget")
    assert schema_for("Widget").list_type(("spec", "parts")).kind == "atomic"


# -- removal ----------------------------------------------------------------------------------------


def test_fields_the_applier_stops_sending_are_removed() -> None:
    live = run_apply(None, deployment(replicas=2, paused=True, **containers({"name": "a", "image": "one"},
                                                                             {"name": "b", "image": "two"})), "alice")
    after = run_apply(live, deployment(replicas=2, **containers({"name": "a", "image": "one"})), "alice")
    assert "paused" not in after["spec"]
    assert [c["name"] for c in after["spec"]["template"]["spec"]["containers"]] == ["a"]


def test_a_field_another_manager_also_owns_stays() -> None:
    live = run_apply(None, deployment(replicas=2, **containers({"name": "a", "image": "one"})), "alice")
    shared = run_apply(live, deployment(replicas=2), "bob")  # the same value: shared, no conflict
    assert "f:replicas" in owners(shared)["bob"]["f:spec"] and "f:replicas" in owners(shared)["alice"]["f:spec"]
    after = run_apply(shared, deployment(**containers({"name": "a", "image": "one"})), "alice")
    assert after["spec"]["replicas"] == 2


def test_an_item_someone_else_owns_part_of_keeps_only_that_part() -> None:
    live = run_apply(None, deployment(**containers({"name": "a", "image": "one", "command": ["x"]})), "alice")
    bob = run_apply(live, deployment(**containers({"name": "a", "image": "one"})), "bob")
    after = run_apply(bob, deployment(**containers({"name": "z", "image": "zz"})), "alice")
    assert after["spec"]["template"]["spec"]["containers"] == [{"name": "a", "image": "one"},
                                                              {"name": "z", "image": "zz"}]


# -- conflicts --------------------------------------------------------------------------------------


def test_changing_a_field_another_applier_owns_is_a_conflict_in_upstreams_words() -> None:
    live = run_apply(None, deployment(replicas=2), "kubectl")
    with pytest.raises(APIError) as raised:
        run_apply(live, deployment(replicas=5), "other")
    status = raised.value.status()
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert status["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"',
                                            "field": ".spec.replicas"}]


def test_conflicts_with_several_fields_and_an_updater_are_grouped_by_manager() -> None:
    live = deployment(replicas=2, **containers({"name": "a", "image": "one"}))
    record_update(live, None, "kube-controller-manager", DEPLOYMENT, clock)
    with pytest.raises(APIError) as raised:
        run_apply(live, deployment(replicas=3, **containers({"name": "a", "image": "two"})), "me")
    assert raised.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kube-controller-manager" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="a"].image')


def test_force_takes_the_fields_over() -> None:
    live = run_apply(None, deployment(replicas=2, paused=False), "kubectl")
    forced = run_apply(live, deployment(replicas=5), "other", force=True)
    assert forced["spec"]["replicas"] == 5
    assert owners(forced) == {"kubectl": {"f:spec": {"f:paused": {}}}, "other": {"f:spec": {"f:replicas": {}}}}


def test_kubectl_may_take_over_what_its_client_side_apply_set() -> None:
    last = json.dumps(deployment(replicas=2))
    live = deployment(replicas=2)
    live["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": last}
    record_update(live, None, "kubectl-client-side-apply", DEPLOYMENT, clock)
    with pytest.raises(APIError):
        run_apply(live, deployment(replicas=3), "someone")
    moved = run_apply(live, deployment(replicas=3), "kubectl")
    assert moved["spec"]["replicas"] == 3
    synced = json.loads(moved["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert synced == deployment(replicas=3)


def test_the_configuration_is_checked() -> None:
    with pytest.raises(APIError, match="Incorrect version specified in apply patch"):
        check_config({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web"}},
                     DEPLOYMENT, "web")
    with pytest.raises(APIError, match="does not match the name on the URL"):
        check_config(deployment(), DEPLOYMENT, "other")
    with pytest.raises(APIError, match=r"metadata\.managedFields must be nil"):
        check_config({**deployment(), "metadata": {"name": "web", "managedFields": []}}, DEPLOYMENT, "web")
    with pytest.raises(APIError, match="duplicate entries"):
        run_apply(None, deployment(**containers({"name": "a"}, {"name": "a"})), "me")


# -- updates (create, update, patch) ----------------------------------------------------------------


def test_an_update_takes_what_it_changed_and_drops_what_it_removed() -> None:
    created = deployment(replicas=1, paused=True)
    record_update(created, None, "creator", DEPLOYMENT, clock)
    assert owners(created) == {"creator": {"f:spec": {"f:paused": {}, "f:replicas": {}}}}
    updated = copy.deepcopy(created)
    updated["spec"] = {"replicas": 4}
    record_update(updated, created, "scaler", DEPLOYMENT, clock)
    assert owners(updated) == {"scaler": {"f:spec": {"f:replicas": {}}}}
    entry = updated["metadata"]["managedFields"][0]
    assert entry == {"manager": "scaler", "operation": "Update", "apiVersion": "apps/v1",
                     "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:replicas": {}}}}


def test_no_change_changes_no_managed_fields() -> None:
    created = deployment(replicas=1)
    record_update(created, None, "creator", DEPLOYMENT, clock)
    same = copy.deepcopy(created)
    record_update(same, created, "someone", DEPLOYMENT, lambda: 0.0)
    assert same == created


def test_managed_fields_sent_empty_are_kept_sent_as_one_empty_entry_are_stripped() -> None:
    created = deployment(replicas=1)
    record_update(created, None, "creator", DEPLOYMENT, clock)
    kept = copy.deepcopy(created)
    kept["metadata"]["managedFields"] = []
    record_update(kept, created, "someone", DEPLOYMENT, clock)
    assert owners(kept) == {"creator": {"f:spec": {"f:replicas": {}}}}
    stripped = copy.deepcopy(created)
    stripped["metadata"]["managedFields"] = [{}]
    record_update(stripped, created, "someone", DEPLOYMENT, clock)
    assert "managedFields" not in stripped["metadata"]


def test_a_status_write_owns_only_status_under_its_subresource() -> None:
    old = {**deployment(replicas=1), "status": {"replicas": 0}}
    new = {**deployment(replicas=1), "status": {"replicas": 1}}
    record_update(new, old, "kube-controller-manager", Scope("Deployment", "apps/v1", True, "status"), clock)
    assert new["metadata"]["managedFields"][0]["subresource"] == "status"
    assert owners(new) == {"kube-controller-manager": {"f:status": {"f:replicas": {}}}}


def test_bad_managed_fields_are_refused() -> None:
    obj = deployment()
    obj["metadata"]["managedFields"] = [{"manager": "m", "operation": "Patch", "fieldsV1": {}}]
    with pytest.raises(APIError, match="must be `Apply` or `Update`"):
        record_update(obj, None, "m", DEPLOYMENT, clock)


# -- field paths ------------------------------------------------------------------------------------


def test_fields_v1_decodes_back_and_paths_print_as_upstream() -> None:
    obj = {"metadata": {"finalizers": ["f"]},
           "spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "http"}]}}
    paths = fields_of(obj, schema_for("Service").list_type)
    assert decode(encode(paths)) == paths
    assert sorted(path_text(p) for p in paths) == [
        ".metadata.finalizers[=\"f\"]", ".spec.ports[port=80,protocol=\"TCP\"]",
        ".spec.ports[port=80,protocol=\"TCP\"].name", ".spec.ports[port=80,protocol=\"TCP\"].port",
        ".spec.ports[port=80,protocol=\"TCP\"].protocol"]
    with pytest.raises(ValueError, match="not a field path element"):
        decode({"x:y": {}})


def test_more_than_ten_updaters_merge_the_oldest_into_ancient_changes() -> None:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    for n in range(12):
        old = copy.deepcopy(obj)
        obj["data"] = {**obj["data"], f"k{n}": "v"}
        record_update(obj, old if n else None, f"writer-{n}", CONFIGMAP, lambda n=n: 1_700_000_000.0 + n)
    found = owners(obj)
    assert len(found) == 10 and "writer-0" not in found and "writer-2" not in found and "writer-3" in found
    assert found["ancient-changes"] == {"f:data": {"f:k0": {}, "f:k1": {}, "f:k2": {}}}


def test_each_subresource_owns_only_its_part() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "c"}], "ephemeralContainers": [{"name": "debugger"}]},
           "status": {"phase": "Running"}}
    owned = {path_text(p) for p in Scope("Pod", "v1", True, "ephemeralcontainers").leaves(pod)}
    assert owned == {'.spec.ephemeralContainers[name="debugger"]', '.spec.ephemeralContainers[name="debugger"].name'}
    assert {path_text(p) for p in Scope("Pod", "v1", True, "status").leaves(pod)} == {".status.phase"}
    main = {path_text(p) for p in Scope("Pod", "v1", True).leaves(pod)}
    assert ".metadata.labels.a" in main and ".status.phase" not in main and ".metadata.name" not in main


def test_a_write_without_a_field_manager_is_recorded_under_its_user_agents_product() -> None:
    from control.apiserver.apply import manager_from_user_agent

    assert manager_from_user_agent("kube-controller-manager/v1.30.0 (linux/amd64) kubesim") == \
        "kube-controller-manager"
    assert manager_from_user_agent("") == ""
