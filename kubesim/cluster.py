"""Cluster lifecycle: up, down, status, clean. Orchestrates netsim (and, as they land, the control
plane and the proxy); holds no networking logic of its own.

Errors: PreflightError and KubesimError of kubesim.errors (the tree is drawn there); netsim's
NetsimError/TopologyError pass through unchanged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netaddr import IPNetwork, IPRange, IPSet

from kubesim import components, faults
from kubesim.errors import KubesimError, PreflightError, StateError
from kubesim.state import ClusterState, known_clusters, state_root
from netsim import names, network, probe
from netsim.kernel import Kernel, LinuxKernel
from netsim.topology import Topology

Progress = Callable[[str], None]

#: what `kubesim up` brings up when no topology is named
DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "two-node.yaml"


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------------
# Preflight


def _cluster_ranges(topology: Topology) -> list[tuple[str, IPSet]]:
    net = topology.network
    ranges = [
        ("network.nodeCIDR", IPSet([net.node_cidr])),
        ("network.clusterCIDR", IPSet([net.cluster_cidr])),
        ("network.serviceCIDR", IPSet([net.service_cidr])),
    ]
    if net.external_cidr:
        ranges.append(("network.externalCIDR", IPSet([net.external_cidr])))
    for entry in topology.load_balancer_pool:
        block = IPSet(IPRange(*entry.split("-"))) if "-" in entry else IPSet([entry])
        ranges.append(("loadBalancerPool", block))
    return ranges


def root_routes() -> list[tuple[str, str]]:
    """(destination, device) of the root namespace's IPv4 routes in the main table, default excluded."""
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "main"], capture_output=True, text=True,
                         check=True).stdout
    routes = []
    for line in out.splitlines():
        fields = line.split()
        if not fields or fields[0] == "default":
            continue
        dst = fields[0] if "/" in fields[0] else fields[0] + "/32"
        dev = fields[fields.index("dev") + 1] if "dev" in fields else "?"
        routes.append((dst, dev))
    return routes


def _owner_of_link(dev: str, root: Path) -> str:
    for cluster in known_clusters(root):
        if names.host_link(cluster) == dev:
            return f" (kubesim cluster {cluster!r})"
    return ""


def preflight(topology: Topology, *, kernel: Kernel, root: Path, routes: list[tuple[str, str]]) -> None:
    """Refuse, before making anything, what would collide with the machine or another cluster."""
    name = topology.name
    if ClusterState(name, root).exists or network.cluster_namespaces(name, kernel):
        raise PreflightError(f"cluster {name!r} already exists; run `kubesim down --name {name}` first, or pick "
                             "another name with --name")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        raise PreflightError("the kernel's br_netfilter is not loaded (no /proc/sys/net/bridge); run "
                             "`modprobe br_netfilter`")
    for field, block in _cluster_ranges(topology):
        for dst, dev in routes:
            if block & IPSet([IPNetwork(dst)]):
                raise PreflightError(
                    f"{topology.source or 'topology'}: {field} overlaps the root namespace's route {dst} dev "
                    f"{dev}{_owner_of_link(dev, root)}; give this cluster ranges of its own in the topology file"
                )


# ---------------------------------------------------------------------------------------------------
# up / down


@dataclass
class UpResult:
    topology: Topology
    state: ClusterState


def parse_store(store: str) -> tuple[str, str | None]:
    """--store sqlite | etcd | etcd=URL  ->  (kind, URL of an existing etcd or None)."""
    kind, _, url = store.partition("=")
    if kind not in ("sqlite", "etcd") or (kind == "sqlite" and url) or (kind == "etcd" and "=" in store and not url):
        raise PreflightError(f"--store {store!r}: use sqlite (the default), etcd (run one in the control-plane "
                             "node), or etcd=URL (use an existing one, e.g. etcd=etcd://10.0.0.5:2379)")
    return kind, url or None


