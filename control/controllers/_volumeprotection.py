"""The storage-object-in-use protection controllers (pkg/controller/volume/pvcprotection, pvprotection):
a claim being deleted keeps kubernetes.io/pvc-protection while a pod that is not finished uses it; a
volume being deleted keeps kubernetes.io/pv-protection while it is Bound. Once nothing holds it, the
finalizer goes and the deletion completes (the apiserver's admission put the finalizers on at create).
"""

from __future__ import annotations

from typing import ClassVar

from control.api.meta import name_of, namespace_of
from control.api.storage import claim_names
from control.client import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, PODS, NotFound, Resource
from control.controllers._base import NAMESPACE_INDEX, Controller
from control.controllers._util import JsonObject, deepcopy, is_deleting, key_of, pod_phase, split_key

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"


def _finalizers(obj: JsonObject) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


class PVCProtectionController(Controller):
    name: ClassVar[str] = "pvc-protection"
    component: ClassVar[str] = "pvc-protection-controller"
    primary: ClassVar[Resource | None] = PERSISTENT_VOLUME_CLAIMS
    resources: ClassVar[tuple[Resource, ...]] = (PERSISTENT_VOLUME_CLAIMS, PODS)

    def register(self) -> None:
        self.informer(PERSISTENT_VOLUME_CLAIMS).add_handler(on_add=self.enqueue,
                                                            on_update=lambda old, new: self.enqueue(new))
        self.informer(PODS).add_handler(on_update=lambda old, new: self._pod_event(new), on_delete=self._pod_event)

    def _pod_event(self, pod: JsonObject) -> None:
        for claim in claim_names(pod):
            self.queue.add(f"{namespace_of(pod)}/{claim}")

    def _in_use(self, claim: JsonObject) -> bool:
        for pod in self.informer(PODS).store.by_index(NAMESPACE_INDEX, namespace_of(claim)):
            if pod_phase(pod) in ("Succeeded", "Failed"):
                continue
            if name_of(claim) in claim_names(pod):
                return True
        return False

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        claim = self.informer(PERSISTENT_VOLUME_CLAIMS).store.get(name, namespace)
        if claim is None or not is_deleting(claim) or PVC_PROTECTION not in _finalizers(claim):
            return
        if self._in_use(claim):
            self.log.info("claim %s is in use by a pod: kept until the pod is gone", key_of(claim))
            return
        body = deepcopy(claim)
        body["metadata"]["finalizers"] = [f for f in _finalizers(claim) if f != PVC_PROTECTION]
        try:
            await self.client.update(PERSISTENT_VOLUME_CLAIMS, body, namespace=namespace)
        except NotFound:
            return


class PVProtectionController(Controller):
    name: ClassVar[str] = "pv-protection"
    component: ClassVar[str] = "pv-protection-controller"
    primary: ClassVar[Resource | None] = PERSISTENT_VOLUMES
    resources: ClassVar[tuple[Resource, ...]] = (PERSISTENT_VOLUMES,)

    def register(self) -> None:
        self.informer(PERSISTENT_VOLUMES).add_handler(on_add=self.enqueue,
                                                      on_update=lambda old, new: self.enqueue(new))

    async def sync(self, key: str) -> None:
        volume = self.informer(PERSISTENT_VOLUMES).store.get(key)
        if volume is None or not is_deleting(volume) or PV_PROTECTION not in _finalizers(volume):
            return
        if (volume.get("status") or {}).get("phase") == "Bound":
            return
        body = deepcopy(volume)
        body["metadata"]["finalizers"] = [f for f in _finalizers(volume) if f != PV_PROTECTION]
        try:
            await self.client.update(PERSISTENT_VOLUMES, body)
        except NotFound:
            return


__all__ = ["PVCProtectionController", "PVProtectionController"]
