"""DaemonSets (apps/v1): one pod of the template on every eligible node (pkg/controller/daemon).

A node is eligible when the template's nodeName (if any), nodeSelector and required node affinity match
it and the pod tolerates its NoSchedule and NoExecute taints; an untolerated NoSchedule taint only stops new
pods (a running one stays), an untolerated NoExecute one removes it. Every daemon pod tolerates the
not-ready / unreachable / pressure / unschedulable taints as upstream adds them (so a cordoned node keeps
its daemons), and is pinned to its node by a required node affinity on metadata.name, replacing the
template's terms: the scheduler binds it there (and honours taints, ports and resources on the way).

Updates: each template is a ControllerRevision (control.controllers._history); pods carry its hash as
controller-revision-hash. RollingUpdate replaces pods node by node, at most maxUnavailable unavailable at a
time (maxSurge 0), or, with maxSurge, starts the new pod beside the old one and deletes the old one once the
new one is available; OnDelete replaces a pod only when someone deletes it.

Not built: adopting orphan pods and releasing ours whose labels changed (upstream's ControllerRefManager),
the failed-pod back-off (a failed daemon pod is deleted and made again at once), and the deprecated
templateGeneration / pod-template-generation.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any, ClassVar

from control.api.meta import labels_of, meta, name_of, namespace_of, uid_of
from control.client import CONTROLLER_REVISIONS, DAEMON_SETS, NODES, PODS, ApiError, NotFound, Resource
from control.controllers._base import OWNER_INDEX, Context, Controller, Expectations
from control.controllers._history import REVISION_HASH, Collision, History
from control.controllers._util import (
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    key_of,
    make_controller_ref,
    parse_time,
    pod_phase,
    scaled_value,
    selector_matches,
    split_key,
)

# util.AddOrUpdateDaemonPodTolerations: what every daemon pod tolerates, whatever its template says.
DAEMON_TOLERATIONS: tuple[JsonObject, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION: JsonObject = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                                       "effect": "NoSchedule"}


# --- which nodes ---------------------------------------------------------------------------------

def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("key") and toleration.get("key") != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def _requirement_matches(req: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    """A NodeSelectorRequirement against a node's labels (or, for matchFields, its metadata.name)."""
    key, operator = str(req.get("key", "")), req.get("operator")
    wanted = [str(v) for v in req.get("values") or []]
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            have, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def _term_matches(term: Mapping[str, Any], labels: Mapping[str, str], node_name: str) -> bool:
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches no node
    return (all(_requirement_matches(r, labels) for r in expressions)
            and all(_requirement_matches(r, {"metadata.name": node_name}) for r in fields))


def node_matches(pod_spec: Mapping[str, Any], node: JsonObject) -> bool:
    """The template's nodeName, nodeSelector and required node affinity (terms ORed) against NODE."""
    name, labels = name_of(node), labels_of(node)
    if pod_spec.get("nodeName") and pod_spec.get("nodeName") != name:
        return False
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(_term_matches(t, labels, name) for t in required.get("nodeSelectorTerms") or [])


def daemon_tolerations(pod_spec: Mapping[str, Any]) -> list[JsonObject]:
    tolerations = [dict(t) for t in pod_spec.get("tolerations") or []]
    extra = [*DAEMON_TOLERATIONS, *((HOST_NETWORK_TOLERATION,) if pod_spec.get("hostNetwork") else ())]
    for toleration in extra:
        if not any(t.get("key") == toleration["key"] and t.get("effect") == toleration["effect"]
                   for t in tolerations):
            tolerations.append(dict(toleration))
    return tolerations


def should_run(pod_spec: Mapping[str, Any], node: JsonObject) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (a new daemon pod should start there, an existing one may stay)."""
    if not node_matches(pod_spec, node):
        return False, False
    tolerations = daemon_tolerations(pod_spec)
    start = True
    for taint in (node.get("spec") or {}).get("taints") or []:
        effect = taint.get("effect")
        if effect not in ("NoSchedule", "NoExecute") or any(tolerates(t, taint) for t in tolerations):
            continue
        if effect == "NoExecute":
            return False, False
        start = False
    return start, True


def target_node(pod: JsonObject) -> str | None:
    """util.GetTargetNodeName: the node a pod is bound to, else the one its metadata.name affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and len(req.get("values") or []) == 1:
                return str(req["values"][0])
    return None


