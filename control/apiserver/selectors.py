"""Label and field selectors in Kubernetes' string syntax (k8s.io/apimachinery/pkg/labels and
pkg/fields): `app=web,tier!=db,env in (a,b),!canary,track` and `metadata.name=x,spec.nodeName!=y`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control.apiserver.errors import APIError, bad_request


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present  # "!"


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text or not text.strip():
        return []
    requirements = []
    for part in _split_top(text):
        if m := _SET.match(part):
            values = tuple(v.strip() for v in m[3].split(",") if v.strip())
            if not values or not all(re.fullmatch(_VALUE, v) for v in values):
                raise bad_request(f"unable to parse requirement: values have to be non-empty and valid: {part!r}")
            requirements.append(Requirement(m[1], m[2], values))
        elif m := _EQ.match(part):
            requirements.append(Requirement(m[1], "!=" if m[2] == "!=" else "=", (m[3],)))
        elif m := _EXISTS.match(part):
            requirements.append(Requirement(m[2], "!" if m[1] else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: found '{part.strip()}', expected: key[=|!=|in|notin]value")
    return requirements


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


# Field selectors each resource supports (upstream's GetAttrs / AddFieldLabelConversionFunc per kind).
_COMMON_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name"),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace"),
}
_EXTRA_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], Any]]] = {
    "pods": {
        "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
        "spec.schedulerName": lambda o: o.get("spec", {}).get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o.get("spec", {}).get("serviceAccountName", ""),
        "spec.restartPolicy": lambda o: o.get("spec", {}).get("restartPolicy", ""),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
    },
    "nodes": {"spec.unschedulable": lambda o: str(bool(o.get("spec", {}).get("unschedulable", False))).lower()},
    "namespaces": {"status.phase": lambda o: o.get("status", {}).get("phase", "")},
    "events": {
        "involvedObject.kind": lambda o: o.get("involvedObject", {}).get("kind", ""),
        "involvedObject.name": lambda o: o.get("involvedObject", {}).get("name", ""),
        "involvedObject.namespace": lambda o: o.get("involvedObject", {}).get("namespace", ""),
        "involvedObject.uid": lambda o: o.get("involvedObject", {}).get("uid", ""),
        "reason": lambda o: o.get("reason", ""),
        "type": lambda o: o.get("type", ""),
    },
    "replicationcontrollers": {"status.replicas": lambda o: str(o.get("status", {}).get("replicas", 0))},
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # = or !=
    value: str


def parse_field_selector(text: str | None, plural: str) -> list[FieldRequirement]:
    if not text or not text.strip():
        return []
    allowed = {**_COMMON_FIELDS, **_EXTRA_FIELDS.get(plural, {})}
    requirements = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        if m[1] not in allowed:
            raise bad_request(f'field label not supported: {m[1]}')
        requirements.append(FieldRequirement(m[1], "!=" if m[2] == "!=" else "=", m[3]))
    return requirements


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any], plural: str) -> bool:
    getters = {**_COMMON_FIELDS, **_EXTRA_FIELDS.get(plural, {})}
    for req in requirements:
        value = getters[req.field](obj)
        value = "" if value is None else str(value)
        if (value == req.value) != (req.op == "="):
            return False
    return True


def selector_from_label_selector(selector: dict[str, Any] | None) -> list[Requirement]:
    """A metav1.LabelSelector object (matchLabels + matchExpressions) as requirements."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise APIError(422, "Invalid", f"invalid label selector operator {expr.get('operator')!r}")
        reqs.append(Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())))
    return reqs
