"""A pod's quality-of-service class, as upstream computes it (pkg/apis/core/helper/qos.GetPodQOS).

    pod_qos_class(pod) -> "Guaranteed" | "Burstable" | "BestEffort"

Only cpu and memory count. BestEffort: no container requests or limits either. Guaranteed: every
container limits both, and the pod's summed requests equal its summed limits. Burstable otherwise.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from control.api.quantity import QuantityError, parse_quantity

__all__ = ["pod_qos_class"]

_QOS_RESOURCES = ("cpu", "memory")


def _amounts(values: Any) -> dict[str, Fraction]:
    """The non-zero cpu and memory amounts of a requests or limits map (bad quantities are validation's)."""
    found: dict[str, Fraction] = {}
    if not isinstance(values, dict):
        return found
    for name in _QOS_RESOURCES:
        if name in values:
            try:
                amount = parse_quantity(values[name]).value
            except QuantityError:
                continue
            if amount != 0:
                found[name] = amount
    return found


def pod_qos_class(pod: dict[str, Any]) -> str:
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            if not isinstance(container, dict):
                continue
            resources = container.get("resources") if isinstance(container.get("resources"), dict) else {}
            assert isinstance(resources, dict)
            for name, amount in _amounts(resources.get("requests")).items():
                requests[name] = requests.get(name, Fraction(0)) + amount
            container_limits = _amounts(resources.get("limits"))
            for name, amount in container_limits.items():
                limits[name] = limits.get(name, Fraction(0)) + amount
            if set(container_limits) != set(_QOS_RESOURCES):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(limits[n] == requests[n] for n in requests):
        return "Guaranteed"
    return "Burstable"
