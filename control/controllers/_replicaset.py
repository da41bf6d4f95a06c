"""ReplicaSet and ReplicationController: keep spec.replicas pods from spec.template running
(pkg/controller/replicaset; the ReplicationController is the same code over a map selector, as
upstream's replication controller wraps the ReplicaSet one).
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from control.api.meta import labels_of, meta, name_of, namespace_of, uid_of
from control.client import (
    PODS,
    REPLICA_SETS,
    REPLICATION_CONTROLLERS,
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    Resource,
)
from control.controllers._base import NAMESPACE_INDEX, OWNER_INDEX, Context, Controller, Expectations
from control.controllers._util import (
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    key_of,
    make_controller_ref,
    map_selector_matches,
    owner_refs,
    parse_time,
    pod_condition,
    pod_phase,
    restart_count,
    rfc3339,
    selector_matches,
    split_key,
)

# upstream's BurstReplicas: at most this many creations or deletions per sync.
BURST_REPLICAS = 500
# slowStartBatch starts with one pod and doubles, so a failing template costs one error, not 500.
SLOW_START_INITIAL_BATCH = 1


async def slow_start_batch(count: int, initial: int,
                           fn: Callable[[], Awaitable[None]]) -> tuple[int, int, Exception | None]:
    """Runs FN COUNT times in batches of 1, 2, 4, ... stopping after the first batch with an error.
    Returns (successes, failures, first error)."""
    remaining, batch, successes = count, min(count, initial), 0
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in errors:
            if not isinstance(r, Exception):
                raise r
        successes += batch - len(errors)
        if errors:
            first = errors[0]
            assert isinstance(first, Exception)
            return successes, len(errors), first
        remaining -= batch
        batch = min(remaining, 2 * batch)
    return successes, 0, None


def pod_deletion_order(pods: list[JsonObject], related: list[JsonObject]) -> list[JsonObject]:
    """The pods to delete first come first: controller.ActivePodsWithRanks' Less.

    unassigned < assigned; Pending < Unknown < Running; not ready < ready; more pods of related
    ReplicaSets on the same node < fewer; ready more recently < longer; more restarts < fewer;
    newer < older.
    """
    on_node = Counter((p.get("spec") or {}).get("nodeName") for p in related if (p.get("spec") or {}).get("nodeName"))
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}

    def key(pod: JsonObject) -> tuple[Any, ...]:
        node = (pod.get("spec") or {}).get("nodeName") or ""
        ready = is_pod_ready(pod)
        ready_since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime")) if ready else None
        created = parse_time(meta(pod).get("creationTimestamp"))
        return (
            1 if node else 0,
            phase_rank.get(pod_phase(pod), 0),
            1 if ready else 0,
            -on_node.get(node, 0) if node else 0,
            -(ready_since if ready_since is not None else float("inf")) if ready else 0.0,
            -restart_count(pod),
            -(created if created is not None else float("inf")),
        )

    return sorted(pods, key=key)


class ReplicaSetController(Controller):
    name: ClassVar[str] = "replicaset"
    component: ClassVar[str] = "replicaset-controller"
    kind: ClassVar[str] = "ReplicaSet"
    api_version: ClassVar[str] = "apps/v1"
    primary: ClassVar[Resource | None] = REPLICA_SETS
    resources: ClassVar[tuple[Resource, ...]] = (REPLICA_SETS, PODS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.expectations = Expectations(ctx.options.expectations_timeout)

    # --- selectors (overridden by the ReplicationController) -------------------------------------

    def matches(self, owner: JsonObject, labels: dict[str, str]) -> bool:
        return selector_matches((owner.get("spec") or {}).get("selector"), labels)

    def template_labels(self, owner: JsonObject) -> dict[str, str]:
        template = (owner.get("spec") or {}).get("template") or {}
        return dict(((template.get("metadata") or {}).get("labels")) or {})

    @property
    def owners(self) -> Resource:
        assert self.primary is not None
        return self.primary

    # --- handlers: enqueue only ------------------------------------------------------------------

    def register(self) -> None:
        self.informer(self.owners).add_handler(on_add=self.enqueue, on_update=self._owner_updated,
                                               on_delete=self._owner_deleted)
        self.informer(PODS).add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                        on_delete=self._pod_deleted)

    def _owner_updated(self, old: JsonObject, new: JsonObject) -> None:
        self.enqueue(new)

    def _owner_deleted(self, obj: JsonObject) -> None:
        self.expectations.forget(key_of(obj))
        self.enqueue(obj)

    def _resolve_ref(self, namespace: str, ref: dict[str, Any]) -> JsonObject | None:
        if ref.get("kind") != self.kind:
            return None
        owner = self.informer(self.owners).store.get(str(ref.get("name")), namespace)
        if owner is None or uid_of(owner) != ref.get("uid"):
            return None
        return owner

    def _matching_owners(self, pod: JsonObject) -> list[JsonObject]:
        labels = labels_of(pod)
        return [o for o in self.informer(self.owners).store.by_index(NAMESPACE_INDEX, namespace_of(pod))
                if self.matches(o, labels)]

    def _pod_added(self, pod: JsonObject) -> None:
        if is_deleting(pod):
            # On a restart the informer may show us a pod already being deleted: count it as gone.
            self._pod_deleted(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            owner = self._resolve_ref(namespace_of(pod), ref)
            if owner is not None:
                self.expectations.creation_observed(key_of(owner))
                self.enqueue(owner)
            return
        for owner in self._matching_owners(pod):
            self.enqueue(owner)

    def _pod_updated(self, old: JsonObject, new: JsonObject) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        if is_deleting(new) and not is_deleting(old):
            self._pod_deleted(new)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            owner = self._resolve_ref(namespace_of(old), old_ref)
            if owner is not None:
                self.enqueue(owner)
        if new_ref is not None:
            owner = self._resolve_ref(namespace_of(new), new_ref)
            if owner is not None:
                self.enqueue(owner)
                min_ready = int((owner.get("spec") or {}).get("minReadySeconds") or 0)
                if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                    # Available only minReadySeconds after Ready: look again then (upstream adds 1 s).
                    self.queue.add_after(key_of(owner), min_ready + 1)
            return
        if labels_of(old) != labels_of(new) or old_ref is not None:
            for owner in self._matching_owners(new):
                self.enqueue(owner)

    def _pod_deleted(self, pod: JsonObject) -> None:
        ref = controller_ref(pod)
        if ref is None:
            return
        owner = self._resolve_ref(namespace_of(pod), ref)
        if owner is None:
            return
        self.expectations.deletion_observed(key_of(owner), key_of(pod))
        self.enqueue(owner)

    # --- sync ------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        assert namespace is not None
        cached = self.informer(self.owners).store.get(name, namespace)
        if cached is None:
            self.expectations.forget(key)
            return
        owner = deepcopy(cached)
        needs_sync = self.expectations.satisfied(key) and not is_deleting(owner)
        pods = [p for p in self.owned_or_orphaned(PODS, owner) if is_pod_active(p)]
        pods = await self.claim_pods(owner, pods)
        manage_error: Exception | None = None
        if needs_sync:
            try:
                await self.manage_replicas(owner, pods)
            except Exception as exc:  # still record status, then retry
                manage_error = exc
        await self.update_status(owner, pods, manage_error)
        if manage_error is not None:
            raise manage_error

    async def claim_pods(self, owner: JsonObject, pods: list[JsonObject]) -> list[JsonObject]:
        """ControllerRefManager.ClaimPods: ours if our controllerRef points here and the selector still
        matches; release ours that no longer match; adopt matching orphans (not while we are deleted)."""
        claimed: list[JsonObject] = []
        uid = uid_of(owner)
        can_adopt: bool | None = None
        for pod in pods:
            ref = controller_ref(pod)
            labels = labels_of(pod)
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if self.matches(owner, labels):
                    claimed.append(pod)
                elif not is_deleting(owner):
                    await self._release(owner, pod)
                continue
            if is_deleting(owner) or is_deleting(pod) or not self.matches(owner, labels):
                continue
            if can_adopt is None:
                can_adopt = await self._can_adopt(owner)
            if can_adopt and await self._adopt(owner, pod):
                claimed.append(pod)
        return claimed

    async def _can_adopt(self, owner: JsonObject) -> bool:
        # RecheckDeletionTimestamp: the cache may be stale; never adopt for an owner that is going away.
        try:
            fresh = await self.client.get(self.owners, name_of(owner), namespace=namespace_of(owner))
        except NotFound:
            return False
        return uid_of(fresh) == uid_of(owner) and not is_deleting(fresh)

    async def _adopt(self, owner: JsonObject, pod: JsonObject) -> bool:
        refs = [*owner_refs(pod), make_controller_ref(owner, self.api_version, self.kind)]
        try:
            await self.client.patch(PODS, name_of(pod), {"metadata": {
                "ownerReferences": refs, "resourceVersion": meta(pod).get("resourceVersion")}},
                namespace=namespace_of(pod))
        except NotFound:
            return False
        self.log.info("%s %s adopted pod %s", self.kind, key_of(owner), name_of(pod))
        return True

    async def _release(self, owner: JsonObject, pod: JsonObject) -> None:
        refs = [r for r in owner_refs(pod) if r.get("uid") != uid_of(owner)]
        try:
            await self.client.patch(PODS, name_of(pod), {"metadata": {
                "ownerReferences": refs or None, "resourceVersion": meta(pod).get("resourceVersion")}},
                namespace=namespace_of(pod))
        except NotFound:
            return
        self.log.info("%s %s released pod %s (labels no longer match)", self.kind, key_of(owner), name_of(pod))

    def pod_from_template(self, owner: JsonObject) -> JsonObject:
        """controller.GetPodFromTemplate: the template's labels, annotations, finalizers and spec, named
        `<owner>-<random>` by the apiserver (generateName), controlled by the owner."""
        template = (owner.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        pod_meta: JsonObject = {
            "generateName": f"{name_of(owner)}-",
            "namespace": namespace_of(owner),
            "ownerReferences": [make_controller_ref(owner, self.api_version, self.kind)],
        }
        for field in ("labels", "annotations", "finalizers"):
            if tmeta.get(field):
                pod_meta[field] = copy.deepcopy(tmeta[field])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
                "spec": deepcopy(template.get("spec") or {})}

    async def manage_replicas(self, owner: JsonObject, pods: list[JsonObject]) -> None:
        key = key_of(owner)
        want = int((owner.get("spec") or {}).get("replicas", 1) or 0)
        diff = len(pods) - want
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect(key, adds=count)
            self.log.info("%s %s: too few replicas (%d of %d), creating %d", self.kind, key, len(pods), want, count)
            body = self.pod_from_template(owner)

            async def create() -> None:
                try:
                    created = await self.client.create(PODS, body, namespace=namespace_of(owner))
                except Forbidden as exc:
                    self.expectations.creation_observed(key)
                    if "being terminated" in exc.message:
                        return  # the namespace is going away: nothing to do (upstream ignores it too)
                    self.event(owner, "FailedCreate", f"Error creating: {exc.message}", warning=True)
                    raise
                except ApiError as exc:
                    self.expectations.creation_observed(key)
                    self.event(owner, "FailedCreate", f"Error creating: {exc.message}", warning=True)
                    raise
                except Exception:
                    self.expectations.creation_observed(key)
                    raise
                self.log.info("%s %s created pod %s", self.kind, key, name_of(created))
                self.event(owner, "SuccessfulCreate", f"Created pod: {name_of(created)}")

            successes, failures, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH, create)
            if error is not None:
                # The pods of batches never started will never be observed either.
                self.expectations.creation_observed(key, count - successes - failures)
                raise error
            return
        if diff > 0:
            count = min(diff, BURST_REPLICAS)
            related = self._related_pods(owner, pods)
            victims = pod_deletion_order(pods, related)[:count]
            self.expectations.expect(key, deletes=[key_of(p) for p in victims])
            self.log.info("%s %s: too many replicas (%d of %d), deleting %d", self.kind, key, len(pods), want, count)

            async def delete(pod: JsonObject) -> None:
                try:
                    await self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod),
                                             preconditions={"uid": uid_of(pod)})
                except NotFound:
                    self.expectations.deletion_observed(key, key_of(pod))
                    return
                except Exception:
                    self.expectations.deletion_observed(key, key_of(pod))
                    raise
                self.log.info("%s %s deleted pod %s", self.kind, key, name_of(pod))
                self.event(owner, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")

            results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    def _related_pods(self, owner: JsonObject, pods: list[JsonObject]) -> list[JsonObject]:
        # getPodsRankedByRelatedPodsOnSameNode: pods of every ReplicaSet under the same controller
        # (a Deployment's old and new ReplicaSets) count, so scale-down spreads across nodes.
        ref = controller_ref(owner)
        if ref is None or not ref.get("uid"):
            return pods
        pod_store = self.informer(PODS).store
        related: list[JsonObject] = []
        for sibling in self.informer(self.owners).store.by_index(OWNER_INDEX, str(ref["uid"])):
            related.extend(p for p in pod_store.by_index(OWNER_INDEX, uid_of(sibling)) if is_pod_active(p))
        return related or pods

    # --- status ----------------------------------------------------------------------------------

    def calculate_status(self, owner: JsonObject, pods: list[JsonObject], error: Exception | None) -> JsonObject:
        spec = owner.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = self.template_labels(owner)
        now = self.ctx.now()
        status = deepcopy(owner.get("status") or {})
        status["replicas"] = len(pods)
        status["fullyLabeledReplicas"] = sum(
            1 for p in pods if all(labels_of(p).get(k) == v for k, v in template_labels.items()))
        status["readyReplicas"] = sum(1 for p in pods if is_pod_ready(p))
        status["availableReplicas"] = sum(1 for p in pods if is_pod_available(p, min_ready, now))
        status["observedGeneration"] = meta(owner).get("generation", 1)
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if error is not None and isinstance(error, ApiError):
            # ReplicaFailure: why pods could not be created or deleted (FailedCreate / FailedDelete).
            reason = "FailedCreate" if len(pods) < int(spec.get("replicas", 1) or 0) else "FailedDelete"
            old = next((c for c in status.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
            conditions.append({"type": "ReplicaFailure", "status": "True", "reason": reason,
                               "message": error.message,
                               "lastTransitionTime": (old or {}).get("lastTransitionTime") or rfc3339(now)})
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        return status

    async def update_status(self, owner: JsonObject, pods: list[JsonObject], error: Exception | None) -> None:
        status = self.calculate_status(owner, pods, error)
        spec = owner.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        if (owner.get("status") or {}) != status:
            body = deepcopy(owner)
            body["status"] = status
            for attempt in range(2):
                try:
                    await self.client.update_status(self.owners, body, namespace=namespace_of(owner))
                    break
                except NotFound:
                    return
                except Conflict:
                    if attempt:
                        raise
                    fresh = await self.client.get(self.owners, name_of(owner), namespace=namespace_of(owner))
                    if uid_of(fresh) != uid_of(owner):
                        return
                    body = fresh
                    body["status"] = self.calculate_status(fresh, pods, error)
            self.log.debug("%s %s status: %s", self.kind, key_of(owner), status)
        if (min_ready > 0 and status["readyReplicas"] == int(spec.get("replicas", 1) or 0)
                and status["availableReplicas"] != status["readyReplicas"]):
            self.queue.add_after(key_of(owner), min(float(min_ready), self.options.max_requeue))


class ReplicationControllerController(ReplicaSetController):
    name: ClassVar[str] = "replicationcontroller"
    component: ClassVar[str] = "replication-controller"
    kind: ClassVar[str] = "ReplicationController"
    api_version: ClassVar[str] = "v1"
    primary: ClassVar[Resource | None] = REPLICATION_CONTROLLERS
    resources: ClassVar[tuple[Resource, ...]] = (REPLICATION_CONTROLLERS, PODS)

    def matches(self, owner: JsonObject, labels: dict[str, str]) -> bool:
        # An RC's selector is a plain map, defaulting to the template's labels (core/v1 defaults).
        selector = (owner.get("spec") or {}).get("selector") or self.template_labels(owner)
        return map_selector_matches(selector, labels)


__all__ = ["ReplicaSetController", "ReplicationControllerController", "pod_deletion_order", "slow_start_batch"]
