"""Defaulting and validation of CustomResourceDefinition objects, after upstream's
apiextensions/v1/defaults.go and apiextensions/validation/validation.go (ValidateCustomResourceDefinition):
names, group, scope, versions (unique, exactly one storage version, each with a structural schema),
subresources, printer columns and conversion. Messages and field paths are upstream's.
"""

from __future__ import annotations

import re
from typing import Any

from control.apiserver.crd import structural
from control.apiserver.validation import FieldError, go_value

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")


def default_crd(crd: dict[str, Any]) -> None:
    """SetDefaults_CustomResourceDefinitionSpec: singular and listKind from kind, conversion None."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    if not isinstance(spec.get("conversion"), dict):
        spec["conversion"] = {"strategy": "None"}


def _err(kind: str, path: str, message: str) -> FieldError:
    return FieldError(kind, path, message)


def _name_checks(value: Any, path: str, pattern: re.Pattern[str], what: str, *, required: bool = True
                 ) -> list[FieldError]:
    if not value:
        return [_err("FieldValueRequired", path, "Required value")] if required else []
    if not isinstance(value, str) or len(value) > 63 or not pattern.match(value):
        return [_err("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {what}")]
    return []


def _names_errors(names: Any, path: str) -> list[FieldError]:
    if not isinstance(names, dict):
        return [_err("FieldValueRequired", path, "Required value")]
    found: list[FieldError] = []
    for key in ("plural", "singular"):
        found += _name_checks(names.get(key), f"{path}.{key}", _DNS1035,
                              "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                              "with an alphabetic character, and end with an alphanumeric character")
    for key in ("kind", "listKind"):
        value = names.get(key)
        found += _name_checks(str(value).lower() if isinstance(value, str) else value, f"{path}.{key}", _DNS1035,
                              "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?")
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        found.append(_err("FieldValueInvalid", f"{path}.listKind",
                          f"Invalid value: {go_value(names['listKind'])}: kind and listKind may not be the same"))
    for i, short in enumerate(names.get("shortNames") or []):
        found += _name_checks(short, f"{path}.shortNames[{i}]", _DNS1123_LABEL,
                              "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")
    for i, category in enumerate(names.get("categories") or []):
        found += _name_checks(category, f"{path}.categories[{i}]", _DNS1123_LABEL,
                              "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")
    return found


def _version_errors(version: dict[str, Any], path: str) -> list[FieldError]:
    found = _name_checks(version.get("name"), f"{path}.name", _DNS1035,
                         "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                         "alphabetic character, and end with an alphanumeric character")
    for flag in ("served", "storage"):
        if not isinstance(version.get(flag), bool):
            found.append(_err("FieldValueRequired", f"{path}.{flag}", "Required value"))
    schema = (version.get("schema") or {}).get("openAPIV3Schema") if isinstance(version.get("schema"), dict) \
        else None
    found += structural.problems(schema, f"{path}.schema.openAPIV3Schema")
    if isinstance(schema, dict):
        found += _default_errors(schema, f"{path}.schema.openAPIV3Schema")
    subresources = version.get("subresources") or {}
    scale = subresources.get("scale") if isinstance(subresources, dict) else None
    if isinstance(scale, dict):
        scale_path = f"{path}.subresources.scale"
        spec_path, status_path = scale.get("specReplicasPath"), scale.get("statusReplicasPath")
        if not spec_path:
            found.append(_err("FieldValueRequired", f"{scale_path}.specReplicasPath", "Required value"))
        elif not str(spec_path).startswith(".spec."):
            found.append(_err("FieldValueInvalid", f"{scale_path}.specReplicasPath",
                              f"Invalid value: {go_value(spec_path)}: should be a json path under .spec"))
        if not status_path:
            found.append(_err("FieldValueRequired", f"{scale_path}.statusReplicasPath", "Required value"))
        elif not str(status_path).startswith(".status."):
            found.append(_err("FieldValueInvalid", f"{scale_path}.statusReplicasPath",
                              f"Invalid value: {go_value(status_path)}: should be a json path under .status"))
        selector = scale.get("labelSelectorPath")
        if selector and not (str(selector).startswith(".spec.") or str(selector).startswith(".status.")):
            found.append(_err("FieldValueInvalid", f"{scale_path}.labelSelectorPath",
                              f"Invalid value: {go_value(selector)}: should be a json path under either .spec or "
                              ".status"))
    for i, column in enumerate(version.get("additionalPrinterColumns") or []):
        column_path = f"{path}.additionalPrinterColumns[{i}]"
        if not isinstance(column, dict):
            continue
        if not column.get("name"):
            found.append(_err("FieldValueRequired", f"{column_path}.name", "Required value"))
        if column.get("type") not in _COLUMN_TYPES:
            found.append(_err("FieldValueNotSupported", f"{column_path}.type",
                              f"Unsupported value: {go_value(column.get('type', ''))}: supported values: "
                              + ", ".join(f'"{t}"' for t in _COLUMN_TYPES)))
        if not column.get("jsonPath"):
            found.append(_err("FieldValueRequired", f"{column_path}.jsonPath", "Required value"))
    return found


def _default_errors(schema: dict[str, Any], path: str) -> list[FieldError]:
    """A `default:` must itself validate against its own node (upstream's validateStructuralDefaults)."""
    found: list[FieldError] = []

    def walk(node: dict[str, Any], at: str) -> None:
        if "default" in node:
            for problem in structural.validate(node, node["default"], f"{at}.default"):
                found.append(problem)
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict):
                walk(sub, f"{at}.properties[{name}]")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{at}.{key}")

    walk(schema, path)
    return found


