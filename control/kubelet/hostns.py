"""Pods that ask for the node's own namespaces (hostNetwork, hostPID, hostIPC: what `kubectl debug
node/NAME` makes), which kubesim's kubelet cannot give: every pod here runs in a network, UTS and mount
namespace of its own on the node's bridge. Such a pod is refused with the reason on each container
(CreateContainerConfigError, which kubectl debug prints as it waits) and a Failed event, rather than run
in a pod namespace as if it were the node's.
"""

from __future__ import annotations

from typing import Any

HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def host_namespace_problem(pod: dict[str, Any]) -> str | None:
    """Why POD cannot run on a kubesim node, or None."""
    spec = pod.get("spec") or {}
    asked = [f"{name}=true" for name in HOST_NAMESPACES if spec.get(name) is True]
    if not asked:
        return None
    return (f"kubesim runs every pod in namespaces of its own: {', '.join(asked)} is not supported; for a shell "
            "on the node, use `kubesim exec NODE -- sh`")
