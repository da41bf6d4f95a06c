"""Deterministic names for everything netsim makes.

Every namespace is called ``ksim-<cluster>.<kind>.<name>``. Cluster names are DNS-1123 labels and cannot
contain a dot, so the prefix ``ksim-<cluster>.`` belongs to exactly one cluster (``a`` never sweeps
``a-b``'s namespaces), and ``ksim-`` finds every cluster's objects.

Linux caps interface names at 15 bytes (IFNAMSIZ - 1), so names that may be longer are hash-truncated:
a readable head plus a short hash of the whole.
"""

from __future__ import annotations

import hashlib

PREFIX = "ksim-"
IFNAMSIZ_MAX = 15


def short_hash(text: str, length: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def fit_ifname(name: str) -> str:
    """Return ``name`` if it fits in an interface name, else a truncated head plus a hash."""
    if len(name.encode()) <= IFNAMSIZ_MAX:
        return name
    return name[: IFNAMSIZ_MAX - 5] + "-" + short_hash(name, 4)


def cluster_prefix(cluster: str) -> str:
    return f"{PREFIX}{cluster}."


def fabric_ns(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}fabric"


def node_ns(cluster: str, node: str) -> str:
    return f"{cluster_prefix(cluster)}node.{node}"


def external_ns(cluster: str, host: str) -> str:
    return f"{cluster_prefix(cluster)}ext.{host}"


def pod_ns(cluster: str, pod_id: str) -> str:
    return f"{cluster_prefix(cluster)}pod.{pod_id}"


def probe_ns(cluster: str, probe_id: str) -> str:
    return f"{cluster_prefix(cluster)}probe.{probe_id}"


def host_link(cluster: str) -> str:
    """The root namespace's end of the host link; the only interface we create in the root namespace."""
    return f"{PREFIX}{short_hash(cluster)}"


def fabric_port(member: str) -> str:
    """The fabric-side end of a node's or external host's eth0."""
    return fit_ifname(f"p-{member}")


def pod_host_veth(pod_id: str) -> str:
    """The node-side end of a pod's eth0 (like the CNI's vethXXXXXXXX)."""
    return f"veth{short_hash(pod_id, 8)}"


# Names inside namespaces we own, fixed like a real node's.
FABRIC_BRIDGE = "br0"
FABRIC_HOST_PORT = "host0"
NODE_UPLINK = "eth0"
NODE_BRIDGE = "cbr0"
NODE_VXLAN = "vxlan0"
POD_IFACE = "eth0"
