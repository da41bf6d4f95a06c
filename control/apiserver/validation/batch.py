"""Validation of batch/v1 Jobs (pkg/apis/batch/validation/validation.go), on defaulted objects whose
selector the Job strategy has generated.

    validate_job(job)  -> [FieldError("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                           'Unsupported value: "Always": supported values: "OnFailure", "Never"')]
"""

from __future__ import annotations

from typing import Any

from control.api import SelectorError, label_selector_as_selector
from control.api.validators import is_dns1123_subdomain
from control.apiserver.validation.core import nonnegative, validate_pod_spec
from control.apiserver.validation.field import (
    FieldError,
    _dict,
    _int,
    immutable,
    invalid,
    not_supported,
    required,
)
from control.apiserver.validation.names import (
    validate_annotations,
    validate_label_selector,
    validate_labels,
    validate_object_meta,
)

COMPLETION_MODES = ("NonIndexed", "Indexed")
RESTART_POLICIES = ("OnFailure", "Never")
MAX_INDEXED_COMPLETIONS = 100_000  # completions (and parallelism) of an Indexed Job: its indexes are tracked


def validate_job(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = _dict(obj.get("spec"))
    for field in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
        errs += nonnegative(f"spec.{field}", spec.get(field))
    mode = spec.get("completionMode") or "NonIndexed"
    if mode not in COMPLETION_MODES:
        errs.append(not_supported("spec.completionMode", mode, COMPLETION_MODES))
    elif mode == "Indexed":
        completions = _int(spec.get("completions"))
        if completions is None:
            errs.append(required("spec.completions", "when completion mode is Indexed"))
        elif completions > MAX_INDEXED_COMPLETIONS:
            errs.append(invalid("spec.completions", completions,
                                f"must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is "
                                "Indexed"))
        parallelism = _int(spec.get("parallelism"))
        if parallelism is not None and parallelism > MAX_INDEXED_COMPLETIONS:
            errs.append(invalid("spec.parallelism", parallelism,
                                f"must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is "
                                "Indexed"))
    selector = spec.get("selector")
    matches = None
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        selector_errors = validate_label_selector(selector, "spec.selector")
        errs += selector_errors
        if not selector_errors:
            try:
                matches = label_selector_as_selector(_dict(selector))
            except SelectorError:
                matches = None
    template = spec.get("template")
    if template is None:
        return [*errs, required("spec.template")]
    template = _dict(template)
    template_meta = _dict(template.get("metadata"))
    labels = _dict(template_meta.get("labels"))
    if matches is not None and not matches.matches(labels):
        errs.append(invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
    errs += validate_labels(template_meta.get("labels"), "spec.template.metadata.labels")
    errs += validate_annotations(template_meta.get("annotations"), "spec.template.metadata.annotations")
    pod_spec = _dict(template.get("spec"))
    errs += validate_pod_spec(pod_spec, "spec.template.spec")
    if pod_spec.get("restartPolicy") not in RESTART_POLICIES:
        errs.append(not_supported("spec.template.spec.restartPolicy", pod_spec.get("restartPolicy"),
                                  RESTART_POLICIES))
    return errs


def validate_job_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """What a running Job may not change: its selector, its pod template, completions and completion mode
    (upstream allows template changes to a suspended Job's scheduling fields; kubesim does not)."""
    errs = validate_job(new)
    spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    for field in ("selector", "completions", "completionMode"):
        if spec.get(field) != old_spec.get(field):
            errs.append(immutable(f"spec.{field}", spec.get(field)))
    if spec.get("template") != old_spec.get("template"):
        errs.append(immutable("spec.template", spec.get("template")))
    return errs
