"""apiregistration.k8s.io/v1 APIServices: stored objects like any other; the Local ones (spec.service null,
served by this apiserver itself) are kept in step with what is served, as kube-apiserver's autoregister and
crdregistration controllers do: one per built-in group version at start, one per group version of an
Established CRD while it is served. Nothing here proxies to a remote APIService (no API aggregation).
"""

from __future__ import annotations

import re
from typing import Any

from control.apiserver.tables import _age  # the built-in tables' age format
from control.apiserver.validation import FieldError, go_value

AUTOREGISTER_LABEL = "kube-aggregator.kubernetes.io/automanaged"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# kube-apiserver's apiVersionPriorities (cmd/kube-apiserver/app/aggregator.go) for the groups served here.
_PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apps", "v1"): (17800, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authentication.k8s.io", "v1beta1"): (17700, 9),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("batch", "v1"): (17400, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("apiregistration.k8s.io", "v1"): (18000, 15),
}
# What crdregistration gives the group versions of CRDs.
CRD_PRIORITY = (1000, 100)
# Built in here, a CRD upstream (sigs.k8s.io/network-policy-api): its APIService is as crdregistration makes it.
_PRIORITIES[("policy.networking.k8s.io", "v1alpha1")] = CRD_PRIORITY


def apiservice_name(group: str, version: str) -> str:
    return f"{version}.{group}"


def local_apiservice(group: str, version: str, priority: tuple[int, int] | None = None) -> dict[str, Any]:
    group_minimum, version_priority = priority or _PRIORITIES.get((group, version), (16000, 15))
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": apiservice_name(group, version), "labels": {AUTOREGISTER_LABEL: "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": group_minimum,
                     "versionPriority": version_priority, "service": None}}


def local_status() -> dict[str, Any]:
    return {"conditions": [{"type": "Available", "status": "True", "reason": "Local",
                            "message": "Local APIServices are always available"}]}


def validate_apiservice(obj: dict[str, Any]) -> list[FieldError]:
    """Upstream's ValidateAPIService: the name is version.group, priorities in range, a service or Local."""
    spec = obj.get("spec")
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(spec, dict):
        return [FieldError("FieldValueRequired", "spec", "Required value")]
    found: list[FieldError] = []
    group, version = spec.get("group", ""), spec.get("version")
    if name != apiservice_name(str(group), str(version)):
        found.append(FieldError("FieldValueInvalid", "metadata.name", f"Invalid value: {go_value(name)}: must be "
                                f"{apiservice_name(str(group), str(version))}"))
    if not version:
        found.append(FieldError("FieldValueRequired", "spec.version", "Required value"))
    elif not isinstance(version, str) or not _DNS1035.match(version):
        found.append(FieldError("FieldValueInvalid", "spec.version", f"Invalid value: {go_value(version)}: a DNS-1035 "
                                "label must consist of lower case alphanumeric characters or '-'"))
    minimum, priority = spec.get("groupPriorityMinimum"), spec.get("versionPriority")
    if not isinstance(minimum, int) or not 0 < minimum <= 20000:
        found.append(FieldError("FieldValueInvalid", "spec.groupPriorityMinimum",
                                f"Invalid value: {go_value(minimum)}: must be positive and less than 20000"))
    if not isinstance(priority, int) or not 0 < priority <= 1000:
        found.append(FieldError("FieldValueInvalid", "spec.versionPriority",
                                f"Invalid value: {go_value(priority)}: must be positive and less than 1000"))
    service = spec.get("service")
    if service is not None:
        if not isinstance(service, dict) or not service.get("name") or not service.get("namespace"):
            found.append(FieldError("FieldValueRequired", "spec.service", "Required value: namespace and name are "
                                    "required"))
        if not spec.get("caBundle") and not spec.get("insecureSkipTLSVerify"):
            found.append(FieldError("FieldValueRequired", "spec.caBundle", "Required value: must be set unless "
                                    "insecureSkipTLSVerify is true"))
    return found


def apiservice_row(obj: dict[str, Any]) -> list[Any]:
    """printAPIService: Name, Service (Local or namespace/name), Available (the condition, with its reason when
    not True), Age."""
    spec = obj.get("spec") or {}
    service = spec.get("service")
    shown = f"{service.get('namespace', '')}/{service.get('name', '')}" if isinstance(service, dict) else "Local"
    available = "Unknown"
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Available":
            available = str(condition.get("status"))
            if available != "True" and condition.get("reason"):
                available += f" ({condition['reason']})"
    return [obj["metadata"].get("name"), shown, available, _age(obj["metadata"].get("creationTimestamp"))]


__all__ = ["AUTOREGISTER_LABEL", "CRD_PRIORITY", "apiservice_name", "apiservice_row", "local_apiservice",
           "local_status", "validate_apiservice"]
