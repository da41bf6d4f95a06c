"""The NodeRestriction admission plugin (plugin/pkg/admission/noderestriction/admission.go): what the Node
authorizer cannot decide from a request's URL, decided on the object itself.

    admission_for(user, verb, resource, subresource) -> Admit | None
    Admit(new, old)   raises 403 Forbidden; new is None for a delete, old is None for a create

The registry calls it inside the write, on the object as it will be stored (after names are generated and
defaults applied) and on the stored object it replaces, so a node cannot slip past it with a POST that
names nothing in its URL, a generateName, or a race between a read and the write.
"""

from __future__ import annotations

from typing import Any

from control.apiserver.auth import User
from control.apiserver.errors import APIError
from control.apiserver.registry import Admit
from control.apiserver.resources import Resource

NODE_LEASE_NAMESPACE = "kube-node-lease"
# Labels a kubelet may never set on its Node: they exist for workloads to trust (upstream reserves the
# node-restriction.kubernetes.io label namespace, and its subdomains, for exactly this).
RESTRICTED_LABEL_NAMESPACE = "node-restriction.kubernetes.io"


def _restricted(label: str) -> bool:
    namespace = label.split("/", 1)[0] if "/" in label else ""
    return namespace == RESTRICTED_LABEL_NAMESPACE or namespace.endswith("." + RESTRICTED_LABEL_NAMESPACE)


def forbidden(res: Resource, name: str, why: str) -> APIError:
    """An admission plugin's 403, in upstream's words (admission.NewForbidden)."""
    qualified = f"{res.plural}.{res.group}" if res.group else res.plural
    what = f'{qualified} "{name}"' if name else qualified
    details: dict[str, Any] = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return APIError(403, "Forbidden", f"{what} is forbidden: {why}", details)


def _meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


def _spec(obj: dict[str, Any] | None) -> dict[str, Any]:
    spec = (obj or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _labels(obj: dict[str, Any] | None) -> dict[str, Any]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


def _name(new: dict[str, Any] | None, old: dict[str, Any] | None) -> str:
    name = _meta(old if old is not None else new).get("name")
    return name if isinstance(name, str) else ""


def admission_for(user: User, verb: str, res: Resource, subresource: str | None) -> Admit | None:
    """The check USER's request needs, or None: nothing to check for anyone but a node."""
    node = user.node_name
    if node is None:
        return None
    if res.group == "" and res.plural == "pods":
        return _pod_check(node, verb, res, subresource)
    if res.group == "" and res.plural == "nodes":
        return _node_check(node, res)
    if res.group == "coordination.k8s.io" and res.plural == "leases":
        return _lease_check(node, res)
    return None


def _pod_check(node: str, verb: str, res: Resource, subresource: str | None) -> Admit:
    if subresource == "status":
        action = "update pod status for"
    elif subresource == "eviction":
        action = "evict"
    else:
        action = "create" if verb == "create" else "delete"

    def check(new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if old is None:
            # The Node authorizer already refuses this; kept here so that no path creates a pod for a node.
            raise forbidden(res, _name(new, old), f'node "{node}" can not create pods: kubesim has no static '
                                                  "pods, so a node creates no (mirror) pods")
        if _spec(old).get("nodeName") != node:
            raise forbidden(res, _name(new, old), f'node "{node}" can only {action} pods with spec.nodeName set '
                                                  "to itself")

    return check


def _node_check(node: str, res: Resource) -> Admit:
    def check(new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        name = _name(new, old)
        if name != node:
            raise forbidden(res, name, f'node "{node}" is not allowed to modify node "{name}"')
        if new is None:
            return
        old_labels = _labels(old)
        changed = {k for k, v in _labels(new).items() if old_labels.get(k) != v} | (set(old_labels) - set(_labels(new)))
        restricted = sorted(k for k in changed if _restricted(str(k)))
        if restricted:
            verb = "set the following labels" if old is None else "modify labels"
            raise forbidden(res, name, f'node "{node}" is not allowed to {verb}: {", ".join(restricted)}')
        if old is not None and (_spec(new).get("taints") or []) != (_spec(old).get("taints") or []):
            # Taints are how the control plane keeps workloads off a node; the node may set them only when
            # it registers.
            raise forbidden(res, name, f'node "{node}" is not allowed to modify taints')

    return check


def _lease_check(node: str, res: Resource) -> Admit:
    def check(new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        target = old if old is not None else new
        if _meta(target).get("namespace") != NODE_LEASE_NAMESPACE:
            raise forbidden(res, _name(new, old), f'can only access leases in the "{NODE_LEASE_NAMESPACE}" '
                                                  "system namespace")
        if _name(new, old) != node:
            raise forbidden(res, _name(new, old), "can only access node lease with the same name as the "
                                                  "requesting node")

    return check


__all__ = ["admission_for", "forbidden"]
