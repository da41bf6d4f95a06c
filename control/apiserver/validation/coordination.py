"""Validation of coordination.k8s.io/v1 Leases (pkg/apis/coordination/validation/validation.go)."""

from __future__ import annotations

from typing import Any

from control.api.validators import is_dns1123_subdomain
from control.apiserver.validation.core import nonnegative
from control.apiserver.validation.field import FieldError, _dict, invalid
from control.apiserver.validation.names import validate_object_meta


def validate_lease(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = _dict(obj.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and not (isinstance(duration, int) and duration > 0):
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    errs += nonnegative("spec.leaseTransitions", spec.get("leaseTransitions"))
    return errs
