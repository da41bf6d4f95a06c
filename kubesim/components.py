"""The cluster's processes: credentials, then each component started inside its node's namespace
with its own identity, its log in <state>/logs/<role>.log and its pid recorded.

Identities (static bearer tokens, kube-apiserver's --token-auth-file format) and what authorizes them
(upstream's default ClusterRoles and ClusterRoleBindings):
    kubernetes-admin                 system:masters   the user's kubeconfig   cluster-admin
    system:kube-scheduler            -                scheduler               system:kube-scheduler,
                                                                              system:volume-scheduler
    system:kube-controller-manager   -                controller-manager      system:kube-controller-manager and
                                                                              the roles of the controllers it runs
    system:kube-proxy                -                every node's kube-proxy system:node-proxier
    system:node:<node>               system:nodes     each node's kubelet     the Node authorizer
    system:serviceaccount:kube-system:coredns          cluster DNS pods        system:coredns
    system:serviceaccount:kube-system:kube-network-policies
                                                       every node's network-policy agent
                                                                              kube-network-policies
    NAME (`up --user NAME:GROUPS`)   GROUPS           kubeconfigs/user-NAME    whatever RBAC objects grant
The roles and bindings are objects the apiserver creates at start (control/apiserver/rbac_policy.py);
every authenticated identity is also in system:authenticated.
"""

from __future__ import annotations

import atexit
import base64
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from netaddr import IPNetwork

from kubesim.errors import ComponentError
from kubesim.state import ClusterState, RecordedProcess, process_start_time, stop_processes
from netsim import names, namespaces
from netsim.topology import Topology

if TYPE_CHECKING:
    from control.store import EtcdTLS

APISERVER_PORT = 6443
#: metrics-server's role, served by the controller-manager on the control-plane node's loopback
METRICS_SERVER_PORT = 4443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
#: the store URL of the etcd `up --store etcd` starts: TLS, on the control-plane node's loopback
LOCAL_ETCD_URL = f"etcds://127.0.0.1:{ETCD_CLIENT_PORT}"


def pki_dir(state: ClusterState) -> Path:
    return state.dir / "pki"


def kubeconfig_path(state: ClusterState, who: str = "admin") -> Path:
    return state.dir / ("kubeconfig" if who == "admin" else f"kubeconfigs/{who}.kubeconfig")


def apiserver_url(topology: Topology) -> str:
    return f"https://{topology.control_plane.address}:{APISERVER_PORT}"


def _identities(topology: Topology, users: tuple[tuple[str, tuple[str, ...]], ...] = ()
                ) -> list[tuple[str, str, tuple[str, ...]]]:
    """(file name, user, groups) of every credential the cluster needs, and of the users `up --user` asked for
    (no power of their own: what RBAC objects bind to them or their groups)."""
    rows = [("admin", "kubernetes-admin", ("system:masters",)),
            ("scheduler", "system:kube-scheduler", ()),
            ("controller-manager", "system:kube-controller-manager", ()),
            ("kube-proxy", "system:kube-proxy", ()),
            ("netpol", "system:serviceaccount:kube-system:kube-network-policies",
             ("system:serviceaccounts", "system:serviceaccounts:kube-system"))]
    rows += [(f"kubelet-{n.name}", f"system:node:{n.name}", ("system:nodes",)) for n in topology.nodes]
    if topology.dns.enabled:
        rows.append(("coredns", "system:serviceaccount:kube-system:coredns",
                     ("system:serviceaccounts", "system:serviceaccounts:kube-system")))
    rows += [(f"user-{name}", name, groups) for name, groups in users]
    return rows


