"""StatefulSets (apps/v1): pods with stable ordinal names and identities (pkg/controller/statefulset).

Pod i of StatefulSet web is web-i (from spec.ordinals.start), with hostname web-i and subdomain
spec.serviceName, so a headless Service of that name gives each one the DNS name
web-i.<service>.<namespace>.svc (the EndpointSlice controller copies the hostname, DNS serves it). A deleted
pod comes back with the same name. Labels: the template's, statefulset.kubernetes.io/pod-name,
apps.kubernetes.io/pod-index and controller-revision-hash (the name of the ControllerRevision it was made
from: control.controllers._history).

podManagementPolicy OrderedReady creates pods one by one in ordinal order, each after the previous one is
Running and Ready, and removes surplus pods one by one from the highest ordinal; Parallel does all at once.
RollingUpdate replaces pods from the highest ordinal down to spec.updateStrategy.rollingUpdate.partition,
one at a time, each after the rest are Running and Ready; pods below the partition are (re)made from the
current revision. OnDelete makes a pod from the new revision only when someone deletes the old one.

volumeClaimTemplates: the claim <template>-<pod> is made before the pod and mounted in place of the
template's volume of that name; it outlives the pod, so a pod made again under the same name finds its
storage. persistentVolumeClaimRetentionPolicy as upstream (updateClaimOwnerRefForSetAndPod): by default
(Retain, Retain) claims stay forever; whenDeleted Delete makes the set the claims' controller (the garbage
collector deletes them with it); whenScaled Delete makes a condemned pod (scaled away) their controller,
so they go with it.

Not built: adopting orphan pods, maxUnavailable above 1 (an alpha gate upstream), minReadySeconds for
availability during updates (it only counts in status.availableReplicas).
"""

from __future__ import annotations

import copy
import re
from typing import ClassVar

from control.api.meta import labels_of, meta, name_of, namespace_of, uid_of
from control.client import (
    CONTROLLER_REVISIONS,
    PERSISTENT_VOLUME_CLAIMS,
    PODS,
    STATEFUL_SETS,
    AlreadyExists,
    ApiError,
    Conflict,
    NotFound,
    Resource,
)
from control.controllers._base import OWNER_INDEX, Context, Controller
from control.controllers._history import REVISION_HASH, Collision, History, template_of
from control.controllers._util import (
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    key_of,
    make_controller_ref,
    pod_phase,
    selector_matches,
    split_key,
)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(sts_name: str, pod: JsonObject) -> int | None:
    """getParentNameAndOrdinal: the N of <sts>-N, None for a pod not named so."""
    match = re.fullmatch(rf"{re.escape(sts_name)}-(0|[1-9][0-9]*)", name_of(pod))
    return int(match.group(1)) if match else None


def _retention(sts: JsonObject) -> tuple[str, str]:
    """(whenDeleted, whenScaled) of persistentVolumeClaimRetentionPolicy, Retain by default."""
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return str(policy.get("whenDeleted") or "Retain"), str(policy.get("whenScaled") or "Retain")


def running_and_ready(pod: JsonObject) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def revision_of(pod: JsonObject) -> str:
    return str(labels_of(pod).get(REVISION_HASH, ""))


