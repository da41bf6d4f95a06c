"""Ephemeral containers (`kubectl debug`), in upstream's words (pkg/apis/core/validation/validation.go:
validateEphemeralContainers, ValidatePodEphemeralContainersUpdate, and ValidatePodCreate's refusal).

    validate_pod_create(pod)                         a new pod: no ephemeral containers yet
    validate_ephemeral_containers(spec, path)        each one as a container, less what it may not have
    validate_ephemeral_containers_update(new, old)   pods/NAME/ephemeralcontainers: only additions

An ephemeral container is a container without the fields that make it part of the workload (ports,
probes, resources, lifecycle, restart policy: upstream's allow-list), named uniquely across all the
pod's containers, optionally targeting a regular container whose process view it shares. Once added,
it can be neither changed nor removed: the pod keeps it until the pod goes.
"""

from __future__ import annotations

import json
from typing import Any

from control.apiserver.validation.core import validate_container, validate_pod
from control.apiserver.validation.field import (
    FieldError,
    _as_str,
    _dict,
    _list,
    duplicate,
    forbidden,
    not_found,
)

__all__ = ["validate_ephemeral_containers", "validate_ephemeral_containers_update", "validate_pod_create"]

#: upstream's allowedEphemeralContainerFields, as JSON names: the ones set to false there
_NOT_ALLOWED = ("ports", "resources", "resizePolicy", "restartPolicy", "livenessProbe", "readinessProbe",
                "startupProbe", "lifecycle")
_NOT_ALLOWED_DETAIL = "cannot be set for an Ephemeral Container"


def _is_set(value: Any) -> bool:
    """Go's non-zero value: an empty object or list (`resources: {}`, which kubectl sends) is unset."""
    return value not in (None, "", {}, [], False, 0)


def validate_pod_create(pod: dict[str, Any]) -> list[FieldError]:
    """A new pod, as validate_pod, and none of its ephemeral containers: they are added to a running pod
    through its ephemeralcontainers subresource."""
    errs = validate_pod(pod)
    if _list(_dict(pod.get("spec")).get("ephemeralContainers")):
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    return errs


def validate_ephemeral_containers(spec: Any, path: str = "spec") -> list[FieldError]:
    spec = _dict(spec)
    errs: list[FieldError] = []
    volumes = {_as_str(_dict(v).get("name")) for v in _list(spec.get("volumes"))}
    # the names of the pod's regular containers: what a target may be, and what no other container may be named
    others = {_as_str(_dict(c).get("name")) for group in ("initContainers", "containers")
              for c in _list(spec.get(group))}
    names = set(others)
    for i, container in enumerate(_list(spec.get("ephemeralContainers"))):
        container = _dict(container)
        where = f"{path}.ephemeralContainers[{i}]"
        errs += validate_container(container, where, volumes)
        name = _as_str(container.get("name"))
        if name and name in names:
            errs.append(duplicate(f"{where}.name", name))
        names.add(name)
        target = _as_str(container.get("targetContainerName"))
        if target and target not in others:
            errs.append(not_found(f"{where}.targetContainerName", target))
        errs.extend(forbidden(f"{where}.{field}", _NOT_ALLOWED_DETAIL) for field in _NOT_ALLOWED
                    if _is_set(container.get(field)))
        # subPath mounts are bind mounts that outlive the container until the pod goes: not for a debugger
        for m, mount in enumerate(_list(container.get("volumeMounts"))):
            for field in ("subPath", "subPathExpr"):
                if _as_str(_dict(mount).get(field)):
                    errs.append(forbidden(f"{where}.volumeMounts[{m}].{field}", _NOT_ALLOWED_DETAIL))
    return errs


def validate_ephemeral_containers_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """What pods/NAME/ephemeralcontainers may write: the pod (the rest of it is the stored one, see
    control.apiserver.ephemeral), its ephemeral containers valid, the existing ones unchanged and kept
    (by name: a patch does not keep their order)."""
    errs = validate_pod(new) + validate_ephemeral_containers(new.get("spec"))
    if "kubernetes.io/config.mirror" in (_dict(_dict(old.get("metadata")).get("annotations"))):
        return [forbidden("", "static pods do not support ephemeral containers")]
    path = "spec.ephemeralContainers"
    wanted = {_as_str(_dict(c).get("name")): c for c in _list(_dict(new.get("spec")).get("ephemeralContainers"))}
    for before in _list(_dict(old.get("spec")).get("ephemeralContainers")):
        name = _as_str(_dict(before).get("name"))
        after = wanted.get(name)
        if after is None:
            errs.append(forbidden(path, f"existing ephemeral containers {json.dumps(name)} may not be removed\n"))
        elif after != before:
            errs.append(forbidden(f"{path}[{name}]", f"existing ephemeral containers {json.dumps(name)} may not be "
                                                     "changed\n"))
    return errs