def write_credentials(state: ClusterState, topology: Topology,
                      users: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> None:
    """The cluster CA and its certificates (the apiserver's, its kubelet client's, every kubelet's, and
    etcd's own CA with its server and the apiserver's client certificates), the token file, and one
    kubeconfig per identity."""
    from control.apiserver.auth import write_token_file
    from control.apiserver.certs import make_certificates, make_etcd_certificates, make_kubelet_certificate
    from control.apiserver.serviceaccount import make_signing_key

    pki = pki_dir(state)
    first_service_ip = str(IPNetwork(topology.network.service_cidr)[1])
    make_certificates(pki, addresses=[topology.control_plane.address, first_service_ip])
    for node in topology.nodes:
        make_kubelet_certificate(pki, node.name, node.address)
    make_etcd_certificates(pki)
    make_signing_key(pki / "sa.key")
    ca_data = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
    rows = []
    for who, user, groups in _identities(topology, users):
        token = secrets.token_hex(24)
        rows.append((token, user, groups))
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": topology.name, "cluster": {"server": apiserver_url(topology),
                                                             "certificate-authority-data": ca_data}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": topology.name, "context": {"cluster": topology.name, "user": user}}],
            "current-context": topology.name,
        }
        path = kubeconfig_path(state, who)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    write_token_file(pki / "tokens.csv", rows)


def start(state: ClusterState, ns: str, role: str, argv: list[str]) -> int:
    """Run ARGV inside namespace NS as a daemon (own session, output to its log); record its pid.

    Only the network namespace changes (namespaces.command_in): with a mount namespace of its own, the
    pod namespaces a kubelet pins under /run/netns would be invisible to everyone else."""
    return launch(state, role, namespaces.command_in(ns, argv))


# Components this process started. A daemon outlives its Popen; keeping the object stops Python from
# warning that it is "still running" when it is collected. Reaping is by pid (RecordedProcess.alive), behind
# Popen's back, so the ones that have exited are let go of here: before each launch (a new child may reuse
# an old pid) and when this process exits.
_launched: dict[int, subprocess.Popen[bytes]] = {}


def forget_exited() -> None:
    """Drop the Popen of every launched component that has exited. poll() reaps it if it is still a zombie,
    and marks it done if it was already reaped by pid (waitpid's ECHILD)."""
    for pid, proc in list(_launched.items()):
        if proc.poll() is not None:
            del _launched[pid]


atexit.register(forget_exited)


def launch(state: ClusterState, role: str, argv: list[str]) -> int:
    forget_exited()
    logs = state.dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{role}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=state.dir)
    _launched[proc.pid] = proc
    state.record_process(proc.pid, role, argv)
    return proc.pid


def restart(state: ClusterState, role: str, *, stop_first: bool = True) -> int:
    """Start component ROLE again with the command line it was first started with."""
    recorded = {p.role: p for p in state.processes()}
    if role not in recorded:
        raise ComponentError(f"no component {role!r}; there are: {', '.join(sorted(recorded)) or 'none'}")
    process = recorded[role]
    if process.alive():
        if not stop_first:
            raise ComponentError(f"{role} is running (pid {process.pid}); use `kubesim restart {role}`")
        process.stop()
    if not process.argv:
        raise ComponentError(f"{role} was recorded without its command line; run `kubesim down` and `up` again")
    return launch(state, role, list(process.argv))


