"""pods/NAME/ephemeralcontainers: the one way to add a container to a running pod (`kubectl debug`).

It takes and returns a whole Pod (GET, PUT, PATCH; kubectl sends a strategic-merge patch of
spec.ephemeralContainers), of which only spec.ephemeralContainers is written: the rest stays as stored,
as upstream's podEphemeralContainersStrategy (dropNonEphemeralContainerUpdates) keeps it. Validation is
validation/ephemeral.py's: only additions, upstream's allow-list of fields, unique names, an existing
target. Authorization is its own (pods/ephemeralcontainers): no built-in role but cluster-admin has it,
as upstream keeps it out of edit and admin.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

__all__ = ["ONLY_FIELD_SUBRESOURCES", "keep_ephemeral_containers"]


def keep_ephemeral_containers(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """The stored pod OLD with NEW's ephemeral containers, and nothing else of NEW's."""
    updated = copy.deepcopy(old)
    spec = new.get("spec")
    containers = spec.get("ephemeralContainers") if isinstance(spec, dict) else None
    updated_spec = updated.setdefault("spec", {})
    if containers:
        updated_spec["ephemeralContainers"] = copy.deepcopy(containers)
    else:
        updated_spec.pop("ephemeralContainers", None)
    return updated


#: subresources that write one field of their object: subresource -> prepare(new, old) -> what is stored
ONLY_FIELD_SUBRESOURCES: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "ephemeralcontainers": keep_ephemeral_containers,
}