def _created(pod: JsonObject) -> tuple[float, str]:
    return (parse_time(meta(pod).get("creationTimestamp")) or 0.0, name_of(pod))


# --- the controller ------------------------------------------------------------------------------

class DaemonSetController(Controller):
    name: ClassVar[str] = "daemonset"
    component: ClassVar[str] = "daemonset-controller"
    kind: ClassVar[str] = "DaemonSet"
    api_version: ClassVar[str] = "apps/v1"
    primary: ClassVar[Resource | None] = DAEMON_SETS
    resources: ClassVar[tuple[Resource, ...]] = (DAEMON_SETS, PODS, NODES, CONTROLLER_REVISIONS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.expectations = Expectations(ctx.options.expectations_timeout)
        self.history = History(self, self.kind, self.api_version)

    # --- handlers: enqueue only ------------------------------------------------------------------

    def register(self) -> None:
        self.informer(DAEMON_SETS).add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                               on_delete=self._ds_deleted)
        self.informer(PODS).add_handler(on_add=self._pod_event, on_update=self._pod_updated,
                                        on_delete=self._pod_deleted)
        self.informer(NODES).add_handler(on_add=self._node_event, on_update=self._node_updated,
                                         on_delete=self._node_event)

    def _ds_deleted(self, ds: JsonObject) -> None:
        self.expectations.forget(key_of(ds))

    def _owner(self, pod: JsonObject) -> JsonObject | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return None
        ds = self.informer(DAEMON_SETS).store.get(str(ref.get("name")), namespace_of(pod))
        return ds if ds is not None and uid_of(ds) == ref.get("uid") else None

    def _pod_event(self, pod: JsonObject) -> None:
        ds = self._owner(pod)
        if ds is not None:
            self.expectations.creation_observed(key_of(ds))
            self.enqueue(ds)

    def _pod_updated(self, old: JsonObject, new: JsonObject) -> None:
        ds = self._owner(new)
        if ds is None:
            return
        if is_deleting(new) and not is_deleting(old):
            self.expectations.deletion_observed(key_of(ds), key_of(new))
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
            self.queue.add_after(key_of(ds), min_ready + 1)
        self.enqueue(ds)

    def _pod_deleted(self, pod: JsonObject) -> None:
        ds = self._owner(pod)
        if ds is not None:
            self.expectations.deletion_observed(key_of(ds), key_of(pod))
            self.enqueue(ds)

    def _node_event(self, node: JsonObject) -> None:
        for ds in self.informer(DAEMON_SETS).store.list():
            self.enqueue(ds)

    def _node_updated(self, old: JsonObject, new: JsonObject) -> None:
        # Only what decides eligibility matters: labels, taints (heartbeats change nothing here).
        if labels_of(old) != labels_of(new) or (old.get("spec") or {}) != (new.get("spec") or {}):
            self._node_event(new)

    # --- sync ------------------------------------------------------------------------------------

    def _pods(self, ds: JsonObject) -> list[JsonObject]:
        selector = (ds.get("spec") or {}).get("selector")
        return [p for p in self.informer(PODS).store.by_index(OWNER_INDEX, uid_of(ds))
                if (controller_ref(p) or {}).get("uid") == uid_of(ds) and selector_matches(selector, labels_of(p))]

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.informer(DAEMON_SETS).store.get(name, namespace)
        if cached is None:
            self.expectations.forget(key)
            return
        ds = deepcopy(cached)
        if is_deleting(ds):
            return
        revisions = self.history.owned(ds)
        try:
            current = await self.history.current(ds, revisions)
        except Collision as exc:
            await self._bump_collision_count(ds)
            raise exc
        digest = str(labels_of(current).get(REVISION_HASH, ""))
        pods = self._pods(ds)
        nodes = {name_of(n): n for n in self.informer(NODES).store.list()}
        pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        eligibility = {n: should_run(pod_spec, node) for n, node in nodes.items()}
        by_node: dict[str, list[JsonObject]] = {}
        for pod in pods:
            node_name = target_node(pod)
            if node_name is not None:
                by_node.setdefault(node_name, []).append(pod)
        error: Exception | None = None
        if self.expectations.satisfied(key):
            try:
                acted = await self._manage(ds, eligibility, by_node, digest)
                strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
                if not acted and strategy.get("type", "RollingUpdate") == "RollingUpdate":
                    await self._rolling_update(ds, eligibility, by_node, digest)
            except Exception as exc:  # still record status, then retry
                error = exc
        await self._update_status(ds, eligibility, by_node, digest)
        live = {name_of(current)} | {name_of(r) for r in revisions
                                     if any(labels_of(p).get(REVISION_HASH) == labels_of(r).get(REVISION_HASH)
                                            for p in pods)}
        await self.history.truncate(ds, [r for r in revisions if name_of(r) != name_of(current)], live)
        if error is not None:
            raise error

    def _surge(self, ds: JsonObject, desired: int) -> int:
        strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return 0
        return scaled_value((strategy.get("rollingUpdate") or {}).get("maxSurge"), desired, True)

    async def _manage(self, ds: JsonObject, eligibility: dict[str, tuple[bool, bool]],
                      by_node: dict[str, list[JsonObject]], digest: str) -> bool:
        """podsShouldBeOnNode over every node: which nodes need a pod, which pods must go. True if it acted."""
        desired = sum(1 for start, _ in eligibility.values() if start)
        surge = self._surge(ds, desired) > 0
        create: list[str] = []
        delete: list[JsonObject] = []
        for node_name, (start, stay) in eligibility.items():
            pods = [p for p in by_node.get(node_name, []) if not is_deleting(p)]
            if not stay:
                delete += pods
                continue
            failed = [p for p in pods if pod_phase(p) == "Failed"]
            delete += failed
            running = sorted((p for p in pods if pod_phase(p) != "Failed"), key=_created)
            if not running:
                if start:
                    create.append(node_name)
                continue
            if surge:
                # One old and one new pod may live side by side while the new one becomes available.
                new = [p for p in running if labels_of(p).get(REVISION_HASH) == digest]
                old = [p for p in running if labels_of(p).get(REVISION_HASH) != digest]
                delete += new[1:] + old[1:]
            else:
                delete += running[1:]
        for node_name, pods in by_node.items():
            if node_name not in eligibility:  # the node is gone
                delete += [p for p in pods if not is_deleting(p)]
        await self._sync_nodes(ds, delete, create, digest)
        return bool(create or delete)

    async def _rolling_update(self, ds: JsonObject, eligibility: dict[str, tuple[bool, bool]],
                              by_node: dict[str, list[JsonObject]], digest: str) -> None:
        """rollingUpdate (pkg/controller/daemon/update.go): which old pods to delete, where to surge."""
        spec = ds.get("spec") or {}
        rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.ctx.now()
        wanted = [n for n, (_, stay) in eligibility.items() if stay]
        desired = sum(1 for start, _ in eligibility.values() if start)
        max_surge = scaled_value(rolling.get("maxSurge"), desired, True)
        max_unavailable = scaled_value(rolling.get("maxUnavailable"), desired, True)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1  # upstream's guard against a stuck rollout
        delete: list[JsonObject] = []
        create: list[str] = []
        if max_surge == 0:
            unavailable = 0
            replaceable: list[JsonObject] = []
            candidates: list[JsonObject] = []
            for node_name in sorted(wanted):
                pods = [p for p in by_node.get(node_name, []) if not is_deleting(p)]
                new = [p for p in pods if labels_of(p).get(REVISION_HASH) == digest]
                old = [p for p in pods if labels_of(p).get(REVISION_HASH) != digest]
                if not pods:
                    # A node that should get a pod and has none yet counts as unavailable; one that merely
                    # may keep a pod (an untolerated NoSchedule taint) and has none costs nothing.
                    unavailable += 1 if eligibility[node_name][0] else 0
                elif (new and old) or len(new) > 1 or len(old) > 1:
                    unavailable += 1
                elif new:
                    if not is_pod_available(new[0], min_ready, now):
                        unavailable += 1
                elif not is_pod_available(old[0], min_ready, now):
                    replaceable.append(old[0])  # already unavailable: replacing it costs nothing
                else:
                    candidates.append(old[0])
            budget = max(0, min(max_unavailable - unavailable, len(candidates)))
            delete = replaceable + candidates[:budget]
        else:
            surged = 0
            for node_name in sorted(wanted):
                pods = [p for p in by_node.get(node_name, []) if not is_deleting(p)]
                new = [p for p in pods if labels_of(p).get(REVISION_HASH) == digest]
                old = [p for p in pods if labels_of(p).get(REVISION_HASH) != digest]
                if not old:
                    continue
                if not new:
                    if not is_pod_available(old[0], min_ready, now):
                        create.append(node_name)
                    elif surged < max_surge:
                        surged += 1
                        create.append(node_name)
                elif not is_pod_available(new[0], min_ready, now):
                    surged += 1
                else:
                    delete += old
        await self._sync_nodes(ds, delete, create, digest)

    # --- pods ------------------------------------------------------------------------------------

    def pod_for_node(self, ds: JsonObject, node_name: str, digest: str) -> JsonObject:
        """The template as a pod of this DaemonSet on NODE_NAME: the revision's hash label, the daemon
        tolerations, and a required node affinity naming just that node (ReplaceDaemonSetPodNodeNameNodeAffinity)."""
        template = (ds.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        pod_meta: JsonObject = {"generateName": f"{name_of(ds)}-", "namespace": namespace_of(ds),
                                "ownerReferences": [make_controller_ref(ds, self.api_version, self.kind)]}
        for field in ("labels", "annotations", "finalizers"):
            if tmeta.get(field):
                pod_meta[field] = copy.deepcopy(tmeta[field])
        pod_meta.setdefault("labels", {})[REVISION_HASH] = digest
        spec = deepcopy(template.get("spec") or {})
        spec["tolerations"] = daemon_tolerations(spec)
        affinity = spec.setdefault("affinity", {})
        node_affinity = affinity.setdefault("nodeAffinity", {})
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}

    async def _sync_nodes(self, ds: JsonObject, delete: list[JsonObject], create: list[str], digest: str) -> None:
        if not delete and not create:
            return
        key = key_of(ds)
        self.expectations.expect(key, adds=len(create), deletes=[key_of(p) for p in delete])

        async def make(node_name: str) -> None:
            try:
                created = await self.client.create(PODS, self.pod_for_node(ds, node_name, digest),
                                                   namespace=namespace_of(ds))
            except Exception as exc:
                self.expectations.creation_observed(key)
                if isinstance(exc, ApiError):
                    self.event(ds, "FailedCreate", f"Error creating: {exc.message}", warning=True)
                raise
            self.event(ds, "SuccessfulCreate", f"Created pod: {name_of(created)}")

        async def remove(pod: JsonObject) -> None:
            try:
                await self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod),
                                         preconditions={"uid": uid_of(pod)})
            except Exception as exc:
                self.expectations.deletion_observed(key, key_of(pod))
                if isinstance(exc, NotFound):
                    return
                raise
            self.event(ds, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")

        results = await asyncio.gather(*(make(n) for n in create), *(remove(p) for p in delete),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # --- status ----------------------------------------------------------------------------------

    async def _update_status(self, ds: JsonObject, eligibility: dict[str, tuple[bool, bool]],
                             by_node: dict[str, list[JsonObject]], digest: str) -> None:
        spec = ds.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.ctx.now()
        desired = current = misscheduled = ready = updated = available = 0
        for node_name in set(eligibility) | set(by_node):
            start, stay = eligibility.get(node_name, (False, False))
            pods = sorted((p for p in by_node.get(node_name, []) if not is_deleting(p)), key=_created)
            if start:
                desired += 1
            if not stay:
                misscheduled += 1 if pods else 0
                continue
            if not pods or not start:
                continue
            current += 1
            first = pods[0]
            if is_pod_ready(first):
                ready += 1
                if is_pod_available(first, min_ready, now):
                    available += 1
            if any(labels_of(p).get(REVISION_HASH) == digest for p in pods):
                updated += 1
        status = deepcopy(ds.get("status") or {})
        status.update({"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                       "numberMisscheduled": misscheduled, "numberReady": ready,
                       "updatedNumberScheduled": updated, "numberAvailable": available,
                       "observedGeneration": meta(ds).get("generation", 1)})
        if desired - available > 0:
            status["numberUnavailable"] = desired - available
        else:
            status.pop("numberUnavailable", None)  # omitempty
        if min_ready > 0 and ready != available:
            self.queue.add_after(key_of(ds), min(float(min_ready), self.options.max_requeue))
        await self.write_status(DAEMON_SETS, ds, status)

    async def _bump_collision_count(self, ds: JsonObject) -> None:
        body = deepcopy(ds)
        status = body.setdefault("status", {})
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        await self.client.update_status(DAEMON_SETS, body, namespace=namespace_of(ds))


__all__ = ["DaemonSetController", "node_matches", "should_run", "target_node", "tolerates"]
