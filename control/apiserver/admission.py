"""Defaulting and validation as the registry calls them (registry.Admission). `KubernetesAdmission`
uses the per-kind tables of defaults.py and the validation package; names are checked for every kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from control.api.jsoncopy import json_copy
from control.apiserver import defaults, validation
from control.apiserver.registry import FieldErrorLike
from control.apiserver.validation.rbac import rbac_name

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class NameError_:
    type: str
    field: str
    message: str


_PATH_SEGMENT_NAMED = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})


def name_errors(obj: dict[str, Any], kind: str = "") -> list[FieldErrorLike]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        return [NameError_("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")]
    if kind in _PATH_SEGMENT_NAMED:  # RBAC names are path segments ("system:node"), not subdomains
        return [NameError_("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {problem}')
                for problem in rbac_name(str(name))]
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return [NameError_("FieldValueInvalid", "metadata.name",
                           f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                           "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                           "(e.g. 'example.com', regex used for validation is "
                           r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]
    return []


class BasicAdmission:
    """Names only: what every kind needs before the per-kind tables are in place."""

    def default(self, kind: str, obj: dict[str, Any]) -> None:
        pass

    def validate_create(self, kind: str, obj: dict[str, Any]) -> list[FieldErrorLike]:
        return name_errors(obj, kind)

    def validate_update(self, kind: str, obj: dict[str, Any], old: dict[str, Any], *,
                        subresource: str | None = None) -> list[FieldErrorLike]:
        return []


def _drop_type_dependent_fields(new: dict[str, Any], old: dict[str, Any]) -> None:
    """A Service changing type drops the fields only its old type could carry, unless the update changed
    them itself (upstream's service strategy, dropTypeDependentFields)."""
    spec, old_spec = new.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict) or not isinstance(old_spec, dict):
        return
    new_type, old_type = spec.get("type"), old_spec.get("type")
    dropped: list[str] = []
    if old_type in ("NodePort", "LoadBalancer") and new_type not in ("NodePort", "LoadBalancer"):
        dropped.append("externalTrafficPolicy")
    if old_type == "LoadBalancer" and new_type != "LoadBalancer":
        dropped += ["allocateLoadBalancerNodePorts", "loadBalancerClass"]
    if old_type != "ExternalName" and new_type == "ExternalName":
        dropped += ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"]
    for field in dropped:
        if spec.get(field) == old_spec.get(field):
            spec.pop(field, None)


class KubernetesAdmission:
    """Upstream's defaulting (defaults.py) and validation (validation/), per kind; names for every kind."""

    def default(self, kind: str, obj: dict[str, Any]) -> None:
        defaults.default(kind, obj)

    def validate_create(self, kind: str, obj: dict[str, Any]) -> list[FieldErrorLike]:
        return list(validation.validate(kind, obj))

    def validate_update(self, kind: str, obj: dict[str, Any], old: dict[str, Any], *,
                        subresource: str | None = None) -> list[FieldErrorLike]:
        if kind == "Service":
            _drop_type_dependent_fields(obj, old)
        # Objects stored before a default existed are judged as if they had it (upstream defaults on read);
        # a status update, which the registry does not default, then passes on an old object too.
        current, previous = json_copy(obj), json_copy(old)
        defaults.default(kind, current)
        defaults.default(kind, previous)
        return list(validation.validate_update(kind, current, previous, subresource=subresource))
