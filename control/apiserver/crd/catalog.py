"""The custom resources being served: one `CustomResource` row per served version of each Established
CustomResourceDefinition, built from the CRD object (its accepted names, schemas, subresources, columns).

A CustomResource is a `resources.Resource` like the built-in rows, so routing, storage and watch treat it
the same; what differs is in the hooks it overrides: its watch cache is keyed "plural.group" (two groups
may share a plural), it is stored at the CRD's storage version and read back at the version asked for
with that version's defaults applied (conversion strategy None, as upstream), and any change outside
metadata and status bumps its generation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from control.apiserver.crd import structural
from control.apiserver.resources import ALL_VERBS, Resource

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


@dataclass(frozen=True)
class Column:
    """An additionalPrinterColumn."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    format: str = ""
    description: str = ""


@dataclass(frozen=True)
class ScalePaths:
    spec_replicas: str
    status_replicas: str
    label_selector: str | None


@dataclass(frozen=True)
class CustomResource(Resource):
    crd_name: str = ""
    storage_version: str = ""
    schema: dict[str, Any] = field(default_factory=dict, compare=False)
    columns: tuple[Column, ...] = ()
    scale: ScalePaths | None = None

    @property
    def cache_key(self) -> str:
        return f"{self.plural}.{self.group}"

    def from_storage(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The stored object as this version serves it: a copy, defaulted, with this apiVersion."""
        served = copy.deepcopy(obj)
        served["apiVersion"] = self.api_version
        structural.apply_defaults(self.schema, served)
        return served

    def to_storage(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "apiVersion": f"{self.group}/{self.storage_version}"}

    def generation_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        ignored = ("metadata", "status") if self.status_subresource else ("metadata",)
        return {k: v for k, v in new.items() if k not in ignored} != \
            {k: v for k, v in old.items() if k not in ignored}


def _version_priority(name: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order (v1 > v1beta2 > v1beta1 > v1alpha1 > anything else, alphabetically), as a
    sort key, smallest first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", name)
    if match is None:
        return (3, 0, 0, name)
    major, stage, minor = int(match[1]), match[2], int(match[3] or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, name)


def sorted_versions(names: Iterable[str]) -> list[str]:
    return sorted(names, key=_version_priority)


def is_established(crd: dict[str, Any]) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [] if isinstance(c, dict))


def storage_resource(crd: dict[str, Any]) -> CustomResource | None:
    """The row of the CRD's storage version, served or not: what the instance cleanup deletes through."""
    return next((r for r in resources_of(crd, served_only=False) if r.version == r.storage_version), None)


def resources_of(crd: dict[str, Any], *, served_only: bool = True) -> list[CustomResource]:
    """The rows an Established CRD serves: one per served version, under its accepted names."""
    spec = crd.get("spec") or {}
    names = (crd.get("status") or {}).get("acceptedNames") or spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    storage = next((v.get("name", "") for v in versions if v.get("storage")), "")
    rows = []
    for version in versions:
        if served_only and not version.get("served"):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        subs = tuple(s for s in ("status", "scale") if isinstance(subresources.get(s), dict))
        columns = tuple(Column(str(c.get("name", "")), str(c.get("type", "string")), str(c.get("jsonPath", "")),
                               int(c.get("priority") or 0), str(c.get("format") or ""),
                               str(c.get("description") or ""))
                        for c in version.get("additionalPrinterColumns") or [] if isinstance(c, dict))
        rows.append(CustomResource(
            spec.get("group", ""), version.get("name", ""), names.get("kind", ""), names.get("plural", ""),
            names.get("singular") or str(names.get("kind", "")).lower(), spec.get("scope") == "Namespaced",
            tuple(names.get("shortNames") or ()), tuple(names.get("categories") or ()), subs, ALL_VERBS,
            status_subresource="status" in subs, tracks_generation=True,
            crd_name=(crd.get("metadata") or {}).get("name", ""), storage_version=storage,
            schema=(version.get("schema") or {}).get("openAPIV3Schema") or {}, columns=columns,
            scale=ScalePaths(scale.get("specReplicasPath", ""), scale.get("statusReplicasPath", ""),
                             scale.get("labelSelectorPath")) if isinstance(scale, dict) else None))
    return rows


class Catalog:
    """What is being served, by (group, version, plural); replaced per CRD as the controller decides."""

    def __init__(self) -> None:
        self._by_crd: dict[str, list[CustomResource]] = {}
        self._by_path: dict[tuple[str, str, str], CustomResource] = {}
        self.terminating: set[str] = set()  # CRDs whose instances are being deleted
        self.generation = 0  # bumped on every change, so derived documents (OpenAPI) know to rebuild

    def serve(self, crd_name: str, rows: list[CustomResource]) -> None:
        self._by_crd[crd_name] = rows
        self._reindex()

    def unserve(self, crd_name: str) -> None:
        self.terminating.discard(crd_name)
        if self._by_crd.pop(crd_name, None) is not None:
            self._reindex()

    def refuses_create(self, res: Resource) -> bool:
        """Whether res is a custom resource whose CRD is being deleted: upstream's crdHandler refuses creates
        then (405), while reads and deletes go on."""
        return isinstance(res, CustomResource) and res.crd_name in self.terminating

    def _reindex(self) -> None:
        self._by_path = {(r.group, r.version, r.plural): r for rows in self._by_crd.values() for r in rows}
        self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> CustomResource | None:
        return self._by_path.get((group, version, plural))

    def served(self, crd_name: str) -> list[CustomResource]:
        return list(self._by_crd.get(crd_name, []))

    def resources(self) -> list[CustomResource]:
        """Every served row, groups in name order, each group's versions in Kubernetes' priority order."""
        rows = list(self._by_path.values())
        return sorted(rows, key=lambda r: (r.group, _version_priority(r.version), r.plural))

    def group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for r in self.resources():
            if r.version not in groups.setdefault(r.group, []):
                groups[r.group].append(r.version)
        return groups


__all__ = ["CLEANUP_FINALIZER", "GROUP", "Catalog", "Column", "CustomResource", "ScalePaths", "is_established",
           "resources_of", "sorted_versions", "storage_resource"]