def up(topology: Topology, *, root: Path | None = None, kernel: Kernel | None = None,
       progress: Progress = _quiet, routes: list[tuple[str, str]] | None = None, store: str = "sqlite",
       control_plane: bool = True, timings: dict[str, str] | None = None,
       users: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> UpResult:
    """Build the cluster; on any failure (or interruption) remove everything made and re-raise.
    control_plane=False builds the network only."""
    store_kind, store_url = parse_store(store)
    root = root or state_root()
    kernel = kernel or LinuxKernel()
    progress("checking the machine")
    preflight(topology, kernel=kernel, root=root, routes=root_routes() if routes is None else routes)
    state = ClusterState(topology.name, root)
    with state.locked(create=True):
        try:
            state.set_phase("building")
            state.save_topology(topology)
            progress(f"building the network ({len(topology.nodes)} nodes, {topology.network.mode})")
            network.build(topology, kernel=kernel, record=state.record)
            progress("checking that the nodes reach each other")
            wait_ready(topology)
            if control_plane:
                _start_control_plane(state, topology, store_kind, store_url, progress, timings or {}, users)
            if topology.faults:
                # Last, once everything is ready: a partition from the control plane would otherwise keep
                # a node from ever registering.
                progress(f"injecting the topology's faults ({len(topology.faults)})")
                faults.change(state, topology, list(topology.faults))
            state.set_phase("ready")
        except BaseException:
            progress("failed: removing everything that was made")
            _teardown(state, kernel)
            raise
        finally:
            kernel.close()
    return UpResult(topology, state)


def wait_ready(topology: Topology, timeout: float = 5.0) -> None:
    """Every node answers the gateway node over the fabric."""
    source = network.gateway_node(topology)
    others = [node.address for node in topology.nodes if node is not source]
    answered = probe.ping_all(names.node_ns(topology.name, source.name), others, timeout=timeout)
    silent = [node.name for node in topology.nodes if answered.get(node.address) is False]
    if silent:
        raise KubesimError(f"node(s) {', '.join(silent)} do not answer {source.name} over the fabric")


def _start_control_plane(state: ClusterState, topology: Topology, store_kind: str, store_url: str | None,
                         progress: Progress, timings: dict[str, str],
                         users: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> None:
    progress("writing the cluster's certificates and credentials")
    components.write_credentials(state, topology, users)
    if store_kind == "etcd" and store_url is None:
        progress("starting etcd in the control-plane node")
        store_url = components.start_etcd(state, topology)
    elif store_kind == "sqlite":
        store_url = f"sqlite://{state.dir / 'store.db'}"
    assert store_url is not None
    progress("starting the apiserver")
    components.start_apiserver(state, topology, store_url)
    progress("starting the scheduler and the controller-manager")
    components.start_control_loops(state, topology, **timings)
    progress("starting the node runtime in every node")
    components.start_runtimes(state, topology, network.pod_mtu(topology))
    progress("starting a kubelet in every node")
    components.start_kubelets(state, topology, network.pod_mtu(topology))
    components.wait_nodes_ready(state, topology)
    progress(f"starting kube-proxy ({topology.proxy_mode}) in every node")
    components.start_proxies(state, topology, topology.proxy_mode)
    components.wait_proxies_ready(state, topology)
    progress("starting the network-policy agent in every node")
    components.start_netpol_agents(state, topology)
    components.wait_netpol_agents_ready(state, topology)
    progress("creating the default StorageClass (standard, rancher.io/local-path)")
    components.apply_storage(state)
    if topology.dns.enabled:
        progress(f"applying cluster DNS (coredns, kube-dns Service, {topology.dns.cluster_domain})")
        components.apply_cluster_dns(state, topology)
    if topology.workloads:
        progress("applying the topology's workloads")
        components.apply_workloads(state, topology)


def _teardown(state: ClusterState, kernel: Kernel) -> list[str]:
    removed = components.stop_all(state, network.cluster_namespaces(state.name, kernel))
    removed += faults.undo_for_down(state)
    removed += network.destroy(state.name, kernel=kernel, recorded=state.recorded_objects())
    removed += components.remove_volumes(state)
    state.remove()
    return removed


def down(name: str, *, root: Path | None = None, kernel: Kernel | None = None) -> list[str]:
    """Remove exactly what cluster NAME made. Idempotent; works after any crash."""
    state = ClusterState(name, root or state_root())
    kernel = kernel or LinuxKernel()
    try:
        if state.exists:
            with state.locked():
                return _teardown(state, kernel)
        return network.destroy(name, kernel=kernel)
    finally:
        kernel.close()


def clean(*, root: Path | None = None, kernel: Kernel | None = None) -> list[str]:
    """Sweep everything carrying kubesim's prefix, whichever cluster (or test) made it."""
    root = root or state_root()
    kernel = kernel or LinuxKernel()
    removed: list[str] = []
    try:
        for name in known_clusters(root):
            removed += down(name, root=root, kernel=kernel)
        removed += components.stop_processes_in([ns for ns in kernel.ns_list() if ns.startswith(names.PREFIX)])
        for ns in kernel.ns_list():
            if ns.startswith(names.PREFIX) and kernel.ns_delete(ns):
                removed.append(f"netns {ns}")
        for link in kernel.link_names(None):
            if link.startswith(names.PREFIX) and kernel.delete_link(None, link):
                removed.append(f"link {link}")
    finally:
        kernel.close()
    return removed


# ---------------------------------------------------------------------------------------------------
# status


def resolve_name(name: str | None, root: Path | None = None) -> str:
    """--name if given; else the only cluster there is; else the default name."""
    if name:
        return name
    clusters = known_clusters(root or state_root())
    if len(clusters) == 1:
        return clusters[0]
    if len(clusters) > 1:
        raise StateError(f"several clusters exist ({', '.join(clusters)}); say which with --name")
    return "kubesim"


def status(name: str, *, root: Path | None = None, kernel: Kernel | None = None) -> dict[str, Any]:
    state = ClusterState(name, root or state_root())
    if not state.exists:
        raise StateError(f"cluster {name!r} does not exist; bring it up with `kubesim up`")
    topology = state.topology()
    kernel = kernel or LinuxKernel()
    try:
        present = set(network.cluster_namespaces(name, kernel))
    finally:
        kernel.close()
    assert topology is not None
    return {
        "name": name,
        "phase": state.phase,
        "stateDir": str(state.dir),
        "mode": topology.network.mode,
        "proxyMode": topology.proxy_mode,
        "network": {
            "nodeCIDR": topology.network.node_cidr,
            "clusterCIDR": topology.network.cluster_cidr,
            "serviceCIDR": topology.network.service_cidr,
            "hostAddress": topology.network.host_address,
            "hostLink": names.host_link(name),
        },
        "nodes": [
            {"name": n.name, "role": n.role, "address": n.address, "podCIDR": n.pod_cidr,
             "namespace": names.node_ns(name, n.name), "present": names.node_ns(name, n.name) in present}
            for n in topology.nodes
        ],
        "externalHosts": [
            {"name": h.name, "address": h.address, "namespace": names.external_ns(name, h.name),
             "present": names.external_ns(name, h.name) in present}
            for h in topology.external_hosts
        ],
        "apiserver": components.apiserver_url(topology),
        "kubeconfig": str(components.kubeconfig_path(state)),
        "namespaces": sorted(present),
        "processes": [{"role": p.role, "pid": p.pid, "alive": p.alive()} for p in state.processes()],
        "faults": [f.to_dict() for f in faults.recorded(state)],
    }


def target_namespace(name: str, target: str, *, root: Path | None = None) -> str:
    """The namespace of node or external host TARGET in cluster NAME."""
    state = ClusterState(name, root or state_root())
    topology = state.topology() if state.exists else None
    if topology is None:
        raise StateError(f"cluster {name!r} does not exist; bring it up with `kubesim up`")
    if topology.member(target) is None:
        known = ", ".join([n.name for n in topology.nodes] + [h.name for h in topology.external_hosts])
        raise StateError(f"{target!r} is neither a node nor an external host of cluster {name!r} (it has: {known})")
    if any(n.name == target for n in topology.nodes):
        return names.node_ns(name, target)
    return names.external_ns(name, target)
