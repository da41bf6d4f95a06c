"""Validation of apps/v1 Deployments and ReplicaSets (pkg/apis/apps/validation/validation.go).

    validate_deployment(d)  -> [FieldError("FieldValueInvalid", "spec.strategy.rollingUpdate.maxUnavailable",
                                "Invalid value: ...: may not be 0 when `maxSurge` is 0")]

Pod templates are checked by core's rules, as upstream's apps validation calls core's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from control.api import SelectorError, label_selector_as_selector
from control.api.validators import is_dns1123_subdomain
from control.apiserver.validation.core import nonnegative, validate_template
from control.apiserver.validation.field import (
    FieldError,
    _dict,
    _int,
    _list,
    forbidden,
    go_value,
    invalid,
    not_supported,
    required,
)
from control.apiserver.validation.names import validate_label_selector, validate_object_meta


def _go_int_or_string(value: Any) -> str:
    if isinstance(value, str):
        return f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:{json.dumps(value)}}}'
    return f'intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:""}}'


def _go_selector(selector: Any) -> str:
    """A LabelSelector as Go's %#v prints upstream's struct in these messages."""
    selector = _dict(selector)
    labels = _dict(selector.get("matchLabels"))
    shown_labels = go_value(labels) if labels else "map[string]string(nil)"
    expressions = _list(selector.get("matchExpressions"))
    shown_expressions = "[]v1.LabelSelectorRequirement(nil)"
    if expressions:
        shown_expressions = "[]v1.LabelSelectorRequirement{" + ", ".join(
            f'v1.LabelSelectorRequirement{{Key:{json.dumps(_dict(e).get("key"))}, '
            f'Operator:{json.dumps(_dict(e).get("operator"))}, Values:{go_value(_list(_dict(e).get("values")))}}}'
            for e in expressions) + "}"
    return f"v1.LabelSelector{{MatchLabels:{shown_labels}, MatchExpressions:{shown_expressions}}}"


def _int_or_percent(value: Any, path: str) -> tuple[list[FieldError], int | None]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent; the value (a count or a percentage)."""
    if isinstance(value, str):
        match = re.fullmatch(r"([0-9]+)%", value)
        if match is None:
            return [invalid(path, value, "must be an integer or percentage (e.g '5%')")], None
        percent = int(match.group(1))
        if percent > 100:
            return [invalid(path, value, "must not be greater than 100%")], percent
        return [], percent
    number = _int(value)
    if number is None:
        return [invalid(path, value, "must be an integer or percentage (e.g '5%')")], None
    return nonnegative(path, number), number


def _validate_replicated(obj: dict[str, Any], kind: str) -> list[FieldError]:
    """Deployment and ReplicaSet: replicas, a non-empty selector matching the template."""
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = _dict(obj.get("spec"))
    errs += nonnegative("spec.replicas", spec.get("replicas"))
    errs += nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector = spec.get("selector")
    selector_ok: Callable[[dict[str, Any]], bool] | None = None
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        selector_errors = validate_label_selector(selector, "spec.selector")
        errs += selector_errors
        selector = _dict(selector)
        if not _dict(selector.get("matchLabels")) and not _list(selector.get("matchExpressions")):
            errs.append(FieldError("FieldValueInvalid", "spec.selector",
                                   f"Invalid value: {_go_selector(selector)}: empty selector is invalid for {kind}"))
        elif not selector_errors:
            def selector_ok(labels: dict[str, Any]) -> bool:
                try:
                    return label_selector_as_selector(selector).matches(labels)
                except SelectorError:  # a malformed shape (not a map) is the decoder's to refuse
                    return True
    errs += validate_template(spec.get("template"), "spec.template", selector_ok)
    return errs


def validate_deployment(obj: dict[str, Any]) -> list[FieldError]:
    errs = _validate_replicated(obj, "deployment")
    spec = _dict(obj.get("spec"))
    strategy = _dict(spec.get("strategy"))
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            errs.append(forbidden("spec.strategy.rollingUpdate",
                                  "may not be specified when strategy `type` is 'Recreate'"))
    elif kind == "RollingUpdate":
        if rolling is None:
            errs.append(required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            rolling = _dict(rolling)
            unavailable_errs, unavailable = _int_or_percent(rolling.get("maxUnavailable"),
                                                            "spec.strategy.rollingUpdate.maxUnavailable")
            surge_errs, surge = _int_or_percent(rolling.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge")
            errs += unavailable_errs + surge_errs
            if unavailable == 0 and surge == 0:
                errs.append(FieldError("FieldValueInvalid", "spec.strategy.rollingUpdate.maxUnavailable",
                                       f"Invalid value: {_go_int_or_string(rolling.get('maxUnavailable'))}: "
                                       "may not be 0 when `maxSurge` is 0"))
    else:
        errs.append(not_supported("spec.strategy.type", kind, ("Recreate", "RollingUpdate")))
    errs += nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    deadline = _int(spec.get("progressDeadlineSeconds"))
    errs += nonnegative("spec.progressDeadlineSeconds", deadline)
    ready = _int(spec.get("minReadySeconds")) or 0
    if deadline is not None and deadline <= ready:
        errs.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return errs


def validate_replica_set(obj: dict[str, Any]) -> list[FieldError]:
    return _validate_replicated(obj, "replicaset")


def _selector_immutable(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    selector = _dict(new.get("spec")).get("selector")
    if selector != _dict(old.get("spec")).get("selector"):
        return [FieldError("FieldValueInvalid", "spec.selector",
                           f"Invalid value: {_go_selector(selector)}: field is immutable")]
    return []


def validate_deployment_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_deployment(new) + _selector_immutable(new, old)


def validate_replica_set_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_replica_set(new) + _selector_immutable(new, old)
