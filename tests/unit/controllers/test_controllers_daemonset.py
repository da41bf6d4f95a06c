"""The DaemonSet controller against the real apiserver (defaulting, validation, strategic merge patch), with
the test playing the kubelet and the scheduler's binding: pods become Ready when we say so."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.apiserver.defaults import default
from control.apiserver.validation import validate
from control.client import CONTROLLER_REVISIONS, DAEMON_SETS, NODES, PODS, Client, Invalid, NotFound
from control.controllers._daemonset import should_run, target_node
from tests.unit.controllers.controllers_kit import cluster, eventually, run, set_pod_status


def daemon_set(name: str = "agent", image: str = "agent:1", **spec: Any) -> dict[str, Any]:
    template_spec = {"containers": [{"name": "c", "image": image}], **spec.pop("pod", {})}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec}, **spec}}


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
         ) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []}}


async def pods(client: Client, name: str = "agent") -> list[dict[str, Any]]:
    listed = await client.list(PODS, namespace="default", label_selector=f"app={name}")
    return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]


def by_node(items: list[dict[str, Any]]) -> dict[str, str]:
    return {str(target_node(p)): p["metadata"]["labels"]["controller-revision-hash"] for p in items}


async def status(client: Client, name: str = "agent") -> dict[str, Any]:
    return dict((await client.get(DAEMON_SETS, name, namespace="default")).get("status") or {})


def test_defaults_and_validation() -> None:
    obj = daemon_set()
    default("DaemonSet", obj)
    assert obj["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert obj["spec"]["revisionHistoryLimit"] == 10
    assert validate("DaemonSet", obj) == []
    both = daemon_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
                      pod={"restartPolicy": "Never"})
    default("DaemonSet", both)
    assert [(e.field, e.message) for e in validate("DaemonSet", both)] == [
        ("spec.template.spec.restartPolicy", 'Unsupported value: "Never": supported values: "Always"'),
        ("spec.updateStrategy.rollingUpdate.maxSurge", "Invalid value: 1: may not be set when maxUnavailable is "
                                                       "non-zero")]
    neither = daemon_set(updateStrategy={"type": "RollingUpdate",
                                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}})
    default("DaemonSet", neither)
    assert [(e.field, e.message) for e in validate("DaemonSet", neither)] == [
        ("spec.updateStrategy.rollingUpdate.maxUnavailable", "Required value: cannot be 0 when maxSurge is 0")]
    odd = daemon_set(updateStrategy={"type": "Recreate"})
    default("DaemonSet", odd)
    assert [e.message for e in validate("DaemonSet", odd)] == [
        'Unsupported value: "Recreate": supported values: "OnDelete", "RollingUpdate"']


def test_eligibility_selector_affinity_taints() -> None:
    plain: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}]}
    assert should_run(plain, node("a")) == (True, True)
    assert should_run({**plain, "nodeSelector": {"disk": "ssd"}}, node("a")) == (False, False)
    assert should_run({**plain, "nodeSelector": {"disk": "ssd"}}, node("a", {"disk": "ssd"})) == (True, True)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}]}}}
    assert should_run({**plain, "affinity": affinity}, node("a", {"zone": "z2"})) == (True, True)
    assert should_run({**plain, "affinity": affinity}, node("a", {"zone": "z3"})) == (False, False)
    assert should_run({**plain, "affinity": affinity}, node("special")) == (True, True)
    no_schedule = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    no_execute = [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]
    # An untolerated NoSchedule taint stops new pods but keeps a running one; NoExecute removes it.
    assert should_run(plain, node("a", taints=no_schedule)) == (False, True)
    assert should_run(plain, node("a", taints=no_execute)) == (False, False)
    tolerant = {**plain, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}
    assert should_run(tolerant, node("a", taints=no_execute)) == (True, True)
    # The daemon tolerations: a cordoned or not-ready node keeps its daemons.
    cordoned = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]
    assert should_run(plain, node("a", taints=cordoned)) == (True, True)


def test_one_pod_per_eligible_node_pinned_by_affinity(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "daemonset") as (_, admin):
            for n in (node("w1", {"role": "worker"}), node("w2", {"role": "worker"}),
                      node("cp", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])):
                await admin.create(NODES, n)
            with pytest.raises(Invalid, match=r"spec\.updateStrategy\.type"):
                await admin.create(DAEMON_SETS, daemon_set(updateStrategy={"type": "Sometimes"}),
                                   namespace="default")
            await admin.create(DAEMON_SETS, daemon_set(), namespace="default")
            made = await eventually(lambda: _count(admin, 2), what="a pod on each worker")
            assert sorted(by_node(made)) == ["w1", "w2"]  # not on the tainted control-plane node
            pod = made[0]
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
            terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert terms == {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [target_node(pod)]}]}]}
            assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"} in \
                pod["spec"]["tolerations"]
            st = await eventually(lambda: _status_is(admin, desiredNumberScheduled=2, currentNumberScheduled=2,
                                                     numberReady=0, numberUnavailable=2), what="status")
            assert st["observedGeneration"] == 1
            for p in made:
                await set_pod_status(admin, p)
            await eventually(lambda: _status_is(admin, numberReady=2, numberAvailable=2, updatedNumberScheduled=2),
                             what="ready status")
            # A third node joins: it gets a pod; a node that gets an untolerated NoExecute taint loses its pod.
            await admin.create(NODES, node("w3"))
            await eventually(lambda: _count(admin, 3), what="a pod on the new node")
            await admin.patch(NODES, "w1", {"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}})
            remaining = await eventually(lambda: _count(admin, 2), what="w1's pod removed")
            assert sorted(by_node(remaining)) == ["w2", "w3"]
            await eventually(lambda: _status_is(admin, desiredNumberScheduled=2), what="desired 2")
            # A deleted pod comes back on its node.
            victim = next(p for p in remaining if target_node(p) == "w2")
            await admin.delete(PODS, victim["metadata"]["name"], namespace="default")
            back = await eventually(lambda: _count(admin, 2, exclude=victim["metadata"]["name"]), what="re-made")
            assert sorted(by_node(back)) == ["w2", "w3"]

    run(main)


def test_rolling_update_one_node_at_a_time_history_and_undo(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "daemonset") as (_, admin):
            for name in ("w1", "w2", "w3"):
                await admin.create(NODES, node(name))
            # A tainted node without a daemon pod must not eat the rollout's unavailability budget.
            await admin.create(NODES, node("cp", taints=[{"key": "node-role.kubernetes.io/control-plane",
                                                          "effect": "NoSchedule"}]))
            await admin.create(DAEMON_SETS, daemon_set(), namespace="default")
            first = await eventually(lambda: _count(admin, 3), what="three pods")
            old_hash = set(by_node(first).values())
            assert len(old_hash) == 1
            for p in first:
                await set_pod_status(admin, p)
            await eventually(lambda: _status_is(admin, numberAvailable=3), what="available")
            await _set_image(admin, "agent:2")
            # maxUnavailable 1: one old pod goes, its replacement comes; nothing more until it is Ready.
            step = await eventually(lambda: _hashes(admin, new=1, old=2, excluding=old_hash), what="first replaced")
            await eventually(lambda: _status_is(admin, updatedNumberScheduled=1, numberAvailable=2,
                                                observedGeneration=2), what="status mid-rollout")
            assert len(await pods(admin)) == 3
            assert step is not None
            # Each replacement that becomes Ready lets the next old pod go, until every node runs the new one.
            await eventually(lambda: _ready_all_then(admin, lambda: _hashes(admin, new=3, old=0, excluding=old_hash)),
                             what="all replaced")
            await eventually(lambda: _ready_all_then(admin, lambda: _status_is(
                admin, updatedNumberScheduled=3, numberAvailable=3)), what="done")
            revisions = await _revisions(admin)
            assert [r["revision"] for r in revisions] == [1, 2]
            assert revisions[0]["data"]["spec"]["template"]["$patch"] == "replace"
            assert revisions[0]["metadata"]["labels"]["app"] == "agent"  # the DaemonSet's selector lists them
            # kubectl rollout undo: the old revision's data as a strategic merge patch.
            await admin.patch(DAEMON_SETS, "agent", revisions[0]["data"], namespace="default",
                              patch_type="strategic")
            ds = await admin.get(DAEMON_SETS, "agent", namespace="default")
            assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:1"
            renumbered = await eventually(lambda: _revision_numbers(admin, {revisions[0]["metadata"]["name"]: 3,
                                                                            revisions[1]["metadata"]["name"]: 2}),
                                          what="the old revision renumbered as the newest")
            assert renumbered

    run(main)


def test_surge_starts_the_new_pod_beside_the_old_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "daemonset") as (_, admin):
            await admin.create(NODES, node("w1"))
            surge = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
            await admin.create(DAEMON_SETS, daemon_set(updateStrategy=surge), namespace="default")
            (old,) = await eventually(lambda: _count(admin, 1), what="one pod")
            await set_pod_status(admin, old)
            await eventually(lambda: _status_is(admin, numberAvailable=1), what="available")
            await _set_image(admin, "agent:2")
            both = await eventually(lambda: _count(admin, 2), what="the new pod beside the old")
            new = next(p for p in both if p["metadata"]["name"] != old["metadata"]["name"])
            await set_pod_status(admin, new)
            (left,) = await eventually(lambda: _count(admin, 1, exclude=old["metadata"]["name"]), what="old gone")
            assert left["metadata"]["name"] == new["metadata"]["name"]

    run(main)


def test_on_delete_replaces_only_deleted_pods(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "daemonset") as (_, admin):
            for name in ("w1", "w2"):
                await admin.create(NODES, node(name))
            await admin.create(DAEMON_SETS, daemon_set(updateStrategy={"type": "OnDelete"}), namespace="default")
            first = await eventually(lambda: _count(admin, 2), what="two pods")
            old_hash = set(by_node(first).values())
            await _set_image(admin, "agent:2")
            await eventually(lambda: _status_is(admin, observedGeneration=2, updatedNumberScheduled=0),
                             what="observed, nothing replaced")
            assert {p["metadata"]["name"] for p in await pods(admin)} == {p["metadata"]["name"] for p in first}
            await admin.delete(PODS, first[0]["metadata"]["name"], namespace="default")
            await eventually(lambda: _hashes(admin, new=1, old=1, excluding=old_hash), what="only the deleted one")

    run(main)


# --- helpers ---------------------------------------------------------------------------------------

async def _set_image(admin: Client, image: str) -> None:
    await admin.patch(DAEMON_SETS, "agent", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": image}]}}}}, namespace="default", patch_type="strategic")


async def _count(admin: Client, n: int, exclude: str | None = None) -> list[dict[str, Any]] | None:
    items = await pods(admin)
    if exclude is not None and any(p["metadata"]["name"] == exclude for p in items):
        return None
    return items if len(items) == n else None


async def _status_is(admin: Client, **want: Any) -> dict[str, Any] | None:
    st = await status(admin)
    return st if all(st.get(k, 0) == v for k, v in want.items()) else None


async def _hashes(admin: Client, *, new: int, old: int, excluding: set[str]) -> list[dict[str, Any]] | None:
    items = await pods(admin)
    fresh = [p for p in items if p["metadata"]["labels"]["controller-revision-hash"] not in excluding]
    return items if len(fresh) == new and len(items) - len(fresh) == old else None


async def _ready_all_then(admin: Client, check: Callable[[], Awaitable[Any]]) -> Any:
    """Plays the kubelet for every pod not yet Ready, then asks CHECK."""
    for p in await pods(admin):
        if not any(c.get("type") == "Ready" for c in (p.get("status") or {}).get("conditions") or []):
            with contextlib.suppress(NotFound):  # the controller may be replacing it
                await set_pod_status(admin, p)
    return await check()


async def _revisions(admin: Client) -> list[dict[str, Any]]:
    listed = await admin.list(CONTROLLER_REVISIONS, namespace="default", label_selector="app=agent")
    return sorted(listed["items"], key=lambda r: r["revision"])


async def _revision_numbers(admin: Client, want: dict[str, int]) -> bool:
    got = {r["metadata"]["name"]: r["revision"] for r in await _revisions(admin)}
    return got == want


def test_deleting_the_daemon_set_collects_its_pods_and_revisions(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "daemonset", "garbagecollector") as (_, admin):
            await admin.create(NODES, node("w1"))
            await admin.create(DAEMON_SETS, daemon_set(), namespace="default")
            await eventually(lambda: _count(admin, 1), what="a pod")
            assert await _revisions(admin)
            await admin.delete(DAEMON_SETS, "agent", namespace="default", propagation_policy="Background")
            await eventually(lambda: _none(pods(admin)), what="its pod collected")
            await eventually(lambda: _none(_revisions(admin)), what="its revisions collected")

    run(main)


async def _none(items: Awaitable[list[dict[str, Any]]]) -> bool:
    return not await items
