"""Accessors for an object's metadata as JSON carries it (metav1.ObjectMeta), tolerant of a missing
or malformed `metadata`: every component reads names, labels and annotations the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["annotations_of", "labels_of", "meta", "name_of", "namespace_of", "uid_of"]


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("namespace") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid") or "")


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = meta(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    annotations = meta(obj).get("annotations")
    return annotations if isinstance(annotations, dict) else {}