def validate_crd(crd: dict[str, Any]) -> list[FieldError]:
    meta = crd.get("metadata") or {}
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [_err("FieldValueRequired", "spec", "Required value")]
    found: list[FieldError] = []
    group = spec.get("group")
    if not group:
        found.append(_err("FieldValueRequired", "spec.group", "Required value"))
    elif not isinstance(group, str) or len(group) > 253 or not _SUBDOMAIN.match(group):
        found.append(_err("FieldValueInvalid", "spec.group", f"Invalid value: {go_value(group)}: a lowercase RFC 1123 "
                          "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
                          "and end with an alphanumeric character"))
    elif "." not in group:
        found.append(_err("FieldValueInvalid", "spec.group",
                          f"Invalid value: {go_value(group)}: should be a domain with at least one dot"))
    names = spec.get("names")
    plural = names.get("plural") if isinstance(names, dict) else None
    if meta.get("name") != f"{plural}.{group}":
        found.append(_err("FieldValueInvalid", "metadata.name", f"Invalid value: {go_value(meta.get('name', ''))}: "
                          "must be spec.names.plural+\".\"+spec.group"))
    scope = spec.get("scope")
    if not scope:
        found.append(_err("FieldValueRequired", "spec.scope", "Required value"))
    elif scope not in ("Cluster", "Namespaced"):
        found.append(_err("FieldValueNotSupported", "spec.scope",
                          f'Unsupported value: {go_value(scope)}: supported values: "Cluster", "Namespaced"'))
    found += _names_errors(names, "spec.names")
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        found.append(_err("FieldValueInvalid", "spec.versions", "Invalid value: null: must have exactly one version "
                          "marked as storage version"))
        versions = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if not isinstance(version, dict):
            found.append(_err("FieldValueInvalid", f"spec.versions[{i}]", "Invalid value: must be an object"))
            continue
        name = str(version.get("name", ""))
        if name in seen:
            found.append(_err("FieldValueDuplicate", f"spec.versions[{i}].name", f"Duplicate value: {go_value(name)}"))
        seen.add(name)
        found += _version_errors(version, f"spec.versions[{i}]")
    storage = [v.get("name") for v in versions if isinstance(v, dict) and v.get("storage") is True]
    if versions and len(storage) != 1:
        found.append(_err("FieldValueInvalid", "spec.versions",
                          f"Invalid value: {go_value([str(v.get('name')) for v in versions if isinstance(v, dict)])}: "
                          "must have exactly one version marked as storage version"))
    if versions and not any(isinstance(v, dict) and v.get("served") is True for v in versions):
        found.append(_err("FieldValueInvalid", "spec.versions", "Invalid value: must have at least one version "
                          "marked as served"))
    strategy = (spec.get("conversion") or {}).get("strategy")
    if strategy == "Webhook":
        found.append(_err("FieldValueForbidden", "spec.conversion.strategy", "Forbidden: conversion webhooks are not "
                          "served by this apiserver; use strategy None (versions must then share one schema shape)"))
    elif strategy not in ("None", None):
        found.append(_err("FieldValueNotSupported", "spec.conversion.strategy",
                          f'Unsupported value: {go_value(strategy)}: supported values: "None", "Webhook"'))
    if spec.get("preserveUnknownFields") is True:
        found.append(_err("FieldValueInvalid", "spec.preserveUnknownFields", "Invalid value: true: must be false in "
                          "order to use defaults in the schema; set x-kubernetes-preserve-unknown-fields: true in "
                          "spec.versions[*].schema instead"))
    return found


def validate_crd_update(crd: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    found = validate_crd(crd)
    spec, old_spec = crd.get("spec") or {}, old.get("spec") or {}
    for key in ("group", "scope"):
        if isinstance(spec, dict) and isinstance(old_spec, dict) and spec.get(key) != old_spec.get(key) \
                and key in old_spec:
            found.append(_err("FieldValueInvalid", f"spec.{key}",
                              f"Invalid value: {go_value(spec.get(key))}: field is immutable"))
    stored = set(((old.get("status") or {}).get("storedVersions")) or [])
    versions = {v.get("name") for v in (spec.get("versions") or []) if isinstance(v, dict)}
    for gone in sorted(stored - versions):
        found.append(_err("FieldValueInvalid", "status.storedVersions", f"Invalid value: {go_value(sorted(stored))}: "
                          f"must appear in spec.versions ({gone} is still stored)"))
    return found


__all__ = ["default_crd", "validate_crd", "validate_crd_update"]
