"""The storage admission plugins kube-apiserver enables by default, on a create:

    DefaultStorageClass (plugin/pkg/admission/storage/storageclass/setdefault): a claim that names no
        class (spec.storageClassName absent; "" means "no class" and is kept) gets the default one, the
        StorageClass annotated storageclass.kubernetes.io/is-default-class=true (the newest, if several are).
    StorageObjectInUseProtection (plugin/pkg/admission/storage/storageobjectinuseprotection): every new
        claim carries kubernetes.io/pvc-protection and every new volume kubernetes.io/pv-protection, which
        the protection controllers remove once nothing uses the object.

    admit_storage(kind, obj, classes)    in place, before validation
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from control.apiserver.tables import is_default_class

__all__ = ["PVC_PROTECTION", "PV_PROTECTION", "admit_storage", "default_class"]

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"


def default_class(classes: Iterable[dict[str, Any]]) -> str | None:
    """GetDefaultClass: the newest default class (ties broken by name, as upstream sorts), or None."""
    defaults = [c for c in classes if isinstance(c.get("metadata"), dict) and is_default_class(c)]
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: (str(c["metadata"].get("creationTimestamp") or ""),
                                          str(c["metadata"].get("name"))))
    return str(newest["metadata"]["name"])


def _add_finalizer(obj: dict[str, Any], finalizer: str) -> None:
    meta = obj.setdefault("metadata", {})
    finalizers = meta.get("finalizers")
    if not isinstance(finalizers, list):
        finalizers = meta["finalizers"] = []
    if finalizer not in finalizers:
        finalizers.append(finalizer)


def admit_storage(kind: str, obj: dict[str, Any], classes: Iterable[dict[str, Any]]) -> None:
    if kind == "PersistentVolumeClaim":
        spec = obj.get("spec")
        if isinstance(spec, dict) and spec.get("storageClassName") is None:
            name = default_class(classes)
            if name is not None:
                spec["storageClassName"] = name
        _add_finalizer(obj, PVC_PROTECTION)
    elif kind == "PersistentVolume":
        _add_finalizer(obj, PV_PROTECTION)
