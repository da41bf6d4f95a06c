"""Validation of PersistentVolume, PersistentVolumeClaim (core/v1) and StorageClass (storage.k8s.io/v1), in
upstream's words (pkg/apis/core/validation: ValidatePersistentVolume*, ValidatePersistentVolumeClaim*;
pkg/apis/storage/validation: ValidateStorageClass*).

    validate_persistent_volume_claim(pvc) -> [FieldError("FieldValueRequired", "spec.resources[storage]",
                                              "Required value")]

Volume sources other than hostPath and local are accepted as upstream accepts them (one source exactly) but
only hostPath and local volumes can be mounted by kubesim's kubelet.
"""

from __future__ import annotations

import copy
from typing import Any

from control.api.quantity import Quantity, QuantityError, parse_quantity
from control.api.validators import is_dns1123_subdomain, is_qualified_name
from control.apiserver.validation.field import (
    FieldError,
    _as_str,
    _dict,
    _list,
    forbidden,
    immutable,
    invalid,
    not_supported,
    required,
)
from control.apiserver.validation.names import validate_label_selector, validate_object_meta

__all__ = ["ACCESS_MODES", "validate_claim_spec", "validate_persistent_volume", "validate_persistent_volume_claim",
           "validate_persistent_volume_claim_update", "validate_persistent_volume_update",
           "validate_storage_class", "validate_storage_class_update"]

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
PV_RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
SC_RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
                   "Socket")
NODE_SELECTOR_OPERATORS = ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn")
# The PersistentVolumeSource fields (core/v1 types.go), for "exactly one volume type".
PV_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "hostPath", "glusterfs", "nfs", "rbd", "iscsi",
              "cinder", "cephfs", "fc", "flocker", "flexVolume", "azureFile", "vsphereVolume", "quobyte",
              "azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO", "local", "storageos", "csi")
QUANTITY_REGEX = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def _quantity(value: Any) -> Quantity | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def _storage_class_name(value: Any, path: str) -> list[FieldError]:
    if value is None or value == "":
        return []
    return [invalid(path, value, msg) for msg in is_dns1123_subdomain(_as_str(value))] if isinstance(value, str) \
        else [invalid(path, value, "must be a string")]


def _access_modes(modes: Any, path: str, *, detail: str = "") -> list[FieldError]:
    items = _list(modes)
    if not items:
        return [required(path, detail)]
    errs = [not_supported(path, m, ACCESS_MODES) for m in items if m not in ACCESS_MODES]
    if "ReadWriteOncePod" in items and len(items) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _volume_mode(value: Any, path: str) -> list[FieldError]:
    return [] if value is None or value in VOLUME_MODES else [not_supported(path, value, VOLUME_MODES)]


def _node_selector(selector: Any, path: str) -> list[FieldError]:
    terms = _list(_dict(selector).get("nodeSelectorTerms"))
    if not terms:
        return [required(f"{path}.nodeSelectorTerms", "must have at least one node selector term")]
    errs: list[FieldError] = []
    for i, term in enumerate(terms):
        for j, req in enumerate(_list(_dict(term).get("matchExpressions"))):
            where = f"{path}.nodeSelectorTerms[{i}].matchExpressions[{j}]"
            req = _dict(req)
            key, op, values = _as_str(req.get("key")), req.get("operator"), _list(req.get("values"))
            errs += [invalid(f"{where}.key", key, msg) for msg in is_qualified_name(key)]
            if op not in NODE_SELECTOR_OPERATORS:
                errs.append(not_supported(f"{where}.operator", op, NODE_SELECTOR_OPERATORS))
            elif op in ("In", "NotIn") and not values:
                errs.append(required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
            elif op in ("Exists", "DoesNotExist") and values:
                errs.append(forbidden(f"{where}.values", "may not be specified when `operator` is 'Exists' or "
                                                         "'DoesNotExist'"))
    return errs


# -- PersistentVolume ------------------------------------------------------------------------------------------

def validate_persistent_volume(pv: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(pv, is_dns1123_subdomain)
    spec = _dict(pv.get("spec"))
    errs += _access_modes(spec.get("accessModes"), "spec.accessModes")
    capacity = _dict(spec.get("capacity"))
    if not capacity:
        errs.append(required("spec.capacity"))
    for name, raw in capacity.items():
        where = f"spec.capacity[{name}]"
        if name != "storage":
            errs.append(not_supported("spec.capacity", name, ("storage",)))
            continue
        quantity = _quantity(raw)
        if quantity is None:
            errs.append(invalid(where, raw, QUANTITY_REGEX))
        elif quantity.is_negative:
            errs.append(invalid(where, str(quantity), "must be greater than or equal to 0"))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy is not None and policy not in PV_RECLAIM_POLICIES:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, PV_RECLAIM_POLICIES))
    errs += _storage_class_name(spec.get("storageClassName"), "spec.storageClassName")
    errs += _volume_mode(spec.get("volumeMode"), "spec.volumeMode")
    claim = spec.get("claimRef")
    if claim is not None:
        claim = _dict(claim)
        if not claim.get("name"):
            errs.append(required("spec.claimRef.name"))
        if not claim.get("namespace"):
            errs.append(required("spec.claimRef.namespace"))
    sources = [s for s in PV_SOURCES if spec.get(s) is not None]
    if not sources:
        errs.append(required("spec", "must specify a volume type"))
    for extra in sources[1:]:
        errs.append(forbidden(f"spec.{extra}", "may not specify more than 1 volume type"))
    if "hostPath" in sources:
        host = _dict(spec.get("hostPath"))
        if not host.get("path"):
            errs.append(required("spec.hostPath.path"))
        elif ".." in _as_str(host.get("path")).split("/"):
            errs.append(invalid("spec.hostPath.path", host.get("path"), "must not contain '..'"))
        if host.get("type") is not None and host.get("type") not in HOST_PATH_TYPES:
            errs.append(not_supported("spec.hostPath.type", host.get("type"), HOST_PATH_TYPES))
    if "local" in sources:
        if not _dict(spec.get("local")).get("path"):
            errs.append(required("spec.local.path"))
        if spec.get("nodeAffinity") is None:
            errs.append(required("spec.nodeAffinity", "Local volumes require node affinity"))
    affinity = spec.get("nodeAffinity")
    if affinity is not None:
        required_selector = _dict(affinity).get("required")
        if required_selector is None:
            errs.append(required("spec.nodeAffinity.required"))
        else:
            errs += _node_selector(required_selector, "spec.nodeAffinity.required")
    return errs


