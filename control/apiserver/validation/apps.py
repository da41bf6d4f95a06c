"""Validation of apps/v1 Deployments, ReplicaSets, DaemonSets, StatefulSets and ControllerRevisions
(pkg/apis/apps/validation/validation.go).

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
from control.api.validators import is_dns1123_label, is_dns1123_subdomain
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
from control.apiserver.validation.storage import validate_claim_spec


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


# -- daemon sets, stateful sets, controller revisions ------------------------------------------------------------

DAEMON_SET_STRATEGIES = ("OnDelete", "RollingUpdate")
STATEFUL_SET_STRATEGIES = ("OnDelete", "RollingUpdate")
POD_MANAGEMENT_POLICIES = ("OrderedReady", "Parallel")
PVC_RETENTION = ("Retain", "Delete")


def _validate_rolling_daemon_set(rolling: dict[str, Any], path: str) -> list[FieldError]:
    """ValidateRollingUpdateDaemonSet: both int-or-percent, at most 100%, exactly one of them non-zero."""
    unavailable_errs, unavailable = _int_or_percent(rolling.get("maxUnavailable"), f"{path}.maxUnavailable")
    surge_errs, surge = _int_or_percent(rolling.get("maxSurge"), f"{path}.maxSurge")
    errs = unavailable_errs + surge_errs
    if unavailable and surge:
        errs.append(invalid(f"{path}.maxSurge", rolling.get("maxSurge"),
                            "may not be set when maxUnavailable is non-zero"))
    elif unavailable == 0 and surge == 0:
        errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def validate_daemon_set(obj: dict[str, Any]) -> list[FieldError]:
    errs = _validate_replicated(obj, "daemonset")
    spec = _dict(obj.get("spec"))
    errs += nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    strategy = _dict(spec.get("updateStrategy"))
    kind = strategy.get("type")
    if kind not in DAEMON_SET_STRATEGIES:
        errs.append(not_supported("spec.updateStrategy.type", kind, DAEMON_SET_STRATEGIES))
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            errs.append(required("spec.updateStrategy.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            errs += _validate_rolling_daemon_set(_dict(rolling), "spec.updateStrategy.rollingUpdate")
    return errs


def validate_daemon_set_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_daemon_set(new) + _selector_immutable(new, old)


def _as_its_pods_are(obj: dict[str, Any]) -> dict[str, Any]:
    """The set with its template's volumes as the controller makes its pods': each volumeClaimTemplate a
    persistentVolumeClaim volume of its name, so that volumeMounts naming a claim template resolve."""
    spec = _dict(obj.get("spec"))
    names = [n for n in (_dict(_dict(t).get("metadata")).get("name") for t in _list(spec.get("volumeClaimTemplates")))
             if isinstance(n, str) and n]
    template = _dict(spec.get("template"))
    if not names or not isinstance(template.get("spec"), dict):
        return obj
    pod_spec = dict(template["spec"])
    pod_spec["volumes"] = [v for v in _list(pod_spec.get("volumes")) if _dict(v).get("name") not in names] + \
        [{"name": n, "persistentVolumeClaim": {"claimName": n}} for n in names]
    return {**obj, "spec": {**spec, "template": {**template, "spec": pod_spec}}}


def validate_stateful_set(obj: dict[str, Any]) -> list[FieldError]:
    errs = _validate_replicated(_as_its_pods_are(obj), "statefulset")
    spec = _dict(obj.get("spec"))
    errs += nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    policy = spec.get("podManagementPolicy")
    if policy not in POD_MANAGEMENT_POLICIES:
        errs.append(not_supported("spec.podManagementPolicy", policy, POD_MANAGEMENT_POLICIES))
    service = spec.get("serviceName")
    if service:
        errs += [invalid("spec.serviceName", service, msg) for msg in is_dns1123_label(str(service))]
    strategy = _dict(spec.get("updateStrategy"))
    kind = strategy.get("type")
    if kind not in STATEFUL_SET_STRATEGIES:
        errs.append(not_supported("spec.updateStrategy.type", kind, STATEFUL_SET_STRATEGIES))
    elif kind == "OnDelete" and strategy.get("rollingUpdate") is not None:
        errs.append(invalid("spec.updateStrategy.rollingUpdate", strategy.get("rollingUpdate"),
                            "only allowed for updateStrategy 'RollingUpdate'"))
    elif kind == "RollingUpdate":
        rolling = _dict(strategy.get("rollingUpdate"))
        errs += nonnegative("spec.updateStrategy.rollingUpdate.partition", rolling.get("partition"))
        if rolling.get("maxUnavailable") is not None:
            unavailable_errs, unavailable = _int_or_percent(rolling.get("maxUnavailable"),
                                                            "spec.updateStrategy.rollingUpdate.maxUnavailable")
            errs += unavailable_errs
            if not unavailable_errs and unavailable == 0:
                errs.append(invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", rolling["maxUnavailable"],
                                    "must be greater than 0"))
    retention = _dict(spec.get("persistentVolumeClaimRetentionPolicy"))
    for when in ("whenDeleted", "whenScaled"):
        if retention.get(when) not in PVC_RETENTION:
            errs.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{when}", retention.get(when),
                                      PVC_RETENTION))
    ordinals = spec.get("ordinals")
    if ordinals is not None:
        errs += nonnegative("spec.ordinals.start", _dict(ordinals).get("start"))
    for i, template in enumerate(_list(spec.get("volumeClaimTemplates"))):
        # Checked here as the claims made from them will be, so that a bad template fails at once rather than
        # leaving the set's pods waiting for claims that cannot be made (upstream checks claims only).
        where = f"spec.volumeClaimTemplates[{i}]"
        if not _dict(_dict(template).get("metadata")).get("name"):
            errs.append(required(f"{where}.metadata.name"))
        errs += validate_claim_spec(_dict(_dict(template).get("spec")), f"{where}.spec")
    return errs


# What a StatefulSet update may change (ValidateStatefulSetUpdate): everything else in spec is fixed.
_STATEFUL_SET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                         "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def validate_stateful_set_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_stateful_set(new)
    spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    fixed = {k: v for k, v in spec.items() if k not in _STATEFUL_SET_MUTABLE}
    old_fixed = {k: v for k, v in old_spec.items() if k not in _STATEFUL_SET_MUTABLE}
    if fixed != old_fixed:
        errs.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                      "'template', 'updateStrategy', 'revisionHistoryLimit', "
                                      "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return errs


def validate_controller_revision(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateControllerRevision: a name, data present, a non-negative revision."""
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    if obj.get("data") is None:
        errs.append(required("data", "data is mandatory"))
    errs += nonnegative("revision", obj.get("revision"))
    return errs


def validate_controller_revision_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_controller_revision(new)
    if new.get("data") != old.get("data"):
        errs.append(FieldError("FieldValueInvalid", "data", "Invalid value: \"\": field is immutable"))
    return errs
