"""The strategic-merge-patch metadata is derived from schema.py's patch tags: these are upstream's
struct tags (staging/src/k8s.io/api/*/types.go) that matter most to `kubectl apply`, checked on the result."""

from __future__ import annotations

import pytest

from control.apiserver.patch import BUILTIN_PATCH_META, BuiltinPatchMeta, ListPatchInfo

MERGE = "merge"

UPSTREAM_TAGS = [
    ("Pod", ("metadata", "finalizers"), ListPatchInfo(MERGE, None)),
    ("Pod", ("metadata", "ownerReferences"), ListPatchInfo(MERGE, "uid")),
    ("Pod", ("spec", "containers"), ListPatchInfo(MERGE, "name")),
    ("Pod", ("spec", "containers", "ports"), ListPatchInfo(MERGE, "containerPort")),
    ("Pod", ("spec", "containers", "env"), ListPatchInfo(MERGE, "name")),
    ("Pod", ("spec", "initContainers", "volumeMounts"), ListPatchInfo(MERGE, "mountPath")),
    ("Pod", ("spec", "volumes"), ListPatchInfo("merge,retainKeys", "name")),
    ("Pod", ("spec", "resourceClaims"), ListPatchInfo("merge,retainKeys", "name")),
    ("Pod", ("spec", "tolerations"), None),  # atomic
    ("Pod", ("spec", "containers", "args"), None),
    ("Pod", ("status", "conditions"), ListPatchInfo(MERGE, "type")),
    ("Pod", ("status", "podIPs"), ListPatchInfo(MERGE, "ip")),
    ("Pod", ("status", "resourceClaimStatuses"), ListPatchInfo("merge,retainKeys", "name")),
    ("Pod", ("status", "containerStatuses"), None),
    ("Deployment", ("spec", "strategy"), ListPatchInfo("retainKeys", None)),
    ("Deployment", ("spec", "template", "spec", "containers"), ListPatchInfo(MERGE, "name")),
    ("Deployment", ("spec", "template", "metadata", "finalizers"), ListPatchInfo(MERGE, None)),
    ("ReplicaSet", ("status", "conditions"), ListPatchInfo(MERGE, "type")),
    ("Service", ("spec", "ports"), ListPatchInfo(MERGE, "port")),
    ("Service", ("spec", "externalIPs"), None),
    ("Node", ("spec", "podCIDRs"), ListPatchInfo(MERGE, None)),
    ("Node", ("spec", "taints"), None),
    ("Node", ("status", "addresses"), ListPatchInfo(MERGE, "type")),
    ("ServiceAccount", ("secrets",), ListPatchInfo(MERGE, "name")),
    ("EndpointSlice", ("endpoints",), None),
]


@pytest.mark.parametrize(("kind", "path", "expected"), UPSTREAM_TAGS,
                         ids=[f"{kind}.{'.'.join(path)}" for kind, path, _ in UPSTREAM_TAGS])
def test_derived_patch_meta_carries_upstreams_tags(kind: str, path: tuple[str, ...],
                                                   expected: ListPatchInfo | None) -> None:
    assert BuiltinPatchMeta().list_info(kind, path) == expected


def test_every_served_kind_has_object_metas_rules_and_unknown_kinds_get_only_those() -> None:
    for kind, table in BUILTIN_PATCH_META.items():
        assert table.get(("metadata", "ownerReferences")) == ListPatchInfo(MERGE, "uid"), kind
    meta = BuiltinPatchMeta()
    assert meta.list_info("Widget", ("metadata", "finalizers")) == ListPatchInfo(MERGE, None)
    assert meta.list_info("Widget", ("spec", "containers")) is None
