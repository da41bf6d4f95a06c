"""Validation of rbac.authorization.k8s.io/v1 objects (pkg/apis/rbac/validation/validation.go).

Names are path segments (ValidateRBACName): anything but "." and "..", without "/" or "%".
"""

from __future__ import annotations

from typing import Any

from control.api.validators import is_dns1123_subdomain
from control.apiserver.validation.field import FieldError, _dict, _list, invalid, not_supported, required
from control.apiserver.validation.names import validate_label_selector, validate_object_meta

RBAC_GROUP = "rbac.authorization.k8s.io"


def rbac_name(name: str) -> list[str]:
    """path.IsValidPathSegmentName."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _rule(rule: Any, path: str, namespaced: bool) -> list[FieldError]:
    rule = _dict(rule)
    errs: list[FieldError] = []
    if not _list(rule.get("verbs")):
        errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = _list(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            errs.append(invalid(f"{path}.nonResourceURLs", urls,
                                "namespaced rules cannot apply to non-resource URLs"))
        if _list(rule.get("apiGroups")) or _list(rule.get("resources")):
            errs.append(invalid(f"{path}.nonResourceURLs", urls,
                                "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not _list(rule.get("apiGroups")):
        errs.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not _list(rule.get("resources")):
        errs.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return errs


def _rules(obj: dict[str, Any], namespaced: bool) -> list[FieldError]:
    return [e for i, r in enumerate(_list(obj.get("rules"))) for e in _rule(r, f"rules[{i}]", namespaced)]


def validate_role(obj: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta(obj, rbac_name) + _rules(obj, True)


def validate_cluster_role(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, rbac_name) + _rules(obj, False)
    aggregation = obj.get("aggregationRule")
    if aggregation is not None:
        selectors = _list(_dict(aggregation).get("clusterRoleSelectors"))
        if not selectors:
            errs.append(required("aggregationRule.clusterRoleSelectors",
                                 "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, selector in enumerate(selectors):
            errs += validate_label_selector(selector, f"aggregationRule.clusterRoleSelectors[{i}]")
    return errs


def _subject(subject: Any, path: str, cluster: bool) -> list[FieldError]:
    subject = _dict(subject)
    kind, name, group = subject.get("kind"), subject.get("name") or "", subject.get("apiGroup") or ""
    errs: list[FieldError] = []
    if not name:
        errs.append(required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            errs += [invalid(f"{path}.name", name, m) for m in is_dns1123_subdomain(name)]
        if group:
            errs.append(not_supported(f"{path}.apiGroup", group, [""]))
        if cluster and not subject.get("namespace"):
            errs.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            errs.append(not_supported(f"{path}.apiGroup", group, [RBAC_GROUP]))
    else:
        errs.append(not_supported(f"{path}.kind", kind or "", ["ServiceAccount", "User", "Group"]))
    return errs


def _binding(obj: dict[str, Any], cluster: bool) -> list[FieldError]:
    errs = validate_object_meta(obj, rbac_name)
    ref = _dict(obj.get("roleRef"))
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", [RBAC_GROUP]))
    kinds = ["ClusterRole"] if cluster else ["Role", "ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind") or "", kinds))
    if not ref.get("name"):
        errs.append(required("roleRef.name"))
    else:
        errs += [invalid("roleRef.name", ref["name"], m) for m in rbac_name(str(ref["name"]))]
    for i, subject in enumerate(_list(obj.get("subjects"))):
        errs += _subject(subject, f"subjects[{i}]", cluster)
    return errs


def validate_role_binding(obj: dict[str, Any]) -> list[FieldError]:
    return _binding(obj, False)


def validate_cluster_role_binding(obj: dict[str, Any]) -> list[FieldError]:
    return _binding(obj, True)


def _role_ref_immutable(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    if old.get("roleRef") != new.get("roleRef"):
        return [invalid("roleRef", new.get("roleRef"), "cannot change roleRef")]
    return []


def validate_role_binding_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_role_binding(new) + _role_ref_immutable(new, old)


def validate_cluster_role_binding_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_cluster_role_binding(new) + _role_ref_immutable(new, old)


__all__ = ["validate_cluster_role", "validate_cluster_role_binding",
           "validate_cluster_role_binding_update", "validate_role", "validate_role_binding",
           "validate_role_binding_update"]
