"""The Deployment controller itself (pkg/controller/deployment/deployment_controller.go): the informer
handlers, claiming ReplicaSets, and syncDeployment choosing between a status-only sync, a scaling event
and a rollout of either strategy. The steps live in sync.py, progress.py, rolling.py and recreate.py,
one class each, stacked by inheritance as upstream spreads one Go type's methods over those files."""

from __future__ import annotations

from typing import ClassVar

from control.api.meta import labels_of, meta, name_of, namespace_of, uid_of
from control.client import DEPLOYMENTS, PODS, REPLICA_SETS, NotFound, Resource
from control.controllers._base import NAMESPACE_INDEX
from control.controllers._deployment.recreate import DeploymentRecreate
from control.controllers._deployment.rolling import DeploymentRolling
from control.controllers._deployment.util import is_rolling
from control.controllers._util import (
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    key_of,
    make_controller_ref,
    owner_refs,
    selector_matches,
    split_key,
)


class DeploymentController(DeploymentRolling, DeploymentRecreate):
    name: ClassVar[str] = "deployment"
    component: ClassVar[str] = "deployment-controller"
    primary: ClassVar[Resource | None] = DEPLOYMENTS
    resources: ClassVar[tuple[Resource, ...]] = (DEPLOYMENTS, REPLICA_SETS, PODS)

    # --- handlers --------------------------------------------------------------------------------

    def register(self) -> None:
        self.informer(DEPLOYMENTS).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                               on_delete=self.enqueue)
        self.informer(REPLICA_SETS).add_handler(on_add=self._rs_changed, on_update=self._rs_updated,
                                                on_delete=self._rs_changed)
        self.informer(PODS).add_handler(on_delete=self._pod_deleted)

    def _owner_of(self, obj: JsonObject) -> JsonObject | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.informer(DEPLOYMENTS).store.get(str(ref.get("name")), namespace_of(obj))
        return d if d is not None and uid_of(d) == ref.get("uid") else None

    def _rs_changed(self, rs: JsonObject) -> None:
        owner = self._owner_of(rs)
        if owner is not None:
            self.enqueue(owner)
            return
        if controller_ref(rs) is None:
            for d in self.informer(DEPLOYMENTS).store.by_index(NAMESPACE_INDEX, namespace_of(rs)):
                if selector_matches((d.get("spec") or {}).get("selector"), labels_of(rs)):
                    self.enqueue(d)

    def _rs_updated(self, old: JsonObject, new: JsonObject) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        old_owner = self._owner_of(old)
        if old_owner is not None and (controller_ref(new) or {}).get("uid") != uid_of(old_owner):
            self.enqueue(old_owner)
        self._rs_changed(new)

    def _pod_deleted(self, pod: JsonObject) -> None:
        # Recreate waits for the old pods to be gone: look again when one goes.
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.informer(REPLICA_SETS).store.get(str(ref.get("name")), namespace_of(pod))
        if rs is None:
            return
        d = self._owner_of(rs)
        if d is not None and not is_rolling(d):
            self.enqueue(d)

    # --- sync ------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        assert namespace is not None
        cached = self.informer(DEPLOYMENTS).store.get(name, namespace)
        if cached is None:
            return
        d = deepcopy(cached)
        selector = (d.get("spec") or {}).get("selector") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            self.log.warning("Deployment %s has an empty selector; it would select every pod: skipped", key)
            return
        rs_list = await self.claim_replica_sets(d)
        if is_deleting(d):
            new_rs, old = self.split(d, rs_list)
            await self.sync_status(old + ([new_rs] if new_rs else []), new_rs, d)
            return
        if (d.get("spec") or {}).get("paused") or await self.is_scaling_event(d, rs_list):
            await self.sync_scale(d, rs_list)
            return
        if is_rolling(d):
            await self.rollout_rolling(d, rs_list)
        else:
            await self.rollout_recreate(d, rs_list)

    async def claim_replica_sets(self, d: JsonObject) -> list[JsonObject]:
        claimed: list[JsonObject] = []
        selector = (d.get("spec") or {}).get("selector")
        can_adopt: bool | None = None
        for rs in self.owned_or_orphaned(REPLICA_SETS, d):
            # The cache's own objects, read only: only the claimed ones are copied (what the rollout may change).
            ref = controller_ref(rs)
            matches = selector_matches(selector, labels_of(rs))
            if ref is not None:
                if ref.get("uid") != uid_of(d):  # owned_or_orphaned gives only ours: a stale index would not
                    continue
                if matches:
                    claimed.append(deepcopy(rs))
                elif not is_deleting(d):
                    refs = [r for r in owner_refs(rs) if r.get("uid") != uid_of(d)]
                    await self._patch_refs(rs, refs)
                    self.log.info("Deployment %s released ReplicaSet %s", key_of(d), name_of(rs))
                continue
            if not matches or is_deleting(d) or is_deleting(rs):
                continue
            if can_adopt is None:
                try:
                    fresh = await self.client.get(DEPLOYMENTS, name_of(d), namespace=namespace_of(d))
                    can_adopt = uid_of(fresh) == uid_of(d) and not is_deleting(fresh)
                except NotFound:
                    can_adopt = False
            if can_adopt:
                updated = await self._patch_refs(rs, [*owner_refs(rs), make_controller_ref(d, "apps/v1", "Deployment")])
                if updated is not None:
                    self.log.info("Deployment %s adopted ReplicaSet %s", key_of(d), name_of(rs))
                    claimed.append(updated)
        return claimed

    async def _patch_refs(self, rs: JsonObject, refs: list[JsonObject]) -> JsonObject | None:
        try:
            return await self.client.patch(REPLICA_SETS, name_of(rs), {"metadata": {
                "ownerReferences": refs or None, "resourceVersion": meta(rs).get("resourceVersion")}},
                namespace=namespace_of(rs))
        except NotFound:
            return None
