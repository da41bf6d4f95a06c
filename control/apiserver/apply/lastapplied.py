"""kubectl's client-side apply annotation meets server-side apply (upstream's lastAppliedManager and
lastAppliedUpdater): when the manager "kubectl" applies over an object that `kubectl apply` (client-side) made,
conflicts on fields its last-applied configuration lists are not conflicts (the same person is moving to
server-side apply), and the annotation is kept in step with what was applied so a later client-side apply
still computes the right patch. Any other manager name opts out, as upstream."""

from __future__ import annotations

import copy
import json
from typing import Any

from control.apiserver.apply.fieldset import FieldPath
from control.apiserver.apply.managed import Scope

ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
MANAGER = "kubectl"


def _annotation(obj: dict[str, Any] | None) -> str | None:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations")
    value = annotations.get(ANNOTATION) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) and value else None


def allowed_conflicts(live: dict[str, Any] | None, manager: str, scope: Scope) -> set[FieldPath]:
    """The fields whose conflicts this apply may override: those of live's last-applied configuration."""
    text = _annotation(live)
    if manager != MANAGER or text is None:
        return set()
    try:
        last = json.loads(text)
        return set(scope.leaves(last)) if isinstance(last, dict) else set()
    except (ValueError, Exception):  # a broken annotation allows nothing, as upstream
        return set()


def sync(merged: dict[str, Any], config: dict[str, Any], manager: str) -> None:
    """Rewrite merged's last-applied annotation (if it has one) to the configuration kubectl applied."""
    if manager != MANAGER or _annotation(merged) is None:
        return
    applied = copy.deepcopy(config)
    annotations = (applied.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(ANNOTATION, None)
        if not annotations:
            applied["metadata"].pop("annotations")
    # Go's encoding/json of a map: sorted keys, compact, and the Encoder's newline
    merged["metadata"]["annotations"][ANNOTATION] = json.dumps(applied, sort_keys=True, separators=(",", ":")) + "\n"
