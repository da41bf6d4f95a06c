"""A local-path provisioner: rancher's local-path-provisioner (the one kind ships, provisioner
`rancher.io/local-path`), run as a controller of the controller-manager.

For a claim the PV controller hands to it (annotation volume.kubernetes.io/storage-provisioner) whose node
the scheduler has picked (volume.kubernetes.io/selected-node), it makes a directory for the volume on that
node, `<root>/<node>/pvc-<claim uid>_<namespace>_<claim>` (rancher's naming under its
/opt/local-path-provisioner; kubesim's nodes share one filesystem, so each has a directory of its own
under the cluster's state directory), and a hostPath PersistentVolume pre-bound to the claim with node
affinity to that node; the PV controller completes the binding. A Released volume it made whose reclaim
policy is Delete has its directory removed, then its object deleted.

Like rancher's, it needs WaitForFirstConsumer: an Immediate claim names no node (ProvisioningFailed). A
selected node that does not exist is given back: the annotation is removed (as the provisioner library's
rescheduleProvisioning does), and the scheduler, waiting for the claim in its PreBind, picks again.
Capacity is not enforced (hostPath directories have no quota, as with rancher's).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import ClassVar

from control.api.meta import annotations_of, labels_of, name_of, namespace_of, uid_of
from control.api.storage import (
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    ANN_STORAGE_PROVISIONER_BETA,
    WAIT_FOR_FIRST_CONSUMER,
    claim_class,
)
from control.client import (
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    STORAGE_CLASSES,
    AlreadyExists,
    NotFound,
    Resource,
)
from control.controllers._base import Controller
from control.controllers._persistentvolume import claim_ref
from control.controllers._util import JsonObject, is_deleting, key_of, split_key

PROVISIONER = "rancher.io/local-path"
ANN_NODE = "local.path.provisioner/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
CLAIM, VOLUME = "claim:", "volume:"


def volume_name(claim: JsonObject) -> str:
    """The external provisioners' name for a claim's volume: pvc-<claim uid>."""
    return f"pvc-{uid_of(claim)}"


def volume_dir(root: Path, node: str, claim: JsonObject) -> Path:
    return root / node / f"{volume_name(claim)}_{namespace_of(claim)}_{name_of(claim)}"


def provisioned_volume(claim: JsonObject, storage_class: JsonObject, node: str, hostname: str,
                       path: Path) -> JsonObject:
    """The PersistentVolume for CLAIM on NODE (whose kubernetes.io/hostname label is HOSTNAME)."""
    spec = claim.get("spec") or {}
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim),
                     "annotations": {ANN_PROVISIONED_BY: PROVISIONER, ANN_NODE: node}},
        "spec": {
            "capacity": {"storage": str(((spec.get("resources") or {}).get("requests") or {}).get("storage"))},
            "accessModes": list(spec.get("accessModes") or []),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": claim_class(claim),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}]}},
            "claimRef": claim_ref(claim),
        },
    }


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve()) and path.resolve() != root.resolve()
    except OSError:
        return False


class LocalPathProvisioner(Controller):
    name: ClassVar[str] = "local-path-provisioner"
    component: ClassVar[str] = PROVISIONER
    resources: ClassVar[tuple[Resource, ...]] = (PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, STORAGE_CLASSES, NODES)

    @property
    def root(self) -> Path | None:
        return Path(self.options.local_path_root) if self.options.local_path_root else None

    def register(self) -> None:
        self.informer(PERSISTENT_VOLUME_CLAIMS).add_handler(
            on_add=self._claim_event, on_update=lambda old, new: self._claim_event(new))
        self.informer(PERSISTENT_VOLUMES).add_handler(
            on_add=self._volume_event, on_update=lambda old, new: self._volume_event(new))

    def _claim_event(self, claim: JsonObject) -> None:
        if annotations_of(claim).get(ANN_STORAGE_PROVISIONER, annotations_of(claim).get(
                ANN_STORAGE_PROVISIONER_BETA)) == PROVISIONER:
            self.queue.add(CLAIM + key_of(claim))

    def _volume_event(self, volume: JsonObject) -> None:
        if annotations_of(volume).get(ANN_PROVISIONED_BY) == PROVISIONER:
            self.queue.add(VOLUME + name_of(volume))

    def resync_keys(self) -> list[str]:
        claims = [CLAIM + key_of(c) for c in self.informer(PERSISTENT_VOLUME_CLAIMS).store.list()
                  if annotations_of(c).get(ANN_STORAGE_PROVISIONER) == PROVISIONER]
        volumes = [VOLUME + name_of(v) for v in self.informer(PERSISTENT_VOLUMES).store.list()
                   if annotations_of(v).get(ANN_PROVISIONED_BY) == PROVISIONER]
        return claims + volumes

    async def sync(self, key: str) -> None:
        if key.startswith(CLAIM):
            namespace, name = split_key(key[len(CLAIM):])
            claim = self.informer(PERSISTENT_VOLUME_CLAIMS).store.get(name, namespace)
            if claim is not None:
                await self._provision(claim)
        elif key.startswith(VOLUME):
            volume = self.informer(PERSISTENT_VOLUMES).store.get(key[len(VOLUME):])
            if volume is not None:
                await self._delete(volume)

    async def _provision(self, claim: JsonObject) -> None:
        if is_deleting(claim) or (claim.get("spec") or {}).get("volumeName"):
            return
        if self.informer(PERSISTENT_VOLUMES).store.get(volume_name(claim)) is not None:
            return  # made already; the PV controller binds it
        storage_class = self.informer(STORAGE_CLASSES).store.get(claim_class(claim))
        if storage_class is None or storage_class.get("provisioner") != PROVISIONER:
            return
        node = annotations_of(claim).get(ANN_SELECTED_NODE)
        if not node and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER:
            return  # the scheduler has not picked a node yet, or was given this one back (shouldProvision)
        if not node:
            self.event(claim, "ProvisioningFailed", "failed to provision volume with StorageClass "
                       f'"{claim_class(claim)}": configuration error, no node was specified: use '
                       "volumeBindingMode WaitForFirstConsumer", warning=True)
            return
        root = self.root
        if root is None:
            self.event(claim, "ProvisioningFailed", "failed to provision volume: the provisioner has no directory for "
                       "volumes (start the controller-manager with --local-path-root)", warning=True)
            return
        node_obj = self.informer(NODES).store.get(node)
        if node_obj is None:
            # sig-storage-lib-external-provisioner's ProvisioningReschedule: a selected node that does not
            # exist gets its annotation removed, so the scheduler (waiting in PreBind) fails the pod's
            # binding and picks a node again.
            self.event(claim, "ProvisioningFailed", f'failed to get target node: node "{node}" not found',
                       warning=True)
            await self.client.patch(PERSISTENT_VOLUME_CLAIMS, name_of(claim),
                                    {"metadata": {"annotations": {ANN_SELECTED_NODE: None}}},
                                    namespace=namespace_of(claim))
            return
        hostname = labels_of(node_obj).get(HOSTNAME_LABEL, node)
        path = volume_dir(root, node, claim)
        self.event(claim, "Provisioning", f'External provisioner is provisioning volume for claim "{key_of(claim)}"')
        await asyncio.to_thread(_make_dir, path)
        try:
            await self.client.create(PERSISTENT_VOLUMES, provisioned_volume(claim, storage_class, node, hostname, path))
        except AlreadyExists:
            return
        self.log.info("provisioned %s for claim %s at %s", volume_name(claim), key_of(claim), path)
        self.event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {volume_name(claim)}")

    async def _delete(self, volume: JsonObject) -> None:
        spec, status = volume.get("spec") or {}, volume.get("status") or {}
        if status.get("phase") != "Released" or spec.get("persistentVolumeReclaimPolicy") != "Delete" \
                or is_deleting(volume):
            return
        root = self.root
        path = Path(str((spec.get("hostPath") or {}).get("path") or ""))
        if root is None or not _inside(path, root):
            self.event(volume, "VolumeFailedDelete", f"the volume's directory {path} is not under this provisioner's "
                                                     f"{root}: not removed", warning=True)
            return
        await asyncio.to_thread(shutil.rmtree, path, True)
        try:
            await self.client.delete(PERSISTENT_VOLUMES, name_of(volume))
        except NotFound:
            return
        self.log.info("deleted %s and its directory %s", name_of(volume), path)


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # as rancher's helper pod does (mkdir -m 0777): any container user may write


__all__ = ["PROVISIONER", "LocalPathProvisioner", "provisioned_volume", "volume_dir", "volume_name"]