def validate_persistent_volume_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_persistent_volume(new)
    spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    if {s: spec.get(s) for s in PV_SOURCES} != {s: old_spec.get(s) for s in PV_SOURCES}:
        errs.append(forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after "
                                                             "creation"))
    if spec.get("volumeMode") != old_spec.get("volumeMode"):
        errs.append(immutable("spec.volumeMode", spec.get("volumeMode")))
    if old_spec.get("nodeAffinity") is not None and spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
        errs.append(immutable("spec.nodeAffinity", spec.get("nodeAffinity")))
    return errs


# -- PersistentVolumeClaim -------------------------------------------------------------------------------------

def validate_claim_spec(spec: dict[str, Any], path: str) -> list[FieldError]:
    errs = _access_modes(spec.get("accessModes"), f"{path}.accessModes", detail="at least 1 access mode is required")
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec.get("selector"), f"{path}.selector")
    requests = _dict(_dict(spec.get("resources")).get("requests"))
    storage = requests.get("storage")
    where = f"{path}.resources[storage]"
    if storage is None:
        errs.append(required(where))
    else:
        quantity = _quantity(storage)
        if quantity is None:
            errs.append(invalid(where, storage, QUANTITY_REGEX))
        elif quantity.is_negative:
            errs.append(invalid(where, str(quantity), "must be greater than or equal to 0"))
        elif quantity.value == 0:
            errs.append(invalid(where, str(quantity), "must be greater than zero"))
    errs += _storage_class_name(spec.get("storageClassName"), f"{path}.storageClassName")
    errs += _volume_mode(spec.get("volumeMode"), f"{path}.volumeMode")
    return errs


def validate_persistent_volume_claim(pvc: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta(pvc, is_dns1123_subdomain) + validate_claim_spec(_dict(pvc.get("spec")), "spec")


def _requested(spec: dict[str, Any]) -> Quantity | None:
    return _quantity(_dict(_dict(spec.get("resources")).get("requests")).get("storage"))


def validate_persistent_volume_claim_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """ValidatePersistentVolumeClaimUpdate: the spec is fixed once made, except that the PV controller sets
    volumeName once, a claim made before a default class existed may get one, and a bound claim may ask
    for more storage (never less)."""
    errs = validate_persistent_volume_claim(new)
    spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    new_clone, old_clone = copy.deepcopy(spec), copy.deepcopy(old_spec)
    if not old_spec.get("volumeName"):
        old_clone.pop("volumeName", None)
        new_clone.pop("volumeName", None)
    if old_spec.get("storageClassName") is None and spec.get("storageClassName"):
        new_clone.pop("storageClassName", None)  # the retroactive default class assignment
    bound = _dict(new.get("status")).get("phase") == "Bound"
    requests = _dict(_dict(new_clone.get("resources")).get("requests"))
    if bound and requests:
        requests["storage"] = _dict(_dict(old_spec.get("resources")).get("requests")).get("storage")
    if new_clone != old_clone:
        errs.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                      "volumeAttributesClassName for bound claims"))
    new_size, old_size = _requested(spec), _requested(old_spec)
    if new_size is not None and old_size is not None and new_size < old_size:
        errs.append(forbidden("spec.resources.requests.storage", "field can not be less than previous value"))
    return errs


# -- StorageClass ----------------------------------------------------------------------------------------------

def validate_storage_class(sc: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(sc, is_dns1123_subdomain)
    provisioner = sc.get("provisioner")
    if not provisioner:
        errs.append(required("provisioner"))
    else:
        errs += [invalid("provisioner", provisioner, msg) for msg in is_qualified_name(_as_str(provisioner).lower())]
    for key, value in _dict(sc.get("parameters")).items():
        if not key:
            errs.append(invalid("parameters", key, "field can not be empty."))
        if not isinstance(value, str):
            errs.append(invalid(f"parameters[{key}]", value, "must be a string"))
    policy = sc.get("reclaimPolicy")
    if policy not in SC_RECLAIM_POLICIES:
        errs.append(not_supported("reclaimPolicy", policy, SC_RECLAIM_POLICIES))
    mode = sc.get("volumeBindingMode")
    if mode not in BINDING_MODES:
        errs.append(not_supported("volumeBindingMode", mode, BINDING_MODES))
    return errs


def validate_storage_class_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_storage_class(new)
    if new.get("parameters") != old.get("parameters"):
        errs.append(forbidden("parameters", "updates to parameters are forbidden."))
    if new.get("provisioner") != old.get("provisioner"):
        errs.append(forbidden("provisioner", "updates to provisioner are forbidden."))
    if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
        errs.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
    if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
        errs.append(immutable("volumeBindingMode", new.get("volumeBindingMode")))
    return errs
