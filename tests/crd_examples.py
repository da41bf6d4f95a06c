"""The CustomResourceDefinition the CRD tests share: upstream's CronTab example (the "Extend the Kubernetes
API with CustomResourceDefinitions" task page), grown with what the tests exercise: two versions (v1 the
storage one), validation (pattern, bounds), a default, status and scale subresources, printer columns,
a category, a set-typed list and a map-typed list."""

from __future__ import annotations

import copy
from typing import Any

GROUP = "stable.example.com"
NAME = f"crontabs.{GROUP}"

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "selector": {"type": "string"},
                "port": {"x-kubernetes-int-or-string": True},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                           "items": {"type": "object", "required": ["name"],
                                     "properties": {"name": {"type": "string"}, "weight": {"type": "integer"}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "x-kubernetes-preserve-unknown-fields": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                                                    "labelSelector": {"type": "string"}}},
    },
}


def crontab_crd(*, versions: tuple[str, ...] = ("v1",), scope: str = "Namespaced") -> dict[str, Any]:
    """The CRD; the first of `versions` is the storage version, all are served with the same schema."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": NAME},
        "spec": {
            "group": GROUP, "scope": scope,
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"],
                      "categories": ["all"]},
            "versions": [{
                "name": version, "served": True, "storage": i == 0,
                "schema": {"openAPIV3Schema": copy.deepcopy(_SCHEMA)},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                         "statusReplicasPath": ".status.replicas",
                                                         "labelSelectorPath": ".status.labelSelector"}},
                "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec",
                     "description": "The cron spec defining the interval a CronJob is run"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            } for i, version in enumerate(versions)],
        },
    }


def crontab(name: str, namespace: str | None = "default", version: str = "v1", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": f"{GROUP}/{version}", "kind": "CronTab", "metadata": meta,
            "spec": {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", **spec}}
