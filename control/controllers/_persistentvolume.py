"""The PersistentVolume controller (pkg/controller/volume/persistentvolume, `persistentvolume-binder`):
binds claims to volumes and keeps both phases true.

An unbound claim is matched to the smallest fitting volume (control.api.storage.matching_volume); the
volume gets claimRef, the claim spec.volumeName, both Bound. A claim whose class binds
WaitForFirstConsumer waits (Pending, event WaitForFirstConsumer) until the scheduler has picked a node
for its first pod (annotation volume.kubernetes.io/selected-node); it is then matched against volumes
that node can reach, else handed to the class's provisioner (annotation
volume.kubernetes.io/storage-provisioner, event ExternalProvisioning). A volume whose claim is gone is
Released and reclaimed by its policy: Retain keeps it; Delete is the provisioner's work for volumes it
made (pv.kubernetes.io/provisioned-by), and Failed for the others, as upstream has no deleter for them.

Work items are "claim:<namespace>/<name>" and "volume:<name>", one queue.

Differences from upstream: static volumes for a WaitForFirstConsumer claim are bound here, once the node
is selected, rather than by the scheduler's VolumeBinding plugin (its PreBind); the end state is the same.
Recycle is refused (Failed) as upstream's recycler is deprecated and kubesim has none.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from control.api.meta import annotations_of, name_of, namespace_of, uid_of
from control.api.storage import (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    ANN_STORAGE_PROVISIONER_BETA,
    NO_PROVISIONER,
    WAIT_FOR_FIRST_CONSUMER,
    claim_class,
    matching_volume,
)
from control.client import (
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    STORAGE_CLASSES,
    Resource,
)
from control.controllers._base import Controller
from control.controllers._util import JsonObject, deepcopy, is_deleting, key_of, split_key

CLAIM, VOLUME = "claim:", "volume:"


def _spec(obj: JsonObject) -> dict[str, Any]:
    return obj.get("spec") or {}


def _phase(obj: JsonObject) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def claim_ref(claim: JsonObject) -> JsonObject:
    meta = claim.get("metadata") or {}
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta.get("namespace"),
            "name": meta.get("name"), "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}


class PersistentVolumeController(Controller):
    name: ClassVar[str] = "persistentvolume-binder"
    component: ClassVar[str] = "persistentvolume-controller"
    resources: ClassVar[tuple[Resource, ...]] = (PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, STORAGE_CLASSES, NODES)

    def register(self) -> None:
        self.informer(PERSISTENT_VOLUME_CLAIMS).add_handler(
            on_add=self._claim_event, on_update=lambda old, new: self._claim_event(new), on_delete=self._claim_event)
        self.informer(PERSISTENT_VOLUMES).add_handler(
            on_add=self._volume_event, on_update=lambda old, new: self._volume_event(new),
            on_delete=self._volume_event)

    def _claim_event(self, claim: JsonObject) -> None:
        self.queue.add(CLAIM + key_of(claim))
        volume = _spec(claim).get("volumeName")
        if volume:
            self.queue.add(VOLUME + str(volume))  # a deleted claim releases its volume

    def _volume_event(self, volume: JsonObject) -> None:
        self.queue.add(VOLUME + name_of(volume))
        ref = _spec(volume).get("claimRef")
        if isinstance(ref, dict) and ref.get("name"):
            self.queue.add(f"{CLAIM}{ref.get('namespace')}/{ref.get('name')}")

    def resync_keys(self) -> list[str]:
        claims = [CLAIM + key_of(c) for c in self.informer(PERSISTENT_VOLUME_CLAIMS).store.list()]
        return claims + [VOLUME + name_of(v) for v in self.informer(PERSISTENT_VOLUMES).store.list()]

    async def sync(self, key: str) -> None:
        if key.startswith(CLAIM):
            namespace, name = split_key(key[len(CLAIM):])
            claim = self.informer(PERSISTENT_VOLUME_CLAIMS).store.get(name, namespace)
            if claim is not None and not is_deleting(claim):
                await self._sync_claim(deepcopy(claim))
        elif key.startswith(VOLUME):
            volume = self.informer(PERSISTENT_VOLUMES).store.get(key[len(VOLUME):])
            if volume is not None:
                await self._sync_volume(deepcopy(volume))

    # --- claims ------------------------------------------------------------------------------------

    async def _set_claim_phase(self, claim: JsonObject, phase: str, volume: JsonObject | None = None) -> None:
        status = deepcopy(claim.get("status") or {})
        status["phase"] = phase
        if phase == "Bound" and volume is not None:
            status["accessModes"] = list(_spec(volume).get("accessModes") or [])
            status["capacity"] = dict(_spec(volume).get("capacity") or {})
        elif phase != "Bound":
            status.pop("accessModes", None)
            status.pop("capacity", None)
        await self.write_status(PERSISTENT_VOLUME_CLAIMS, claim, status)

    async def _set_volume_phase(self, volume: JsonObject, phase: str, message: str = "") -> None:
        status = deepcopy(volume.get("status") or {})
        if status.get("phase") != phase:
            status["lastPhaseTransitionTime"] = _now(self)
        status["phase"] = phase
        if message:
            status["message"] = message
        else:
            status.pop("message", None)
        await self.write_status(PERSISTENT_VOLUMES, volume, status)

    async def _sync_claim(self, claim: JsonObject) -> None:
        volume_name = _spec(claim).get("volumeName")
        if not volume_name:
            await self._sync_unbound_claim(claim)
            return
        volume = self.informer(PERSISTENT_VOLUMES).store.get(str(volume_name))
        if volume is None and annotations_of(claim).get(ANN_BIND_COMPLETED) != "yes":
            # Pre-bound by its author to a volume that does not exist (yet): it waits, as upstream's does.
            await self._set_claim_phase(claim, "Pending")
            self.event(claim, "FailedBinding", f'volume "{volume_name}" not found', warning=True)
            return
        if volume is None:
            if _phase(claim) != "Lost":
                self.event(claim, "ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the "
                                               "volume is lost!", warning=True)
            await self._set_claim_phase(claim, "Lost")
            return
        ref = _spec(volume).get("claimRef")
        if not isinstance(ref, dict) or (ref.get("uid") in (None, "", uid_of(claim))
                                         and ref.get("name") == name_of(claim)
                                         and ref.get("namespace") == namespace_of(claim)):
            # Ours (or pre-bound to us, or not yet told): finish the binding on both sides.
            await self._bind(claim, deepcopy(volume))
            return
        if _phase(claim) != "Lost":
            self.event(claim, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound "
                                               "incorrectly", warning=True)
        await self._set_claim_phase(claim, "Lost")

    async def _sync_unbound_claim(self, claim: JsonObject) -> None:
        class_name = claim_class(claim)
        storage_class = self.informer(STORAGE_CLASSES).store.get(class_name) if class_name else None
        annotations = annotations_of(claim)
        node = annotations.get(ANN_SELECTED_NODE)
        delayed = storage_class is not None and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER
        if delayed and not node:
            if _phase(claim) != "Pending" or not (claim.get("status") or {}).get("phase"):
                await self._set_claim_phase(claim, "Pending")
            self.event(claim, "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
            return
        node_labels = None
        if delayed and node:
            node_obj = self.informer(NODES).store.get(node)
            node_labels = {**((node_obj or {}).get("metadata") or {}).get("labels", {}), "metadata.name": node}
        volume = matching_volume(claim, self.informer(PERSISTENT_VOLUMES).store.list(), node_labels)
        if volume is not None:
            await self._bind(claim, deepcopy(dict(volume)))
            return
        await self._set_claim_phase(claim, "Pending")
        provisioner = str((storage_class or {}).get("provisioner") or "")
        if storage_class is not None and provisioner != NO_PROVISIONER:
            if annotations.get(ANN_STORAGE_PROVISIONER) != provisioner:
                body = deepcopy(claim)
                body["metadata"].setdefault("annotations", {}).update(
                    {ANN_STORAGE_PROVISIONER: provisioner, ANN_STORAGE_PROVISIONER_BETA: provisioner})
                await self.client.update(PERSISTENT_VOLUME_CLAIMS, body, namespace=namespace_of(claim))
            self.event(claim, "ExternalProvisioning", "Waiting for a volume to be created either by the external "
                       f"provisioner '{provisioner}' or manually by the system administrator. If volume creation is "
                       "delayed, please verify that the provisioner is running and correctly registered.")
        elif class_name and storage_class is None:
            self.event(claim, "ProvisioningFailed", f'storageclass.storage.k8s.io "{class_name}" not found',
                       warning=True)
        else:
            self.event(claim, "FailedBinding", "no persistent volumes available for this claim and no storage class "
                                               "is set", warning=True)

    async def _bind(self, claim: JsonObject, volume: JsonObject) -> None:
        """bind(): the volume's claimRef, its phase, the claim's volumeName and annotations, its phase, in
        upstream's order, each step skipped when already done (a later sync resumes an interrupted one)."""
        ref = _spec(volume).get("claimRef")
        if not isinstance(ref, dict) or ref.get("uid") != uid_of(claim):
            if not isinstance(ref, dict):
                volume["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
            volume["spec"]["claimRef"] = claim_ref(claim)
            volume = await self.client.update(PERSISTENT_VOLUMES, volume)
        if _phase(volume) != "Bound":
            await self._set_volume_phase(volume, "Bound")
        annotations = annotations_of(claim)
        if _spec(claim).get("volumeName") != name_of(volume) or annotations.get(ANN_BIND_COMPLETED) != "yes":
            body = deepcopy(claim)
            new_annotations = body["metadata"].setdefault("annotations", {})
            if _spec(claim).get("volumeName") != name_of(volume):
                new_annotations[ANN_BOUND_BY_CONTROLLER] = "yes"
            new_annotations[ANN_BIND_COMPLETED] = "yes"
            body["spec"]["volumeName"] = name_of(volume)
            claim = await self.client.update(PERSISTENT_VOLUME_CLAIMS, body, namespace=namespace_of(claim))
        if _phase(claim) != "Bound" or (claim.get("status") or {}).get("capacity") != _spec(volume).get("capacity"):
            await self._set_claim_phase(claim, "Bound", volume)

    # --- volumes -----------------------------------------------------------------------------------

    async def _sync_volume(self, volume: JsonObject) -> None:
        ref = _spec(volume).get("claimRef")
        if not isinstance(ref, dict):
            if _phase(volume) != "Available":
                await self._set_volume_phase(volume, "Available")
            return
        claim = self.informer(PERSISTENT_VOLUME_CLAIMS).store.get(str(ref.get("name")), str(ref.get("namespace")))
        if not ref.get("uid"):
            # Pre-bound by the administrator to a claim that may not exist yet.
            if _phase(volume) not in ("Available", "Bound"):
                await self._set_volume_phase(volume, "Available")
            return
        if claim is not None and uid_of(claim) == ref.get("uid"):
            bound_to = _spec(claim).get("volumeName")
            if bound_to == name_of(volume):
                if _phase(volume) != "Bound":
                    await self._set_volume_phase(volume, "Bound")
            elif bound_to and annotations_of(volume).get(ANN_BOUND_BY_CONTROLLER):
                await self._unbind(volume)  # the claim went to another volume: ours is free again
            return
        # The claim is gone (or a new one has its name): the volume is released, then reclaimed.
        if _phase(volume) not in ("Released", "Failed"):
            await self._set_volume_phase(volume, "Released")
            volume = self.informer(PERSISTENT_VOLUMES).store.get(name_of(volume)) or volume
        await self._reclaim(volume)

    async def _unbind(self, volume: JsonObject) -> None:
        body = deepcopy(volume)
        body["spec"].pop("claimRef", None)
        body["metadata"].get("annotations", {}).pop(ANN_BOUND_BY_CONTROLLER, None)
        updated = await self.client.update(PERSISTENT_VOLUMES, body)
        await self._set_volume_phase(updated, "Available")

    async def _reclaim(self, volume: JsonObject) -> None:
        policy = _spec(volume).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain" or _phase(volume) == "Failed":
            return
        if policy == "Delete":
            if annotations_of(volume).get(ANN_PROVISIONED_BY):
                return  # the provisioner that made it deletes it (its storage, then the object)
            message = f'error getting deleter volume plugin for volume "{name_of(volume)}": no deletable volume ' \
                      "plugin matched"
            self.event(volume, "VolumeFailedDelete", message, warning=True)
        else:
            message = "Recycle is not supported by kubesim (upstream deprecates it): use Delete or Retain"
            self.event(volume, "VolumeFailedRecycle", message, warning=True)
        await self._set_volume_phase(volume, "Failed", message)


def _now(controller: Controller) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(controller.ctx.now()))


__all__ = ["PersistentVolumeController", "claim_ref"]

