"""What the registry and the HTTP layer ask of custom resources (and of the CRD and APIService kinds):

    admission_for(res)        -> the defaulting / validation of that resource, or None for the built-in tables
    prune(res, obj)           -> what its schema does not specify, removed (fieldValidation's unknown fields)
    scale_of(res, obj)        -> its autoscaling/v1 Scale, read through the CRD's scale paths
    set_replicas(res, obj, n) -> the object with n replicas at specReplicasPath
    to_table(res, ...)        -> a meta.k8s.io/v1 Table from its additionalPrinterColumns, or None
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from control.apiserver import validation
from control.apiserver.crd import definition, structural
from control.apiserver.crd.apiservice import apiservice_row, validate_apiservice
from control.apiserver.crd.catalog import GROUP, Column, CustomResource
from control.apiserver.resources import Resource
from control.apiserver.tables import _age  # the built-in tables' age format (upstream's HumanDuration)
from control.apiserver.validation import FieldError, go_value


def _meta_errors(obj: dict[str, Any]) -> list[FieldError]:
    """ObjectMeta's checks (name a DNS subdomain, labels, annotations, owner references), as for every kind:
    the validation package gives a kind without rules of its own just these (the name is not the custom
    kind's, which may be a built-in's)."""
    return validation.validate("CustomResource", obj)


# The admissions below are the registry's Admission protocol; they return list[Any] because the protocol's
# FieldErrorLike lives in registry.py, which imports this module.


class CustomAdmission:
    """A custom resource's admission: its version's schema defaults and validates it."""

    def __init__(self, res: CustomResource):
        self.res = res

    def default(self, kind: str, obj: dict[str, Any]) -> None:
        structural.apply_defaults(self.res.schema, obj)

    def validate_create(self, kind: str, obj: dict[str, Any]) -> list[Any]:
        return _meta_errors(obj) + self._validate(obj)

    def validate_update(self, kind: str, obj: dict[str, Any], old: dict[str, Any], *,
                        subresource: str | None = None) -> list[Any]:
        return _meta_errors(obj) + self._validate(obj)

    def _validate(self, obj: dict[str, Any]) -> list[FieldError]:
        found = structural.validate(self.res.schema, obj)
        if self.res.scale is not None and not found:
            found += _replicas_errors(self.res, obj)
        return found


class CRDAdmission:
    def default(self, kind: str, obj: dict[str, Any]) -> None:
        definition.default_crd(obj)

    def validate_create(self, kind: str, obj: dict[str, Any]) -> list[Any]:
        return _meta_errors(obj) + definition.validate_crd(obj)

    def validate_update(self, kind: str, obj: dict[str, Any], old: dict[str, Any], *,
                        subresource: str | None = None) -> list[Any]:
        return definition.validate_crd_update(obj, old)


class APIServiceAdmission:
    def default(self, kind: str, obj: dict[str, Any]) -> None:
        pass

    def validate_create(self, kind: str, obj: dict[str, Any]) -> list[Any]:
        return validate_apiservice(obj)

    def validate_update(self, kind: str, obj: dict[str, Any], old: dict[str, Any], *,
                        subresource: str | None = None) -> list[Any]:
        return validate_apiservice(obj)


_CRD_ADMISSION = CRDAdmission()
_APISERVICE_ADMISSION = APIServiceAdmission()


def admission_for(res: Resource) -> CustomAdmission | CRDAdmission | APIServiceAdmission | None:
    if isinstance(res, CustomResource):
        return CustomAdmission(res)
    if res.group == GROUP and res.kind == "CustomResourceDefinition":
        return _CRD_ADMISSION
    if res.group == "apiregistration.k8s.io" and res.kind == "APIService":
        return _APISERVICE_ADMISSION
    return None


def prune(res: CustomResource, obj: dict[str, Any]) -> list[str]:
    """Drop what the version's schema does not specify; the dotted paths dropped (fieldValidation's unknown
    fields)."""
    return structural.prune(res.schema, obj)


# -- JSON paths (the simple form CRDs use: .a.b, .a[0], .a[?(@.k=="v")].b) ------------------------------------------

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\?\(@\.([^=!]+)==[\"']([^\"']*)[\"']\)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    """The values at a CRD JSON path (kubectl's JSONPath subset printer columns use); [] if absent."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    values = [obj]
    pos = 0
    while pos < len(text):
        match = _STEP.match(text, pos)
        if match is None:
            return []
        pos = match.end()
        nxt: list[Any] = []
        for value in values:
            if match[1] is not None and isinstance(value, dict) and match[1] in value:
                nxt.append(value[match[1]])
            elif match[2] is not None and isinstance(value, list) and int(match[2]) < len(value):
                nxt.append(value[int(match[2])])
            elif match[3] is not None and isinstance(value, list):
                nxt += [v for v in value if isinstance(v, dict) and str(v.get(match[3])) == match[4]]
        values = nxt
    return values


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.lstrip(".").split(".")
    node = obj
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


# -- scale ---------------------------------------------------------------------------------------------------------


def _replicas_errors(res: CustomResource, obj: dict[str, Any]) -> list[FieldError]:
    assert res.scale is not None
    found = json_path(obj, res.scale.spec_replicas)
    # Upstream's validateScaleSpec: whatever the schema says, the replicas the scale path reads are a count.
    if found and not (isinstance(found[0], int) and not isinstance(found[0], bool)):
        return [FieldError("FieldValueInvalid", res.scale.spec_replicas.lstrip("."),
                           f"Invalid value: {go_value(found[0])}: should be an integer")]
    if found and found[0] < 0:
        return [FieldError("FieldValueInvalid", res.scale.spec_replicas.lstrip("."),
                           f"Invalid value: {found[0]}: should be a non-negative integer")]
    return []


def scale_of(res: CustomResource, obj: dict[str, Any]) -> dict[str, Any]:
    assert res.scale is not None
    meta = obj["metadata"]
    spec = json_path(obj, res.scale.spec_replicas)
    status = json_path(obj, res.scale.status_replicas)
    selector = json_path(obj, res.scale.label_selector) if res.scale.label_selector else []
    scale: dict[str, Any] = {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": spec[0] if spec and isinstance(spec[0], int) else 0},
        "status": {"replicas": status[0] if status and isinstance(status[0], int) else 0}}
    if selector and isinstance(selector[0], str):
        scale["status"]["selector"] = selector[0]
    return scale


def set_replicas(res: CustomResource, obj: dict[str, Any], replicas: int) -> dict[str, Any]:
    assert res.scale is not None
    _set_path(obj, res.scale.spec_replicas, replicas)
    return obj


# -- tables --------------------------------------------------------------------------------------------------------

_AGE = Column("Age", "date", ".metadata.creationTimestamp")


def _cell(column: Column, obj: dict[str, Any]) -> Any:
    values = json_path(obj, column.json_path)
    if not values:
        return None
    value = values[0]
    if column.type == "date":
        return _age(value) if isinstance(value, str) else None
    if column.type == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if column.type == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def to_table(res: Resource, objects: list[dict[str, Any]], list_meta: dict[str, Any],
             include_object: str) -> dict[str, Any] | None:
    """A custom resource's Table (upstream's tableconvertor: Name, then the printer columns, else Age), or the
    APIService's (Name, Service, Available, Age), or the CRD's (Name, Created At); None for the other built-ins."""
    if res.group == GROUP and res.kind == "CustomResourceDefinition":  # upstream: NAME, CREATED AT
        columns = [Column("Name", "string", ".metadata.name"), Column("Created At", "date", "")]

        def rows_of(obj: dict[str, Any]) -> list[Any]:
            return [obj["metadata"].get("name"), obj["metadata"].get("creationTimestamp")]
    elif res.group == "apiregistration.k8s.io" and res.kind == "APIService":
        columns = [Column("Name", "string", ".metadata.name"), Column("Service", "string", ""),
                   Column("Available", "string", ""), _AGE]
        rows_of = apiservice_row
    elif isinstance(res, CustomResource):
        columns = [Column("Name", "string", ".metadata.name", description="Name must be unique within a namespace."),
                   *(res.columns or (_AGE,))]

        def rows_of(obj: dict[str, Any]) -> list[Any]:
            return [obj["metadata"].get("name"), *(_cell(c, obj) for c in columns[1:])]
    else:
        return None
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": rows_of(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": copy.deepcopy(obj.get("metadata", {}))}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": [{"name": c.name, "type": c.type,
                                   "format": "name" if c.name == "Name" and c is columns[0] else c.format,
                                   "description": c.description, "priority": c.priority} for c in columns],
            "rows": rows}


__all__ = ["admission_for", "json_path", "prune", "scale_of", "set_replicas", "to_table"]