def log_tail(state: ClusterState, role: str, lines: int = 15) -> str:
    try:
        return "\n".join((state.dir / "logs" / f"{role}.log").read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _alive(state: ClusterState, role: str) -> bool:
    return any(p.role == role and p.alive() for p in state.processes())


def wait_http(state: ClusterState, role: str, url: str, *, ca: Path | None, timeout: float) -> None:
    """Poll URL (from the root namespace, over the host link) until it answers 200."""
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not _alive(state, role):
            raise ComponentError(f"{role} exited during start-up; its log ends with:\n{log_tail(state, role)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ComponentError(f"{role} did not become ready at {url} within {timeout:.0f}s ({last}); its log ends "
                         f"with:\n{log_tail(state, role)}")


def wait_until(state: ClusterState, role: str, ready: Callable[[], bool], what: str, *, timeout: float) -> None:
    """Poll READY until it is true, failing early if ROLE's process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(state, role):
            raise ComponentError(f"{role} exited during start-up; its log ends with:\n{log_tail(state, role)}")
        if ready():
            return
        time.sleep(0.1)
    raise ComponentError(f"{role} did not become ready ({what}) within {timeout:.0f}s; its log ends with:\n"
                         f"{log_tail(state, role)}")


def etcd_client_tls(state: ClusterState) -> EtcdTLS:
    """The apiserver's client certificate for the cluster's own etcd, and etcd's CA."""
    from control.store import EtcdTLS

    pki = pki_dir(state)
    return EtcdTLS(str(pki / "etcd" / "ca.crt"), str(pki / "apiserver-etcd-client.crt"),
                   str(pki / "apiserver-etcd-client.key"))


def start_etcd(state: ClusterState, topology: Topology) -> str:
    """Debian's etcd-server inside the control-plane node, as kubeadm runs a local etcd there: TLS with
    client certificates from etcd's own CA for clients and peers, listening on that node's loopback
    only, so that only the processes of that node (the apiserver) can even connect."""
    from control.store import etcd_healthy

    cp_ns = names.node_ns(topology.name, topology.control_plane.name)
    pki = pki_dir(state)
    data = state.dir / "etcd"
    data.mkdir(mode=0o700, exist_ok=True)
    client, peer = f"https://127.0.0.1:{ETCD_CLIENT_PORT}", f"https://127.0.0.1:{ETCD_PEER_PORT}"
    ca, cert, key = pki / "etcd" / "ca.crt", pki / "etcd" / "server.crt", pki / "etcd" / "server.key"
    start(state, cp_ns, "etcd", [
        "etcd", "--name", "kubesim", "--data-dir", str(data),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"kubesim={peer}",
        "--cert-file", str(cert), "--key-file", str(key), "--client-cert-auth", "--trusted-ca-file", str(ca),
        "--peer-cert-file", str(cert), "--peer-key-file", str(key), "--peer-client-cert-auth",
        "--peer-trusted-ca-file", str(ca), "--log-level", "warn",
    ])
    tls = etcd_client_tls(state)

    def healthy() -> bool:
        # etcd is on the node's loopback: only from inside that namespace can it be asked
        with namespaces.entered(cp_ns):
            return etcd_healthy(client, tls)

    wait_until(state, "etcd", healthy, f"{client}/health in node {topology.control_plane.name}", timeout=30)
    return LOCAL_ETCD_URL


def start_apiserver(state: ClusterState, topology: Topology, store_url: str) -> None:
    cp = topology.control_plane
    pki = pki_dir(state)
    low, high = topology.network.node_port_range
    etcd_flags: list[str] = []
    if store_url == LOCAL_ETCD_URL:
        tls = etcd_client_tls(state)
        etcd_flags = ["--etcd-cafile", tls.ca_file, "--etcd-certfile", tls.cert_file, "--etcd-keyfile", tls.key_file]
    start(state, names.node_ns(topology.name, cp.name), "apiserver", [
        sys.executable, "-m", "control.apiserver", "--store", store_url, *etcd_flags,
        "--bind-address", "0.0.0.0", "--secure-port", str(APISERVER_PORT), "--advertise-address", cp.address,
        "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
        "--token-auth-file", str(pki / "tokens.csv"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
        "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
        "--kubelet-certificate-authority", str(pki / "ca.crt"),
        "--service-cluster-ip-range", topology.network.service_cidr, "--service-node-port-range", f"{low}-{high}",
        # v1beta1.metrics.k8s.io's registration; the kubelet client certificate doubles as the proxy's
        "--metrics-server-url", f"https://127.0.0.1:{METRICS_SERVER_PORT}", "--metrics-server-ca-file",
        str(pki / "ca.crt"), "--proxy-client-cert-file", str(pki / "apiserver-kubelet-client.crt"),
        "--proxy-client-key-file", str(pki / "apiserver-kubelet-client.key"),
    ])
    wait_http(state, "apiserver", f"{apiserver_url(topology)}/readyz", ca=pki / "ca.crt", timeout=60)


def runtime_socket(state: ClusterState, node: str) -> Path:
    return state.dir / "kubelet" / node / "runtime.sock"


def start_runtimes(state: ClusterState, topology: Topology, mtu: int) -> None:
    """The node runtime (containerd's role) in every node, before its kubelet: it owns the pods'
    sandboxes and containers, so that a kubelet can die and its pods keep serving."""
    for node in topology.nodes:
        start(state, names.node_ns(topology.name, node.name), f"runtime-{node.name}", [
            sys.executable, "-m", "control.runtime", "--cluster", topology.name, "--node", node.name,
            "--pod-cidr", node.pod_cidr, "--mtu", str(mtu),
            "--state-dir", str(state.dir / "kubelet" / node.name / "runtime"),
            "--socket", str(runtime_socket(state, node.name))])
    for node in topology.nodes:
        path = runtime_socket(state, node.name)
        wait_until(state, f"runtime-{node.name}", path.is_socket, f"its socket {path}", timeout=30)


def start_kubelets(state: ClusterState, topology: Topology, mtu: int) -> None:
    from control.dns import dns_service_ip

    dns = dns_service_ip(topology.network.service_cidr) if topology.dns.enabled else ""
    for node in topology.nodes:
        taints = ",".join(f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in node.taints)
        start(state, names.node_ns(topology.name, node.name), f"kubelet-{node.name}", [
            sys.executable, "-m", "control.kubelet",
            "--kubeconfig", str(kubeconfig_path(state, f"kubelet-{node.name}")),
            "--node-name", node.name, "--cluster", topology.name, "--node-ip", node.address,
            "--pod-cidr", node.pod_cidr, "--role", node.role,
            "--node-labels", ",".join(f"{k}={v}" for k, v in node.labels.items()),
            "--register-with-taints", taints, "--cpu", node.capacity.cpu, "--memory", node.capacity.memory,
            "--max-pods", str(node.capacity.pods), "--pod-mtu", str(mtu),
            "--root-dir", str(state.dir / "kubelet" / node.name),
            "--container-runtime-endpoint", str(runtime_socket(state, node.name)),
            "--cluster-dns", dns, "--cluster-domain", topology.dns.cluster_domain,
            # Pods see none of the state root (every cluster's keys and tokens), only what is theirs.
            "--hide-dir", str(state.root),
            "--tls-cert-file", str(pki_dir(state) / "kubelet" / f"{node.name}.crt"),
            "--tls-private-key-file", str(pki_dir(state) / "kubelet" / f"{node.name}.key"),
            "--client-ca-file", str(pki_dir(state) / "ca.crt"),
        ])


def start_control_loops(state: ClusterState, topology: Topology, *, node_grace_period: str = "40s",
                        eviction_timeout: str = "60s") -> None:
    """kube-scheduler and kube-controller-manager in the control-plane node, each with its identity."""
    cp_ns = names.node_ns(topology.name, topology.control_plane.name)
    start(state, cp_ns, "scheduler", [
        sys.executable, "-m", "control.scheduler", "--kubeconfig", str(kubeconfig_path(state, "scheduler"))])
    pool = ",".join(topology.load_balancer_pool)
    start(state, cp_ns, "controller-manager", [
        sys.executable, "-m", "control.controllers", "--kubeconfig", str(kubeconfig_path(state, "controller-manager")),
        "--cluster-cidr", topology.network.cluster_cidr, "--root-ca-file", str(pki_dir(state) / "ca.crt"),
        "--node-cidr-mask-size", str(topology.network.pod_cidr_size),
        # Upstream's grace period by default; a shorter eviction timeout than upstream's 5 minutes, so
        # that a node taken down in a demo sees its pods replaced within a minute.
        "--node-monitor-grace-period", node_grace_period, "--pod-eviction-timeout", eviction_timeout,
        "--local-path-root", str(volumes_dir(state)),
        "--kube-api-qps", str(topology.controller_manager.kube_api_qps),
        "--kube-api-burst", str(topology.controller_manager.kube_api_burst),
        *(["--lb-pool", pool] if pool else []),
        *metrics_server_flags(state),
    ])


def metrics_server_flags(state: ClusterState) -> list[str]:
    """The controller-manager's flags to serve metrics.k8s.io as metrics-server: its certificate, the
    apiserver's proxy certificate it accepts, and the kubelet client certificate it scrapes with."""
    pki = pki_dir(state)
    return ["--metrics-bind-address", f"127.0.0.1:{METRICS_SERVER_PORT}",
            "--metrics-tls-cert-file", str(pki / "metrics-server.crt"),
            "--metrics-tls-private-key-file", str(pki / "metrics-server.key"),
            "--requestheader-client-ca-file", str(pki / "ca.crt"),
            "--requestheader-allowed-names", "kube-apiserver-kubelet-client",
            "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority", str(pki / "ca.crt")]


def start_scheduler(state: ClusterState, topology: Topology, scheduler_name: str, profile: str) -> int:
    """Another scheduler beside the default one: it binds only the pods whose spec.schedulerName names it."""
    return start(state, names.node_ns(topology.name, topology.control_plane.name), f"scheduler-{scheduler_name}", [
        sys.executable, "-m", "control.scheduler", "--kubeconfig", str(kubeconfig_path(state, "scheduler")),
        "--scheduler-name", scheduler_name, "--profile", profile])


def start_proxies(state: ClusterState, topology: Topology, mode: str) -> None:
    """kube-proxy on every node, as its DaemonSet would run it, with its own credentials."""
    for node in topology.nodes:
        start(state, names.node_ns(topology.name, node.name), f"kube-proxy-{node.name}", [
            sys.executable, "-m", "proxy", "--kubeconfig", str(kubeconfig_path(state, "kube-proxy")),
            "--node-name", node.name, "--mode", mode, "--cluster-cidr", topology.network.cluster_cidr,
            "--service-cidr", topology.network.service_cidr,
            # upstream's defaults: healthz on every address (up's readiness wait reads it over the
            # fabric), metrics on the node's loopback only
            "--healthz-bind-address", "0.0.0.0:10256", "--metrics-bind-address", "127.0.0.1:10249",
        ])


# kube-network-policies serves metrics on 9080; its readiness here is on the port beside it.
NETPOL_HEALTHZ_PORT = 9081


def start_netpol_agents(state: ClusterState, topology: Topology) -> None:
    """The network-policy agent on every node (kube-network-policies' DaemonSet), with its own credentials,
    in the mode of the cluster's kube-proxy."""
    for node in topology.nodes:
        start(state, names.node_ns(topology.name, node.name), f"netpol-{node.name}", [
            sys.executable, "-m", "netpol", "--kubeconfig", str(kubeconfig_path(state, "netpol")),
            "--node-name", node.name, "--healthz-bind-address", f"0.0.0.0:{NETPOL_HEALTHZ_PORT}",
            "--metrics-bind-address", "127.0.0.1:9080",
            # kube-proxy's mode: one node writes either nftables or iptables (-nft, as kube-proxy does).
            "--mode", topology.proxy_mode,
        ])


def wait_netpol_agents_ready(state: ClusterState, topology: Topology, timeout: float = 60) -> None:
    """Until every node's agent answers /healthz with 200: it has written its table once."""
    for node in topology.nodes:
        wait_http(state, f"netpol-{node.name}", f"http://{node.address}:{NETPOL_HEALTHZ_PORT}/healthz", ca=None,
                  timeout=timeout)


def wait_proxies_ready(state: ClusterState, topology: Topology, timeout: float = 60) -> None:
    """Until every node's kube-proxy answers /healthz with 200: it has synced its rules once."""
    for node in topology.nodes:
        wait_http(state, f"kube-proxy-{node.name}", f"http://{node.address}:10256/healthz", ca=None, timeout=timeout)


def wait_nodes_ready(state: ClusterState, topology: Topology, timeout: float = 60) -> None:
    """Until every node of the topology is registered and Ready, as seen through the apiserver."""
    import asyncio

    from control.client import NODES, KubeClientError, load_kubeconfig

    async def poll() -> list[str]:
        client = load_kubeconfig(str(kubeconfig_path(state)))
        missing = [n.name for n in topology.nodes]
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for node in topology.nodes:
                    role = f"kubelet-{node.name}"
                    if not _alive(state, role):
                        raise ComponentError(f"{role} exited; its log ends with:\n{log_tail(state, role)}")
                try:
                    listed = await client.list(NODES)
                except KubeClientError:
                    listed = {"items": []}
                ready = {n["metadata"]["name"] for n in listed["items"]
                         if any(c.get("type") == "Ready" and c.get("status") == "True"
                                for c in (n.get("status") or {}).get("conditions") or [])}
                missing = [n.name for n in topology.nodes if n.name not in ready]
                if not missing:
                    return []
                await asyncio.sleep(0.2)
            return missing
        finally:
            await client.close()

    missing = asyncio.run(poll())
    if missing:
        raise ComponentError(f"node(s) {', '.join(missing)} did not become Ready within {timeout:.0f}s; see "
                             f"`kubesim logs kubelet-{missing[0]}`")


def apply_cluster_dns(state: ClusterState, topology: Topology) -> list[str]:
    """CoreDNS as kind runs it: the coredns ServiceAccount's credentials issued to every node's kubelet
    (which hands them to the pods running as it), then the ServiceAccount, Deployment and kube-dns Service."""
    from control.dns import ZoneConfig, cluster_dns_objects

    credentials = kubeconfig_path(state, "coredns").read_bytes()
    for node in topology.nodes:
        issued = state.dir / "kubelet" / node.name / "serviceaccounts" / "kube-system" / "coredns.kubeconfig"
        issued.parent.mkdir(parents=True, exist_ok=True)
        issued.touch(mode=0o600, exist_ok=True)
        issued.write_bytes(credentials)
    objects = cluster_dns_objects(topology.network.service_cidr, ZoneConfig(domain=topology.dns.cluster_domain))
    manifest = state.dir / "cluster-dns.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return apply_manifests(state, [manifest])


def volumes_dir(state: ClusterState) -> Path:
    """Where the local-path provisioner keeps the cluster's volumes: a directory per node below it."""
    return state.dir / "volumes"


# kind's default StorageClass (its local-path-storage manifest): rancher's local-path provisioner, bound when
# the first pod is scheduled, deleted with its claim.
STANDARD_STORAGE_CLASS: dict[str, Any] = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete",
}


def apply_storage(state: ClusterState) -> list[str]:
    """The default StorageClass `standard`, as kind creates it."""
    return apply_documents(state, [("kind's default storage class", STANDARD_STORAGE_CLASS)])


def remove_volumes(state: ClusterState) -> list[str]:
    """The volume directories the provisioner made (they are the cluster's, under its state directory)."""
    root = volumes_dir(state)
    if not root.is_dir():
        return []
    removed = [f"volume directory {path}" for node in sorted(root.iterdir()) if node.is_dir()
               for path in sorted(node.iterdir())]
    shutil.rmtree(root, ignore_errors=True)
    return removed


def apply_workloads(state: ClusterState, topology: Topology) -> list[str]:
    """Create the objects of the topology's workload manifests, in order."""
    return apply_manifests(state, [Path(p) for p in topology.workloads])


def apply_manifests(state: ClusterState, paths: list[Path]) -> list[str]:
    """Create (or, if they exist, replace) the objects of the manifest files, in order: what `kubectl
    apply -f` does for new objects, for machines without kubectl. Returns "kind/name created|configured"."""
    return apply_documents(state, [pair for path in paths for pair in manifest_documents(path)])


def manifest_documents(path: Path) -> list[tuple[str, Any]]:
    """The non-empty YAML documents of the manifest file PATH, each with where it came from."""
    return [(str(path), doc) for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply_documents(state: ClusterState, documents: list[tuple[str, Any]]) -> list[str]:
    """Create or replace DOCUMENTS ((where each came from, the object) pairs) in order; every one is
    checked to be a kind kubesim serves before anything is sent."""
    import asyncio

    from control.apiserver.resources import RESOURCES
    from control.client import AlreadyExists, load_kubeconfig, resource_path

    kinds = {(r.api_version, r.kind): r for r in RESOURCES}
    for source, doc in documents:
        if not isinstance(doc, dict) or (doc.get("apiVersion"), doc.get("kind")) not in kinds:
            shown = f"{doc.get('apiVersion')}/{doc.get('kind')}" if isinstance(doc, dict) else repr(doc)[:60]
            raise ComponentError(f"{source}: {shown} is not a kind kubesim serves")
        if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            raise ComponentError(f"{source}: {doc['kind']} has no metadata.name; give the object a name")

    async def apply_all() -> list[str]:
        client = load_kubeconfig(str(kubeconfig_path(state)))
        done = []
        try:
            for _, doc in documents:
                res = kinds[(doc["apiVersion"], doc["kind"])]
                name = doc["metadata"]["name"]
                namespace = doc["metadata"].get("namespace") or ("default" if res.namespaced else None)
                collection = resource_path(res.group, res.version, res.plural, namespace)
                try:
                    await client.request("POST", collection, body=doc)
                    done.append(f"{res.kind.lower()}/{name} created")
                except AlreadyExists:
                    current = await client.request("GET", f"{collection}/{name}")
                    body = {**doc, "metadata": {**doc["metadata"],
                                                "resourceVersion": current["metadata"]["resourceVersion"]}}
                    await client.request("PUT", f"{collection}/{name}", body=body)
                    done.append(f"{res.kind.lower()}/{name} configured")
        finally:
            await client.close()
        return done

    return asyncio.run(apply_all())


# Who stops first: what depends on the apiserver (so nothing it serves reconnects or writes while it
# goes), then the apiserver, then its store. Within a tier everyone stops at once, sharing one grace period.
_STOP_TIERS = (("apiserver",), ("etcd",))


def _stop_tier(role: str) -> int:
    return next((i + 1 for i, roles in enumerate(_STOP_TIERS) if role in roles), 0)


def stop_all(state: ClusterState, cluster_namespaces: list[str], grace: float = 5.0) -> list[str]:
    """Stop every recorded process by pid (start time checked), tier by tier and in parallel within a
    tier, then anything still living in the cluster's namespaces."""
    recorded = state.processes()
    stopped: list[str] = []
    for tier in range(len(_STOP_TIERS) + 1):
        members = [p for p in recorded if _stop_tier(p.role) == tier]
        stopped += [f"process {p.role} (pid {p.pid})" for p in stop_processes(members, grace=grace)]
    return stopped + stop_processes_in(cluster_namespaces, grace=grace)


def stop_processes_in(netns: list[str], grace: float = 5.0) -> list[str]:
    """SIGTERM, then after GRACE seconds SIGKILL, every process whose network namespace is one of NETNS:
    found by namespace identity, never by name."""
    strays = []
    for pid in namespaces.processes_in(netns):
        start = process_start_time(pid)
        if start is not None and pid != os.getpid():
            strays.append(RecordedProcess(pid, start, "stray"))
    return [f"process {p.pid} (in kubesim's namespaces)" for p in stop_processes(strays, grace=grace)]
