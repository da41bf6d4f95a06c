"""Field selectors in Kubernetes' string syntax (k8s.io/apimachinery/pkg/fields), `metadata.name=x,spec.nodeName!=y`,
and the labelSelector query parameter, which control.api parses (`app=web,tier!=db,env in (a,b),!canary`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control.api import Selector, SelectorError, parse_selector
from control.api.meta import labels_of
from control.apiserver.errors import bad_request


def parse_label_selector(text: str | None) -> Selector:
    """The labelSelector query parameter (labels.Parse); an unparsable one is a 400, as upstream's."""
    try:
        return parse_selector(text or "")
    except SelectorError as err:
        raise bad_request(str(err)) from None


def labels_match(selector: Selector, obj: dict[str, Any]) -> bool:
    return selector.matches(labels_of(obj))


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