class StatefulSetController(Controller):
    name: ClassVar[str] = "statefulset"
    component: ClassVar[str] = "statefulset-controller"
    kind: ClassVar[str] = "StatefulSet"
    api_version: ClassVar[str] = "apps/v1"
    primary: ClassVar[Resource | None] = STATEFUL_SETS
    resources: ClassVar[tuple[Resource, ...]] = (STATEFUL_SETS, PODS, CONTROLLER_REVISIONS, PERSISTENT_VOLUME_CLAIMS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.history = History(self, self.kind, self.api_version)

    # --- handlers: enqueue only ------------------------------------------------------------------

    def register(self) -> None:
        self.informer(STATEFUL_SETS).add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        self.informer(PODS).add_handler(on_add=self._pod_event, on_update=lambda old, new: self._pod_event(new),
                                        on_delete=self._pod_event)

    def _pod_event(self, pod: JsonObject) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return
        sts = self.informer(STATEFUL_SETS).store.get(str(ref.get("name")), namespace_of(pod))
        if sts is not None and uid_of(sts) == ref.get("uid"):
            self.enqueue(sts)

    # --- sync ------------------------------------------------------------------------------------

    def _pods(self, sts: JsonObject) -> dict[int, JsonObject]:
        selector = (sts.get("spec") or {}).get("selector")
        pods: dict[int, JsonObject] = {}
        for pod in self.informer(PODS).store.by_index(OWNER_INDEX, uid_of(sts)):
            if (controller_ref(pod) or {}).get("uid") != uid_of(sts) or not selector_matches(selector,
                                                                                            labels_of(pod)):
                continue
            ordinal = ordinal_of(name_of(sts), pod)
            if ordinal is not None:
                pods[ordinal] = pod
        return pods

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.informer(STATEFUL_SETS).store.get(name, namespace)
        if cached is None or is_deleting(cached):
            return
        sts = deepcopy(cached)
        revisions = self.history.owned(sts)
        try:
            update = await self.history.current(sts, revisions)
        except Collision:
            body = deepcopy(sts)
            body.setdefault("status", {})["collisionCount"] = int(
                (sts.get("status") or {}).get("collisionCount") or 0) + 1
            await self.client.update_status(STATEFUL_SETS, body, namespace=namespace_of(sts))
            raise
        wanted_current = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if name_of(r) == wanted_current), update)
        pods = self._pods(sts)
        error: Exception | None = None
        try:
            await self._reconcile(sts, pods, name_of(current), template_of(current), name_of(update))
        except Exception as exc:  # still record status, then retry
            error = exc
        await self._update_status(sts, pods, name_of(current), name_of(update))
        live = {name_of(current), name_of(update)} | {revision_of(p) for p in pods.values()}
        await self.history.truncate(sts, [r for r in revisions if name_of(r) != name_of(update)], live)
        if error is not None:
            raise error

    async def _reconcile(self, sts: JsonObject, pods: dict[int, JsonObject], current: str,
                         current_template: JsonObject, update: str) -> None:
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1) or 0)
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        wanted = range(start, start + replicas)
        # Make (or remake) the pods in ordinal order.
        for ordinal in wanted:
            pod = pods.get(ordinal)
            if pod is None:
                await self._create(sts, ordinal, current, current_template, update)
                if ordered:
                    return
                continue
            if pod_phase(pod) in ("Failed", "Succeeded") and not is_deleting(pod):
                # A pod that ended is deleted and made again under the same name (upstream: "recreating").
                await self._delete(sts, pod)
                if ordered:
                    return
                continue
            if ordered and (is_deleting(pod) or not running_and_ready(pod)):
                return  # each pod waits for its predecessors to be Running and Ready
        # Remove the surplus from the highest ordinal down.
        condemned = sorted((o for o in pods if o not in wanted), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if is_deleting(pod):
                if ordered:
                    return
                continue
            if ordered and any(not running_and_ready(pods[o]) for o in wanted if o in pods):
                return
            await self._own_claims_by(sts, pod)
            await self._delete(sts, pod)
            if ordered:
                return
        if condemned:
            return
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        # One pod at a time, highest ordinal first, down to the partition; only while everything is healthy.
        for ordinal in sorted(wanted, reverse=True):
            if ordinal < start + partition:
                break
            pod = pods.get(ordinal)
            if pod is None:
                return  # just made: wait for it
            if revision_of(pod) != update and not is_deleting(pod):
                self.log.info("StatefulSet %s: updating pod %s to revision %s", key_of(sts), name_of(pod), update)
                await self._delete(sts, pod)
                return
            if is_deleting(pod) or not running_and_ready(pod):
                return

    # --- pods ------------------------------------------------------------------------------------

    def pod_for_ordinal(self, sts: JsonObject, ordinal: int, template: JsonObject, revision: str) -> JsonObject:
        """newStatefulSetPod: the template named <sts>-<ordinal>, its identity and its revision."""
        name = f"{name_of(sts)}-{ordinal}"
        tmeta = template.get("metadata") or {}
        pod_meta: JsonObject = {"name": name, "namespace": namespace_of(sts),
                                "ownerReferences": [make_controller_ref(sts, self.api_version, self.kind)]}
        for field in ("labels", "annotations", "finalizers"):
            if tmeta.get(field):
                pod_meta[field] = copy.deepcopy(tmeta[field])
        labels = pod_meta.setdefault("labels", {})
        labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_HASH: revision})
        spec = deepcopy(template.get("spec") or {})
        spec["hostname"] = name
        service = (sts.get("spec") or {}).get("serviceName")
        if service:
            spec["subdomain"] = service
        claims = (sts.get("spec") or {}).get("volumeClaimTemplates") or []
        if claims:
            volumes = [v for v in spec.get("volumes") or []
                       if v.get("name") not in {(c.get("metadata") or {}).get("name") for c in claims}]
            for claim in claims:
                claim_name = (claim.get("metadata") or {}).get("name")
                volumes.append({"name": claim_name,
                                "persistentVolumeClaim": {"claimName": f"{claim_name}-{name}"}})
            spec["volumes"] = volumes
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}

    async def _create(self, sts: JsonObject, ordinal: int, current: str, current_template: JsonObject,
                      update: str) -> None:
        """newVersionedStatefulSetPod: below the partition a pod is made from the current revision."""
        spec = sts.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and ordinal < start + partition:
            body = self.pod_for_ordinal(sts, ordinal, current_template, current)
        else:
            body = self.pod_for_ordinal(sts, ordinal, spec.get("template") or {}, update)
        await self._create_claims(sts, name_of(body))
        try:
            await self.client.create(PODS, body, namespace=namespace_of(sts))
        except AlreadyExists:
            return  # our cache is behind; the pod's event brings us back
        except ApiError as exc:
            self.event(sts, "FailedCreate", f"create Pod {name_of(body)} in StatefulSet {name_of(sts)} failed "
                                            f"error: {exc.message}", warning=True)
            raise
        self.event(sts, "SuccessfulCreate", f"create Pod {name_of(body)} in StatefulSet {name_of(sts)} successful")

    async def _create_claims(self, sts: JsonObject, pod_name: str) -> None:
        for claim in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            body = deepcopy(claim)
            claim_meta = body.setdefault("metadata", {})
            claim_meta["name"] = f"{claim_meta.get('name')}-{pod_name}"
            claim_meta["namespace"] = namespace_of(sts)
            if _retention(sts)[0] == "Delete":
                claim_meta["ownerReferences"] = [make_controller_ref(sts, self.api_version, self.kind)]
            labels = claim_meta.setdefault("labels", {})
            labels.update(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
            body.update({"apiVersion": "v1", "kind": "PersistentVolumeClaim"})
            body.pop("status", None)
            try:
                await self.client.create(PERSISTENT_VOLUME_CLAIMS, body, namespace=namespace_of(sts))
            except AlreadyExists:
                continue  # claims outlive their pods: the next pod of this ordinal reuses it

    async def _own_claims_by(self, sts: JsonObject, pod: JsonObject) -> None:
        """whenScaled Delete: a condemned pod becomes its claims' controller, so they go with it."""
        if _retention(sts)[1] != "Delete":
            return
        for claim in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            name = f"{(claim.get('metadata') or {}).get('name')}-{name_of(pod)}"
            cached = self.informer(PERSISTENT_VOLUME_CLAIMS).store.get(name, namespace_of(sts))
            if cached is None or any(r.get("uid") == uid_of(pod) for r in meta(cached).get("ownerReferences") or []):
                continue
            body = deepcopy(cached)
            refs = [r for r in meta(body).get("ownerReferences") or [] if r.get("uid") != uid_of(sts)]
            if any(r.get("controller") for r in refs):
                continue  # someone else controls it: left alone, as upstream (hasUnexpectedController)
            meta(body)["ownerReferences"] = [*refs, make_controller_ref(pod, "v1", "Pod")]
            try:
                await self.client.update(PERSISTENT_VOLUME_CLAIMS, body, namespace=namespace_of(sts))
            except (NotFound, Conflict):
                continue

    async def _delete(self, sts: JsonObject, pod: JsonObject) -> None:
        try:
            await self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod),
                                     preconditions={"uid": uid_of(pod)})
        except NotFound:
            return
        self.event(sts, "SuccessfulDelete", f"delete Pod {name_of(pod)} in StatefulSet {name_of(sts)} successful")

    # --- status ----------------------------------------------------------------------------------

    async def _update_status(self, sts: JsonObject, pods: dict[int, JsonObject], current: str, update: str) -> None:
        spec = sts.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.ctx.now()
        counts = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0,
                  "updatedReplicas": 0}
        for pod in pods.values():
            counts["replicas"] += 1
            if running_and_ready(pod):
                counts["readyReplicas"] += 1
                if is_pod_available(pod, min_ready, now):
                    counts["availableReplicas"] += 1
            if not is_deleting(pod):
                counts["currentReplicas"] += revision_of(pod) == current
                counts["updatedReplicas"] += revision_of(pod) == update
        status = deepcopy(sts.get("status") or {})
        status.update(counts)
        status.update({"observedGeneration": meta(sts).get("generation", 1), "currentRevision": current,
                       "updateRevision": update, "collisionCount": int(status.get("collisionCount") or 0)})
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if (strategy == "RollingUpdate" and counts["updatedReplicas"] == counts["replicas"]
                and counts["readyReplicas"] == counts["replicas"]):
            # completeRollingUpdate: every pod runs the update revision, which becomes the current one.
            status["currentRevision"] = update
            status["currentReplicas"] = counts["updatedReplicas"]
        if min_ready > 0 and counts["readyReplicas"] != counts["availableReplicas"]:
            self.queue.add_after(key_of(sts), min(float(min_ready), self.options.max_requeue))
        await self.write_status(STATEFUL_SETS, sts, status)


__all__ = ["POD_INDEX_LABEL", "POD_NAME_LABEL", "StatefulSetController", "ordinal_of"]
