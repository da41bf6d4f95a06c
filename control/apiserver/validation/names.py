"""Object metadata, names and addresses, as k8s.io/apimachinery validates them.

    validate_object_meta(obj, is_dns1123_subdomain)  -> errors of metadata.name, labels, annotations, owners

Rules and messages follow apimachinery/pkg/api/validation (objectmeta.go, generic.go: ObjectMeta, owner
references, the per-kind name function) and apimachinery/pkg/apis/meta/v1/validation (labels, label
selectors). The name and value validators themselves (DNS-1123, qualified names, ports) are
apimachinery/pkg/util/validation's, in control.api.validators.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from control.api.validators import is_label_value, is_qualified_name
from control.apiserver.validation.field import FieldError, _as_str, _dict, _list, forbidden, invalid, required, too_long

# -- names and values: the validators of apimachinery/pkg/util/validation live in control.api.validators -------


def _is_ip(value: Any, version: int | None = None) -> bool:
    if not isinstance(value, str):
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return version is None or address.version == version


def _ip_errors(path: str, value: Any) -> list[FieldError]:
    if _is_ip(value):
        return []
    return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]


# -- metadata (apimachinery/pkg/api/validation/objectmeta.go, meta/v1/validation) ------------------------------

NameCheck = Callable[[str], list[str]]
TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in _dict(labels).items():
        errs.extend(invalid(path, key, msg) for msg in is_qualified_name(key))
        if not isinstance(value, str):
            errs.append(invalid(path, value, "must be a string"))
            continue
        errs.extend(invalid(path, value, msg) for msg in is_label_value(value))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    size = 0
    for key, value in _dict(annotations).items():
        errs.extend(invalid(path, key, msg) for msg in is_qualified_name(key.lower()))
        size += len(key) + len(value if isinstance(value, str) else "")
    if size > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))
    return errs


def validate_object_meta(obj: dict[str, Any], name_check: NameCheck) -> list[FieldError]:
    meta = _dict(obj.get("metadata"))
    name = _as_str(meta.get("name"))
    errs: list[FieldError] = []
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        errs.extend(invalid("metadata.name", name, msg) for msg in name_check(name))
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    errs += validate_annotations(meta.get("annotations"), "metadata.annotations")
    errs += validate_owner_references(meta.get("ownerReferences"), "metadata.ownerReferences")
    return errs


# Kinds that may never own anything (upstream's BannedOwners): events are not durable.
_BANNED_OWNERS = {("", "v1", "Event")}


def _group_version(api_version: str) -> tuple[str, str]:
    """(group, version) of an apiVersion as schema.ParseGroupVersion reads it; ("", "") when it cannot."""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def _validate_owner_reference(ref: dict[str, Any], path: str) -> list[FieldError]:
    api_version, kind = _as_str(ref.get("apiVersion")), _as_str(ref.get("kind"))
    group, version = _group_version(api_version)
    errs: list[FieldError] = []
    if not version:
        errs.append(invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
    if not kind:
        errs.append(invalid(f"{path}.kind", kind, "must not be empty"))
    for field in ("name", "uid"):
        if not _as_str(ref.get(field)):
            errs.append(invalid(f"{path}.{field}", _as_str(ref.get(field)), "must not be empty"))
    if (group, version, kind) in _BANNED_OWNERS:
        errs.append(invalid(path, ref, f"{group}/{version}, Kind={kind} is disallowed from being an owner"))
    return errs


def validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    """Upstream's ValidateOwnerReferences: each reference names apiVersion, kind, name and uid, and at most one
    is the controller. Errors name the list itself (not an index), as upstream's do."""
    errs: list[FieldError] = []
    first_controller = ""
    for ref in _list(refs):
        ref = _dict(ref)
        errs += _validate_owner_reference(ref, path)
        if ref.get("controller") is True:
            current = f"{_as_str(ref.get('kind'))}/{_as_str(ref.get('name'))}"
            if first_controller:
                errs.append(invalid(path, refs, "Only one reference can have Controller set to true. Found "
                                    f'"true" in references for {first_controller} and {current}'))
            else:
                first_controller = current
    return errs


_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(selector: Any, path: str) -> list[FieldError]:
    selector = _dict(selector)
    errs = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(_list(selector.get("matchExpressions"))):
        where = f"{path}.matchExpressions[{i}]"
        req = _dict(req)
        operator, values = req.get("operator"), _list(req.get("values"))
        if operator in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{where}.values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{where}.operator", operator, "not a valid selector operator"))
        key = _as_str(req.get("key"))
        errs.extend(invalid(f"{where}.key", key, msg) for msg in is_qualified_name(key))
    return errs
