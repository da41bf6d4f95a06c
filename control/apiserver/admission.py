"""Defaulting and validation as the registry calls them (registry.Admission). `KubernetesAdmission`
uses the per-kind tables of defaults.py and validation.py; names are checked for every kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from control.apiserver.registry import FieldErrorLike

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class NameError_:
    type: str
    field: str
    message: str


def name_errors(obj: dict[str, Any]) -> list[FieldErrorLike]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        return [NameError_("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")]
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
        return name_errors(obj)

    def validate_update(self, kind: str, obj: dict[str, Any], old: dict[str, Any]) -> list[FieldErrorLike]:
        return []
