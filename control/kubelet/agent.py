"""The kubelet's node agent: node registration and heartbeats, and one worker per pod bound here.

A pod's life: an address from the node's pod CIDR (recorded, so a restart neither loses nor reuses
it), a sandbox (netsim: a network namespace on the node's bridge, with a UTS namespace carrying the
pod's hostname and a mount namespace with the kubelet-managed /etc/hosts, /etc/hostname and
/etc/resolv.conf bound over the machine's and the state directory hidden), its containers started, probes
run, status reported; on deletion: SIGTERM, the grace period, SIGKILL, sandbox removed, address freed,
and the pod object deleted for good (gracePeriodSeconds=0, uid precondition), as upstream does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from netaddr import IPAddress, IPNetwork

from control.api.qos import pod_qos_class
from control.api.quantity import milli_value
from control.api.quantity import value as quantity_value
from control.client import (
    CONFIG_MAPS,
    LEASES,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    AlreadyExists,
    ApiError,
    Client,
    Conflict,
    Informer,
    KubeClientError,
    NotFound,
)
from control.dns import pod_dns_config
from control.kubelet import ephemeral, resourcemetrics
from control.kubelet.clock import Clock, SystemClock
from control.kubelet.envvars import CONFIG_ERROR, container_env, expand_command
from control.kubelet.hostns import host_namespace_problem
from control.kubelet.logs import LogRequestError, log_path, read_container_log, validate_log_request
from control.kubelet.objects import SharedReads
from control.kubelet.podfiles import PodFileError, hostname_file, hosts_file, pod_hostname, uts_hostname
from control.kubelet.probes import NetworkProber, Prober, ProbeResult, probe_errors
from control.kubelet.remote import RemoteContainer
from control.kubelet.streaming import PodProcessTarget, SessionError
from control.kubelet.volumes import (
    TokenWant,
    VolumeError,
    VolumePlan,
    references,
    token_requests,
    volume_of,
    write_plan,
)
from control.kubelet.volumes import plan as volume_plan
from control.kubelet.workloads import (
    Container,
    ContainerError,
    ContainerFactory,
    ContainerLog,
    RunAs,
    make_container,
    now_rfc3339,
    run_as,
)
from control.runtime import RuntimeCallError, RuntimeClient
from control.runtime.crilog import retire
from netsim import names, namespaces
from netsim.errors import NetsimError
from netsim.kernel import Kernel, LinuxKernel
from netsim.place import PodPlace
from netsim.sandbox import Sandbox, create_sandbox, delete_sandbox, sandbox_for

log = logging.getLogger("kubelet")
T = TypeVar("T")
KUBELET_VERSION = "v1.30.0-kubesim"
RUNTIME_VERSION = "kubesim://0.1.0"
# A pod status write that failed (the apiserver away, slow or shedding load) is retried with this
# backoff until it lands, as the kubelet's status manager does: no later change may be needed to
# carry a pod's Ready to the API.
STATUS_RETRY_INITIAL = 0.5
STATUS_RETRY_MAX = 8.0
PLACE_WORKERS = 4


@dataclass
class NodeConfig:
    name: str
    cluster: str
    address: str
    pod_cidr: str
    role: str = "worker"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 110
    mtu: int = 1500
    state_dir: Path = Path(".")
    heartbeat_period: float = 2.0
    lease_duration: int = 40
    status_period: float = 10.0
    restart_backoff: float = 5.0
    max_restart_backoff: float = 300.0
    # upstream's --cluster-dns and --cluster-domain: a ClusterFirst pod's resolv.conf
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    # upstream's --resolv-conf: the node's resolver settings (dnsPolicy Default; searches for ClusterFirst)
    resolv_conf: Path | None = None
    # directories no pod may see (kubesim's state directory: tokens, keys); state_dir always is one
    hidden_dirs: list[Path] = field(default_factory=list)
    # How often mounted ConfigMaps, Secrets and tokens are refreshed: every pod of the node reads its
    # references (all have kube-root-ca.crt) once a period. Upstream's pod sync plus cache TTL is about a
    # minute; 10 s keeps a tutorial's "edit the ConfigMap, see it in the pod" short at 10 reads/s per 100 pods.
    volume_sync_period: float = 10.0


class IPAM:
    """Pod addresses of this node, kept in a file: {pod uid: address}."""

    def __init__(self, path: Path, pod_cidr: str):
        self.path = path
        self.net = IPNetwork(pod_cidr)
        self.assigned: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.assigned, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def allocate(self, uid: str) -> str:
        if uid in self.assigned:
            return self.assigned[uid]
        used = set(self.assigned.values())
        # .0 is the network, .1 the node's bridge, the last the broadcast address.
        for value in range(self.net.first + 2, self.net.last):
            candidate = str(IPAddress(value))
            if candidate not in used:
                self.assigned[uid] = candidate
                self._save()
                return candidate
        raise ContainerError("OutOfIPs", f"no free address left in pod CIDR {self.net}: all {len(used)} are "
                             "assigned to pods of this node")

    def release(self, uid: str) -> None:
        if self.assigned.pop(uid, None) is not None:
            self._save()


@dataclass
class ContainerState:
    spec: dict[str, Any]
    container: Container | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False  # the startup probe passed (or there is none)
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    last_terminated: dict[str, Any] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # as the running instance got it (exec gets it too)
    ephemeral: bool = False  # an ephemeral container (control.kubelet.ephemeral): started once, never restarted


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]):
        self.kubelet = kubelet
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.sandbox: Sandbox | None = None
        self.sandbox_body: dict[str, Any] | None = None  # RunPodSandbox's, with the runtime
        self.containers: dict[str, ContainerState] = {
            c["name"]: ContainerState(c) for c in pod["spec"].get("containers") or []}
        self.ephemeral = ephemeral.EphemeralContainers()
        self.phase = "Pending"
        self.reason: str | None = None
        self.start_time = now_rfc3339()
        self.stopping = asyncio.Event()
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._last_status: dict[str, Any] | None = None
        self.volumes = VolumePlan()
        self._tokens: dict[TokenWant, tuple[str, float]] = {}  # want -> (token, monotonic time to renew it)
        # The first mount reads the volumes' objects as of the pod's registration or later (SharedReads).
        self.registered = kubelet.shared_reads.registration()

    @property
    def key(self) -> str:
        return f"{self.pod['metadata'].get('namespace')}/{self.pod['metadata']['name']}"

    def container_state(self, name: str) -> ContainerState | None:
        """A container of the pod by name: a regular one, or an ephemeral one (exec, attach and logs reach both)."""
        return self.containers.get(name) or self.ephemeral.states.get(name)

    def logs_dir(self) -> Path:
        """The pod's directory: its containers' logs, and the files bound into its sandbox."""
        meta = self.pod["metadata"]
        return self.kubelet.config.state_dir / "pods" / f"{meta.get('namespace')}_{meta['name']}_{self.uid}"

    @property
    def hostname(self) -> str:
        """What `hostname` says in the pod (spec.hostname or the pod's name; its FQDN with setHostnameAsFQDN)."""
        try:
            return uts_hostname(self.pod, self.kubelet.config.cluster_domain)
        except PodFileError:
            return pod_hostname(self.pod, self.kubelet.config.cluster_domain)[0]

    def _place(self, ip: str) -> PodPlace:
        """The pod's place: its hostname, and its /etc/hosts, /etc/hostname and /etc/resolv.conf written
        into the pod's directory (as upstream's kubelet writes etc-hosts there) to be bound over the
        machine's; the kubelet's hidden directories, with only the pod's own credentials left in them.
        PodFileError or ValueError for a spec that cannot have them."""
        cfg = self.kubelet.config
        spec = self.pod.get("spec") or {}
        hostname, domain = pod_hostname(self.pod, cfg.cluster_domain)
        dns = pod_dns_config(self.pod, cluster_dns=cfg.cluster_dns, cluster_domain=cfg.cluster_domain,
                             host_resolv_conf=self.kubelet.host_resolv_conf)
        for warning in dns.warnings:
            self.kubelet.spawn(self._post_event("DNSConfigForming", warning, True))
        contents = {"/etc/hosts": hosts_file([ip], hostname, domain, spec.get("hostAliases") or []),
                    "/etc/hostname": hostname_file(uts_hostname(self.pod, cfg.cluster_domain)),
                    "/etc/resolv.conf": dns.render()}
        directory = self.logs_dir()
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for target, text in contents.items():
            source = directory / ("etc-" + target.rsplit("/", 1)[1])
            source.write_text(text)  # in place: a restarted kubelet rewriting it keeps the bound inode
            source.chmod(0o644)  # a container running as any user reads its /etc files
            files.append((target, str(source)))
        credentials = self.service_account_kubeconfig()
        volumes = self.volumes
        if volumes.mounts:
            (directory / "mnt").mkdir(mode=0o700, exist_ok=True)  # the pod's tmpfs for new mount points
        return PodPlace(uts_hostname(self.pod, cfg.cluster_domain), files=tuple(files),
                        hidden=tuple(str(d) for d in self.kubelet.hidden_dirs()),
                        exposed=(str(credentials.resolve()),) if credentials else (),
                        volumes=tuple((m.target, str(Path(m.source).resolve()), m.read_only) for m in volumes.mounts),
                        memory=tuple((str(d.resolve()), size) for d, size in volumes.memory),
                        scratch=str((directory / "mnt").resolve()) if volumes.mounts else "")

    def command_in(self, argv: list[str], container: str | None = None) -> list[str]:
        """ARGV run in this pod as a process of CONTAINER (its first by default) would run: inside the
        pod's network, UTS and mount namespaces, as the container's user (the kubelet's exec path)."""
        if self.sandbox is None:
            raise ContainerError("ContainerCreating", f"pod {self.key} has no sandbox yet")
        state = self.container_state(container) if container else next(iter(self.containers.values()), None)
        if state is None:
            raise ContainerError("NotFound", f"container {container!r} is not valid for pod {self.key}")
        uid, gid = run_as(self.pod.get("spec") or {}, state.spec)
        return namespaces.command_in(self.sandbox.netns, argv, uts=True, mnt=True, uid=uid, gid=gid)

    async def event(self, reason: str, message: str, warning: bool = False) -> None:
        """Record an Event in the background, as client-go's recorder does: the pod's progress never waits
        on it."""
        self.kubelet.spawn(self._post_event(reason, message, warning))

    async def _post_event(self, reason: str, message: str, warning: bool) -> None:
        # An event is best effort: one lost to an apiserver that is away (a connection error is not an
        # ApiError) must not surface as an unretrieved task exception.
        with contextlib.suppress(KubeClientError, OSError, ValueError):
            await self.kubelet.client.create_event(self.pod, reason=reason, message=message, component="kubelet",
                                                   event_type="Warning" if warning else "Normal",
                                                   host=self.kubelet.config.name, kind="Pod", api_version="v1")

    # -- lifecycle ------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._setup()
            status_task = asyncio.get_running_loop().create_task(self._status_loop())
            volume_task = asyncio.get_running_loop().create_task(self._volume_sync_loop())
            await self.stopping.wait()
            await self._teardown()
            for task in (status_task, volume_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s: worker failed", self.key)

    async def _setup(self) -> None:
        unsupported = host_namespace_problem(self.pod)
        if unsupported is not None:
            for state in self.containers.values():
                state.waiting = (CONFIG_ERROR, unsupported)
            await self.event("Failed", f"Error: {unsupported}", warning=True)
            await self._write_status()
            return
        problems = [p for c in self.containers.values() for p in probe_errors(c.spec)]
        if problems:
            for state in self.containers.values():
                state.waiting = ("CreateContainerConfigError", "; ".join(problems))
            await self.event("Failed", f"Error: invalid probes: {'; '.join(problems)}", warning=True)
            await self._write_status()
            return
        if not await self._mount_volumes():
            return
        if not await self._make_sandbox():
            return
        self.phase = "Running"
        for state in self.containers.values():
            await self._start_container(state)
        ephemeral.sync(self)  # those added while the pod was being set up
        await self._write_status()

    # -- volumes (control.kubelet.volumes) --------------------------------------------------------------

    async def _volume_plan(self, after: int | None = None) -> VolumePlan:
        """The pod's volumes as they should be now: the ConfigMaps and Secrets they name read (the Node
        authorizer lets this node read what its pods reference), the ServiceAccount tokens requested.
        The objects are the node's shared copies (SharedReads): fetched after the registration mark AFTER,
        or, without it (a refresh), not older than the copies' TTL."""
        meta = self.pod["metadata"]
        namespace = str(meta.get("namespace") or "")
        kinds = {"configmaps": CONFIG_MAPS, "secrets": SECRETS, "persistentvolumeclaims": PERSISTENT_VOLUME_CLAIMS,
                 "persistentvolumes": PERSISTENT_VOLUMES}
        client = self.kubelet.client

        def fetch(plural: str, name: str) -> Callable[[], Coroutine[Any, Any, dict[str, Any] | None]]:
            resource = kinds[plural]

            async def get() -> dict[str, Any] | None:
                try:
                    return await client.get(resource, name, namespace=namespace if resource.namespaced else None)
                except NotFound:
                    return None
            return get

        async def read(plural: str, name: str) -> dict[str, Any] | None:
            try:
                return await self.kubelet.shared_reads.read((plural, namespace, name), fetch(plural, name), after=after)
            except KubeClientError as exc:
                raise VolumeError(name, f"failed to read {plural[:-1]} {namespace}/{name}: {exc}") from None

        async def read_all(named: list[tuple[str, str]]) -> list[dict[str, Any] | None]:
            results = await asyncio.gather(*(read(plural, name) for plural, name in named), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return results  # type: ignore[return-value]

        # The objects and the tokens all at once: each is a round trip to the apiserver, which under a burst of
        # pods is busy. A failure is the first in the order they are named, as if read one by one.
        named = list(references(self.pod))
        wants = list(token_requests(self.pod))
        gathered = await asyncio.gather(read_all(named), *(self._token(want) for want in wants),
                                        return_exceptions=True)
        for result in gathered:
            if isinstance(result, BaseException):
                raise result
        objects: dict[tuple[str, str], dict[str, Any] | None] = dict(zip(named, gathered[0], strict=True))
        tokens = {want: str(result) for want, result in zip(wants, gathered[1:], strict=True)}
        # Then the volumes bound to the pod's claims, which the Node authorizer lets this node read now.
        bound = [("persistentvolumes", str(volume_of(found))) for (plural, _), found in objects.items()
                 if plural == "persistentvolumeclaims" and volume_of(found) is not None]
        objects.update(zip(bound, await read_all(bound), strict=True))
        cfg = self.kubelet.config
        return volume_plan(self.pod, objects, tokens, pod_dir=self.logs_dir(),
                           allocatable={"cpu": cfg.cpu, "memory": cfg.memory, "ephemeral-storage": "100Gi"})

    async def _token(self, want: TokenWant) -> str:
        """A token for the pod's ServiceAccount, bound to the pod (TokenRequest), renewed past 80% of its
        life as upstream's token manager renews it."""
        held = self._tokens.get(want)
        if held is not None and self.kubelet.clock.monotonic() < held[1]:
            return held[0]
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        account = str(spec.get("serviceAccountName") or "default")
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [want.audience] if want.audience else [],
                         "expirationSeconds": want.expiration_seconds,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                            "uid": meta["uid"]}}}
        try:
            answer = await self.kubelet.client.create(SERVICE_ACCOUNTS, body, namespace=meta.get("namespace"),
                                                      name=account, subresource="token")
        except KubeClientError as exc:
            raise VolumeError("kube-api-access", f"failed to fetch token: {exc}") from None
        token = str((answer.get("status") or {}).get("token") or "")
        self._tokens[want] = (token, self.kubelet.clock.monotonic() + 0.8 * want.expiration_seconds)
        return token

    async def _mount_volumes(self) -> bool:
        """The pod's volume files written, tried again with back-off while a volume cannot be set up (a
        missing ConfigMap or Secret: the pod stays ContainerCreating, with upstream's FailedMount events).
        False if the pod began stopping first."""
        delay = self.kubelet.config.restart_backoff
        after = self.registered
        while True:
            try:
                self.volumes = await self._volume_plan(after)
                await asyncio.to_thread(write_plan, self.volumes)
                return True
            except (VolumeError, OSError) as exc:
                message = exc.message if isinstance(exc, VolumeError) else f"MountVolume.SetUp failed: {exc}"
                log.warning("pod %s: %s", self.key, message)
                await self.event("FailedMount", message, warning=True)
                await self._write_status()
            if await self._stopping_within(delay):
                return False
            delay = min(delay * 2, self.kubelet.config.max_restart_backoff)
            after = self.kubelet.shared_reads.registration()  # a retry reads what is there now

    async def _volume_sync_loop(self) -> None:
        """Mounted ConfigMaps, Secrets and tokens kept current (their directories swap atomically); a volume
        that cannot be read now keeps what it had, as upstream's does."""
        if not self.volumes.payloads:
            return
        while not await self._stopping_within(self.kubelet.config.volume_sync_period):
            try:
                changed = await asyncio.to_thread(write_plan, await self._volume_plan())
            except (VolumeError, OSError) as exc:
                log.warning("pod %s: volumes not refreshed: %s", self.key, exc)
                continue
            if changed:
                log.info("pod %s: updated volumes %s", self.key, ", ".join(changed))

    async def _make_sandbox(self) -> bool:
        """An address and a sandbox for the pod, tried again with back-off while either cannot be had
        (upstream's FailedCreatePodSandBox: the pod stays Pending with its containers ContainerCreating,
        and the kubelet keeps trying). False if the pod began stopping first."""
        cfg = self.kubelet.config
        delay = cfg.restart_backoff
        while True:
            try:
                ip = self.kubelet.ipam.allocate(self.uid)
                sandbox = sandbox_for(cfg.cluster, cfg.name, cfg.pod_cidr, self.uid, ip, mtu=cfg.mtu)
                if self.kubelet.runtime is not None:
                    # The runtime makes it, or finds it made (a pod adopted after a kubelet restart).
                    self.sandbox_body = self.sandbox_request(ip)
                    await self.kubelet.runtime.call("RunPodSandbox", self.sandbox_body)
                elif not self.kubelet.kernel.ns_exists(sandbox.netns):
                    place = self._place(ip)
                    await self.kubelet.netlink(create_sandbox, sandbox, kernel=self.kubelet.kernel)
                    try:
                        await self.kubelet.make_place(sandbox.netns, place)
                    except Exception:  # not on cancellation: a kubelet stopping leaves its pods running
                        await self.kubelet.netlink(delete_sandbox, sandbox, kernel=self.kubelet.kernel)
                        raise
                self.sandbox = sandbox
                return True
            except (ContainerError, NetsimError, ValueError, RuntimeCallError, OSError) as exc:
                message = exc.message if isinstance(exc, ContainerError | RuntimeCallError) else str(exc)
                log.warning("pod %s: cannot create its sandbox, retrying in %gs: %s", self.key, delay, message)
                await self.event("FailedCreatePodSandBox", f"Failed to create pod sandbox: {message}", warning=True)
                await self._write_status()
            if await self._stopping_within(delay):
                return False
            delay = min(delay * 2, cfg.max_restart_backoff)

    def sandbox_request(self, ip: str) -> dict[str, Any]:
        """RunPodSandbox's body: the pod's identity, address and place (its files written here first)."""
        place = self._place(ip)
        meta = self.pod["metadata"]
        return {"uid": self.uid, "name": meta["name"], "namespace": meta.get("namespace"), "ip": ip,
                "place": {"hostname": place.hostname, "files": [list(f) for f in place.files],
                          "hidden": list(place.hidden), "exposed": list(place.exposed),
                          "volumes": [list(v) for v in place.volumes], "memory": [list(m) for m in place.memory],
                          "scratch": place.scratch}}

    def service_account_kubeconfig(self) -> Path | None:
        """The credentials issued to this node for the pod's ServiceAccount (kubesim's stand-in for the
        projected token the kubelet would request): <root-dir>/serviceaccounts/<ns>/<name>.kubeconfig."""
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        account = str(spec.get("serviceAccountName") or "default")
        path = self.kubelet.config.state_dir / "serviceaccounts" / str(meta.get("namespace")) / f"{account}.kubeconfig"
        return path if path.is_file() else None

    async def start_container(self, state: ContainerState) -> None:
        """Start STATE's container as the pod's own start: how control.kubelet.ephemeral starts its ones."""
        await self._start_container(state)

    async def _start_container(self, state: ContainerState) -> None:
        assert self.sandbox is not None
        spec = state.spec
        path = self.logs_dir() / f"{spec['name']}.log"
        adopted = self.kubelet.adoptable.pop((self.uid, spec["name"]), None)
        if adopted is not None:
            state.restart_count = int(adopted["metadata"].get("attempt") or 0)
        elif state.restart_count > 0 and path.exists():
            # the instance before is what `kubectl logs --previous` reads; the new one starts a log of its own
            retire(path, path.with_name(f"{spec['name']}.previous.log"))  # with its rotated files
        container_log = ContainerLog(path)
        try:
            env = state.env = await self._environment(spec)
            identity: RunAs = run_as(self.pod.get("spec") or {}, spec)
            runtime = self.kubelet.runtime
            container: Container
            if adopted is not None and runtime is not None:
                container = RemoteContainer.adopt(runtime, adopted, container_log)
                log.info("pod %s: adopted running container %s", self.key, adopted["id"])
            elif runtime is not None:
                credentials = self.service_account_kubeconfig()
                # The body made with the sandbox, not made again: that would rewrite the pod's /etc files
                # while its running containers read them.
                container = RemoteContainer(runtime, self.sandbox_body or self.sandbox_request(self.sandbox.ip), {
                    "spec": expand_command(spec, env), "env": env, "hostname": self.hostname,
                    "logPath": str(path), "attempt": state.restart_count, "runAs": list(identity),
                    "credentials": str(credentials) if credentials else None}, container_log)
                await container.start()
            else:
                # In this process: the kubelet runs without a runtime.
                container = self.kubelet.containers(expand_command(spec, env), netns=self.sandbox.netns,
                                                    hostname=self.hostname, log=container_log, env=env,
                                                    credentials=self.service_account_kubeconfig(), run_as=identity)
                await container.start()
        except ContainerError as exc:
            state.waiting = (exc.reason, exc.message)
            state.container = None
            await self.event("Failed", f"Error: {exc.message}", warning=True)
            if exc.reason == CONFIG_ERROR:  # a missing ConfigMap or Secret key: tried again until it is there
                state.tasks.append(asyncio.get_running_loop().create_task(self._retry_config_later(state)))
            # it started and failed at once (a port clash): it may restart, unless ephemeral
            if exc.reason == "Error" and not state.ephemeral:
                state.last_terminated = {"exitCode": 1, "reason": "Error", "message": exc.message,
                                         "startedAt": now_rfc3339(), "finishedAt": now_rfc3339()}
                state.tasks.append(asyncio.get_running_loop().create_task(self._restart_later(state)))
            self.changed.set()
            return
        state.container = container
        state.waiting = None
        state.started = "startupProbe" not in spec
        state.ready = state.started and "readinessProbe" not in spec
        await self.event("Started", f"Started container {spec['name']}")
        loop = asyncio.get_running_loop()
        state.tasks.append(loop.create_task(self._watch_exit(state, container)))
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in spec:
                state.tasks.append(loop.create_task(self._probe_loop(state, container, kind)))
        self.changed.set()

    async def _environment(self, spec: dict[str, Any]) -> dict[str, str]:
        """The container's env from the pod's spec, reading the ConfigMaps and Secrets it names (which the
        Node authorizer lets this node read, as the pod is bound here)."""
        assert self.sandbox is not None
        namespace = self.pod["metadata"].get("namespace")
        kinds = {"configmaps": CONFIG_MAPS, "secrets": SECRETS}

        async def fetch(plural: str, name: str) -> dict[str, Any] | None:
            try:
                return await self.kubelet.client.get(kinds[plural], name, namespace=namespace)
            except NotFound:
                return None
            except KubeClientError as exc:
                raise ContainerError(CONFIG_ERROR, f"failed to read {plural[:-1]} {namespace}/{name}: {exc}") from None

        cfg = self.kubelet.config
        env, warnings = await container_env(self.pod, spec, fetch=fetch, pod_ip=self.sandbox.ip, host_ip=cfg.address,
                                            allocatable={"cpu": cfg.cpu, "memory": cfg.memory,
                                                         "ephemeral-storage": "100Gi"},
                                            services=self.kubelet.services.store.list())
        for warning in warnings:
            await self.event("InvalidEnvironmentVariableNames", warning, warning=True)
        return env

    async def _retry_config_later(self, state: ContainerState) -> None:
        """Start the container again after a back-off, as the kubelet's next pod sync would: the missing
        ConfigMap, Secret or key may exist by then."""
        delay = self.kubelet.config.restart_backoff
        if not await self._stopping_within(delay):
            await self._start_container(state)

    async def _watch_exit(self, state: ContainerState, container: Container) -> None:
        await container.exited.wait()
        if self.stopping.is_set():
            return
        state.ready = False
        code = container.exit_code or 0
        self.changed.set()
        if state.ephemeral:
            return  # it stays terminated, and has no part in the pod's phase
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            # lastState is the termination before a restart; a container that stays terminated shows it
            # as its state, with lastState empty (as upstream's kubelet reports it).
            state.last_terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                     "startedAt": container.started_at, "finishedAt": container.finished_at}
            await self._restart_later(state)
        elif all(not s.container.running if s.container is not None else s.waiting != ("ContainerCreating", "")
                 for s in self.containers.values()):
            # (a container still being created is not done: with the runtime a start takes a round trip,
            # and one container may exit while the next is starting)
            failed = any((s.container is not None and (s.container.exit_code or 0) != 0)
                         or (s.last_terminated or {}).get("exitCode", 0) != 0 for s in self.containers.values())
            self.phase = "Failed" if failed else "Succeeded"
            self.changed.set()

    async def _restart_later(self, state: ContainerState) -> None:
        cfg = self.kubelet.config
        delay = min(cfg.restart_backoff * (2 ** state.restart_count), cfg.max_restart_backoff)
        state.waiting = ("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container={state.spec['name']} "
                                             f"pod={self.pod['metadata']['name']}")
        self.changed.set()
        await self.event("BackOff", "Back-off restarting failed container", warning=True)
        if await self._stopping_within(delay):
            return
        state.restart_count += 1
        await self._start_container(state)

    async def _stopping_within(self, delay: float) -> bool:
        """Wait DELAY seconds of the kubelet's clock, or less if the pod starts stopping: True then."""
        if self.stopping.is_set():
            return True
        timer = asyncio.ensure_future(self.kubelet.clock.sleep(delay))
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({timer, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            stop.cancel()
        return self.stopping.is_set()

    async def _probe_loop(self, state: ContainerState, container: Container, kind: str) -> None:
        assert self.sandbox is not None
        probe = state.spec[kind]
        clock = self.kubelet.clock
        await clock.sleep(float(probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        success_threshold = int(probe.get("successThreshold", 1))
        failure_threshold = int(probe.get("failureThreshold", 3))
        while container.running and not self.stopping.is_set():
            if kind != "startupProbe" and not state.started:
                await clock.sleep(0.2)
                continue
            result: ProbeResult = await self.kubelet.prober.run(kind, probe, pod=self.key, pod_ip=self.sandbox.ip,
                                                                netns=self.sandbox.netns, container=state.spec)
            if result.ok:
                successes, failures = successes + 1, 0
                if successes >= success_threshold:
                    if kind == "readinessProbe" and not state.ready:
                        state.ready = True
                        self.changed.set()
                    elif kind == "startupProbe":
                        state.started = True
                        state.ready = "readinessProbe" not in state.spec
                        self.changed.set()
                        return
            else:
                successes, failures = 0, failures + 1
                label = {"readinessProbe": "Readiness", "livenessProbe": "Liveness", "startupProbe": "Startup"}[kind]
                await self.event("Unhealthy", f"{label} probe failed: {result.message}", warning=True)
                if failures >= failure_threshold:
                    if kind == "readinessProbe" and state.ready:
                        state.ready = False
                        self.changed.set()
                    elif kind in ("livenessProbe", "startupProbe"):
                        await self.event("Killing", f"Container {state.spec['name']} failed {label.lower()} probe, "
                                         "will be restarted")
                        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                        await container.stop(grace)
                        return
            await clock.sleep(float(probe.get("periodSeconds", 10)))

    async def _teardown(self) -> None:
        grace = float(self.pod["metadata"].get("deletionGracePeriodSeconds")
                      or self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        for state in self.containers.values():
            state.ready = False
        await self._write_status()
        stops = []
        for state in [*self.containers.values(), *self.ephemeral.states.values()]:
            for task in state.tasks:
                task.cancel()
            if state.container is not None and state.container.running:
                await self.event("Killing", f"Stopping container {state.spec['name']}")
                stops.append(state.container.stop(grace))
        await asyncio.gather(*stops, return_exceptions=True)
        if self.sandbox is not None:
            await self.kubelet.remove_sandbox(self.sandbox)
        self.kubelet.ipam.release(self.uid)

    # -- status ---------------------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        backoff = STATUS_RETRY_INITIAL
        while True:
            await self.changed.wait()
            self.changed.clear()
            if await self._write_status():
                backoff = STATUS_RETRY_INITIAL
                await asyncio.sleep(0.05)  # coalesce bursts of changes into one write
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, STATUS_RETRY_MAX)

    def container_status(self, state: ContainerState) -> dict[str, Any]:
        spec = state.spec
        entry: dict[str, Any] = {"name": spec["name"], "image": spec.get("image", ""),
                                 "imageID": f"kubesim://{spec.get('image', '')}",
                                 "ready": state.ready, "restartCount": state.restart_count,
                                 "started": state.container is not None and state.container.running}
        if state.waiting is not None:
            reason, message = state.waiting
            entry["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        elif state.container is not None and state.container.running:
            entry["state"] = {"running": {"startedAt": state.container.started_at}}
            entry["containerID"] = f"kubesim://{self.uid}/{spec['name']}/{state.restart_count}"
        elif state.container is not None:
            entry["state"] = {"terminated": {"exitCode": state.container.exit_code or 0,
                                             "reason": "Completed" if not state.container.exit_code else "Error",
                                             "startedAt": state.container.started_at,
                                             "finishedAt": state.container.finished_at}}
        if state.last_terminated is not None:
            entry["lastState"] = {"terminated": state.last_terminated}
        return entry

    def status(self) -> dict[str, Any]:
        cfg = self.kubelet.config
        statuses = [self.container_status(state) for state in self.containers.values()]
        all_ready = bool(statuses) and all(s["ready"] for s in statuses) and self.phase == "Running"
        old = {c.get("type"): c for c in (self.pod.get("status") or {}).get("conditions") or []}

        def condition(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            value = "True" if ok else "False"
            previous = old.get(kind)
            since = previous["lastTransitionTime"] if previous and previous.get("status") == value else now_rfc3339()
            result = {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": since}
            if reason and not ok:
                result["reason"] = reason
            return result

        status: dict[str, Any] = {
            "phase": self._phase(),
            "conditions": [
                condition("PodReadyToStartContainers", self.sandbox is not None),
                condition("Initialized", True),
                condition("Ready", all_ready, "ContainersNotReady"),
                condition("ContainersReady", all_ready, "ContainersNotReady"),
                condition("PodScheduled", True),
            ],
            "hostIP": cfg.address,
            "hostIPs": [{"ip": cfg.address}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
            "qosClass": pod_qos_class(self.pod),
        }
        if self.ephemeral.states:
            status["ephemeralContainerStatuses"] = ephemeral.statuses(self)
        if self.sandbox is not None:
            status["podIP"] = self.sandbox.ip
            status["podIPs"] = [{"ip": self.sandbox.ip}]
        return status

    def reconcile_status(self, api_pod: dict[str, Any]) -> None:
        """The status manager's needsReconcile: when the API's pod conditions differ from what this kubelet
        last wrote (the node lifecycle controller marked the pod not Ready while the node was cut off from
        the apiserver), write ours again, or the pod stays not Ready after the node is back."""
        if self._last_status is None:
            return
        # Only the conditions the kubelet writes: one another component owns is not ours to fight over.
        ours = {c.get("type"): c.get("status") for c in self._last_status.get("conditions") or []}
        theirs = {c.get("type"): c.get("status") for c in (api_pod.get("status") or {}).get("conditions") or []
                  if c.get("type") in ours}
        if theirs != ours:
            self._last_status = None
            self.changed.set()


    def _phase(self) -> str:
        """Pending while a container has never started (waiting, nothing terminated before), as upstream's
        getPhase has it: a container held back by CreateContainerConfigError keeps its pod Pending."""
        if self.phase == "Running" and any(s.container is None and s.waiting is not None and s.last_terminated is None
                                           for s in self.containers.values()):
            return "Pending"
        return self.phase

    async def _write_status(self) -> bool:
        """Send the pod's status if it changed; False if the write failed and is due again (the status
        loop retries it: `changed` is set so that a failure before the loop starts is not lost)."""
        status = self.status()
        if status == self._last_status:
            return True
        meta = self.pod["metadata"]
        try:
            updated = await self.kubelet.client.patch(PODS, meta["name"], {"status": status},
                                                      namespace=meta.get("namespace"), subresource="status")
        except NotFound:
            return True
        except KubeClientError as exc:
            log.warning("pod %s: status update failed, retrying: %s", self.key, exc)
            self.changed.set()
            return False
        self.pod = updated
        self._last_status = status
        return True


def _read_resolv_conf(path: Path | None) -> str | None:
    """The node's resolver file, or None: upstream's kubelet starts without one (a warning) rather than fail."""
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as exc:
        log.warning("--resolv-conf %s cannot be read (%s): pods get no host DNS settings", path, exc.strerror)
        return None


class Kubelet:
    """One node's kubelet. Its side effects come through seams (habit 3), the real ones by default:
    KERNEL makes sandboxes (netsim's LinuxKernel; FakeKernel in tests), CONTAINERS makes containers
    (make_container), PROBER runs probes (NetworkProber), CLOCK paces back-offs, probes and heartbeats
    (SystemClock). control.kubelet.fake has the fakes. A pod's status writes are paced on real time
    (a 50 ms coalescing pause, retry back-off): they pace the API, not the pod, and must go on while a
    test holds the fake clock still."""

    def __init__(self, client: Client, config: NodeConfig, *, kernel: Kernel | None = None,
                 containers: ContainerFactory | None = None, prober: Prober | None = None,
                 clock: Clock | None = None, runtime: RuntimeClient | None = None):
        self.client = client
        # the node runtime's client (the containerd role); None: containers live in this process
        self.runtime = runtime
        self.adoptable: dict[tuple[str, str], dict[str, Any]] = {}
        self.config = config
        # pyroute2's synchronous sockets run an event loop of their own, which cannot nest in ours: all
        # netlink work happens on one thread of its own (LinuxKernel is not thread-safe either).
        self.kernel: Kernel = kernel if kernel is not None else LinuxKernel()
        self.containers: ContainerFactory = containers if containers is not None else make_container
        self.prober: Prober = prober if prober is not None else NetworkProber()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._netlink_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        # Making a pod's place runs a process (~20-100 ms, mostly its start): several at once, beside the
        # netlink thread, so that a burst of pods is not queued behind them one by one.
        self._place_threads = ThreadPoolExecutor(max_workers=PLACE_WORKERS, thread_name_prefix="place")
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.host_resolv_conf = _read_resolv_conf(config.resolv_conf)
        self.ipam = IPAM(config.state_dir / "ipam.json", config.pod_cidr)
        self.workers: dict[str, PodWorker] = {}
        # A refresh may use a copy up to half a period old: a change reaches the pods within 1.5 periods.
        self.shared_reads = SharedReads(self.clock.monotonic, ttl=config.volume_sync_period / 2)
        self._background: set[asyncio.Task[None]] = set()
        self.informer = Informer(client, PODS, field_selector=f"spec.nodeName={config.name}")
        # The service variables of containers' environments come from here (the kubelet's service lister).
        self.services = Informer(client, SERVICES)

    def hidden_dirs(self) -> list[Path]:
        """The directories to hide in every pod: the configured ones and the kubelet's own, each once (one
        inside another is hidden with it)."""
        wanted = sorted({d.resolve() for d in [*self.config.hidden_dirs, self.config.state_dir] if d.is_dir()},
                        key=lambda d: len(d.parts))
        kept: list[Path] = []
        for directory in wanted:
            if not any(directory.is_relative_to(outer) for outer in kept):
                kept.append(directory)
        return kept

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run WORK in the background, keeping a reference until it is done (asyncio keeps only weak ones)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def netlink(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._netlink_thread,
                                                                functools.partial(fn, *args, **kwargs))

    async def remove_sandbox(self, sandbox: Sandbox) -> None:
        """The sandbox and what runs in it, by the runtime when there is one (idempotent either way)."""
        if self.runtime is not None:
            await self.runtime.call("RemovePodSandbox", {"podSandboxId": sandbox.pod_id})
        # Without a runtime, or a container kept in this process: its processes and namespaces go too.
        await self.netlink(delete_sandbox, sandbox, kernel=self.kernel)

    async def adopt_from_runtime(self) -> None:
        """What the runtime still runs, before any pod worker starts: running containers are adopted by
        (pod UID, container name) instead of started again, as upstream's kubelet finds its pods'
        containers in the CRI after a restart."""
        assert self.runtime is not None
        for item in (await self.runtime.call("ListContainers"))["items"]:
            if item["state"] == "CONTAINER_RUNNING":
                self.adoptable[(item["podSandboxId"], item["metadata"]["name"])] = item

    async def remove_orphans_from_runtime(self, live_uids: set[str]) -> None:
        assert self.runtime is not None
        for item in (await self.runtime.call("ListPodSandbox"))["items"]:
            if item["id"] not in live_uids:
                log.info("removing sandbox %s of a pod that is gone", item["id"])
                await self.runtime.call("RemovePodSandbox", {"podSandboxId": item["id"]})
        self.adoptable = {k: v for k, v in self.adoptable.items() if k[0] in live_uids}

    async def make_place(self, netns: str, place: PodPlace) -> None:
        """The UTS and mount namespaces of the pod sandbox NETNS (kernel.ns_create_place, thread-safe)."""
        await asyncio.get_running_loop().run_in_executor(self._place_threads, self.kernel.ns_create_place, netns,
                                                         place)

    # -- node -----------------------------------------------------------------------------------------

    def node_object(self) -> dict[str, Any]:
        cfg = self.config
        labels = {"kubernetes.io/hostname": cfg.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", **cfg.labels}
        if cfg.role == "control-plane":
            labels["node-role.kubernetes.io/control-plane"] = ""
        spec: dict[str, Any] = {"podCIDR": cfg.pod_cidr, "podCIDRs": [cfg.pod_cidr]}
        if cfg.taints:
            spec["taints"] = cfg.taints
        # where `kubectl top` numbers come from, for `kubectl describe node` to show (resourcemetrics.py)
        annotations = {resourcemetrics.SOURCE_ANNOTATION: resourcemetrics.NODE_SOURCE}
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": cfg.name, "labels": labels,
                                                                 "annotations": annotations},
                "spec": spec, "status": self.node_status()}

    def node_status(self) -> dict[str, Any]:
        cfg = self.config
        now = now_rfc3339()
        resources = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.pods), "ephemeral-storage": "100Gi"}

        def condition(kind: str, value: str, reason: str, message: str) -> dict[str, Any]:
            return {"type": kind, "status": value, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": self._started}

        return {
            "capacity": resources, "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": cfg.address}, {"type": "Hostname", "address": cfg.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                         "containerRuntimeVersion": RUNTIME_VERSION, "operatingSystem": "linux",
                         "architecture": "amd64", "osImage": "kubesim (network namespaces)",
                         "kernelVersion": platform.release(), "machineID": cfg.name, "systemUUID": cfg.name,
                         "bootID": self._started},
        }

    _started = now_rfc3339()

    async def register(self) -> None:
        node = self.node_object()
        try:
            await self.client.create(NODES, node)
            log.info("registered node %s", self.config.name)
        except AlreadyExists:
            current = await self.client.get(NODES, self.config.name)
            labels = {**(current["metadata"].get("labels") or {}), **node["metadata"]["labels"]}
            await self.client.patch(NODES, self.config.name, {"metadata": {
                "labels": labels, "annotations": node["metadata"]["annotations"]}})
            log.info("node %s already registered; updating its status", self.config.name)
        await self.client.patch(NODES, self.config.name, {"status": self.node_status()}, subresource="status")

    async def heartbeat(self) -> None:
        """Renew the node's Lease every heartbeat period; post node status less often (upstream's
        node-status-report-frequency vs lease renew interval)."""
        cfg = self.config
        last_status = self.clock.monotonic()
        while True:
            micro = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z"
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": cfg.name, "namespace": "kube-node-lease"},
                     "spec": {"holderIdentity": cfg.name, "leaseDurationSeconds": cfg.lease_duration,
                              "renewTime": micro}}
            try:
                try:
                    await self.client.patch(LEASES, cfg.name, {"spec": lease["spec"]}, namespace="kube-node-lease")
                except NotFound:
                    await self.client.create(LEASES, lease, namespace="kube-node-lease")
                if self.clock.monotonic() - last_status >= cfg.status_period:
                    await self.client.patch(NODES, cfg.name, {"status": self.node_status()}, subresource="status")
                    last_status = self.clock.monotonic()
            except (ApiError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception as exc:  # connection trouble: keep beating
                log.warning("heartbeat failed: %s", exc)
            await self.clock.sleep(cfg.heartbeat_period)

    # -- pods -----------------------------------------------------------------------------------------

    def on_pod(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            if pod["metadata"].get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in (
                    "Succeeded", "Failed"):
                # Nothing of ours runs for it (a restart after we finished it): let it go.
                self.spawn(self._finish(pod))
                return
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.task = asyncio.get_running_loop().create_task(self._run_worker(worker))
            return
        worker.pod = {**pod, "status": worker.pod.get("status", {})}
        worker.reconcile_status(pod)
        ephemeral.sync(worker)
        if pod["metadata"].get("deletionTimestamp"):
            worker.stopping.set()

    def on_pod_deleted(self, pod: dict[str, Any]) -> None:
        worker = self.workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.pod["metadata"]["deletionGracePeriodSeconds"] = 0
            worker.stopping.set()

    async def _run_worker(self, worker: PodWorker) -> None:
        # The worker stays listed until its pod is finished, so that a kubelet stopping cancels that too.
        try:
            await worker.run()
            await self._finish(worker.pod)
        finally:
            self.workers.pop(worker.uid, None)

    async def _finish(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        # Whatever happened in the worker, the sandbox goes before the pod object does (idempotent).
        sandbox = sandbox_for(self.config.cluster, self.config.name, self.config.pod_cidr, meta["uid"],
                              self.ipam.assigned.get(meta["uid"], str(IPNetwork(self.config.pod_cidr)[2])))
        await self.remove_sandbox(sandbox)
        self.ipam.release(meta["uid"])
        # The pod's volumes go with its sandbox (upstream's orphaned pod cleanup); its logs stay.
        pod_dir = self.config.state_dir / "pods" / f"{meta.get('namespace')}_{meta['name']}_{meta['uid']}"
        for kept in ("volumes", "mnt"):
            await asyncio.to_thread(shutil.rmtree, pod_dir / kept, True)
        if not meta.get("deletionTimestamp"):
            return
        with contextlib.suppress(NotFound, Conflict):
            await self.client.delete(PODS, meta["name"], namespace=meta.get("namespace"), grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]})

    def _remove_orphan_sandboxes(self, live_uids: set[str]) -> None:
        """Sandboxes (and addresses) left by an earlier run for pods that no longer exist here."""
        prefix = names.pod_ns(self.config.cluster, "")
        ours = set(self.ipam.assigned)
        for ns in self.kernel.ns_list():
            uid = ns[len(prefix):] if ns.startswith(prefix) else None
            if uid in ours and uid not in live_uids:
                self.kernel.ns_kill_processes(ns)  # a process container the killed kubelet left running
                self.kernel.ns_delete(ns)
        for uid in ours - live_uids:
            self.ipam.release(uid)

    async def run(self) -> None:
        await self.register()
        heartbeat = asyncio.get_running_loop().create_task(self.heartbeat())
        self.informer.add_handler(on_add=self.on_pod, on_update=lambda old, new: self.on_pod(new),
                                  on_delete=self.on_pod_deleted)
        # As upstream's kubelet, no container's environment is made before the services were read once.
        self.services.start()
        await self.services.wait_synced()
        if self.runtime is not None:
            await self.adopt_from_runtime()
        self.informer.start()
        await self.informer.wait_synced()
        live = {p["metadata"]["uid"] for p in self.informer.store.list()}
        if self.runtime is not None:
            await self.remove_orphans_from_runtime(live)
        await self.netlink(self._remove_orphan_sandboxes, live)
        try:
            await asyncio.Event().wait()
        finally:
            heartbeat.cancel()
            await self.informer.stop()
            await self.services.stop()
            for worker in list(self.workers.values()):
                if worker.task:
                    worker.task.cancel()
            for task in list(self._background):
                task.cancel()
            if self.runtime is not None:
                await self.runtime.close()
            await self.netlink(self.kernel.close)
            self._netlink_thread.shutdown()
            self._place_threads.shutdown()

    def _pod_container(self, namespace: str, name: str, container: str | None) -> tuple[PodWorker, str]:
        """The worker of a pod on this node and one of its containers (its first by default).

        LogRequestError: 400 for a name that is not a valid Kubernetes name, 404 for a pod not on this
        node or a container not in it."""
        validate_log_request(namespace, name, container)
        for worker in self.workers.values():
            meta = worker.pod["metadata"]
            if meta.get("namespace") == namespace and meta["name"] == name:
                chosen = container or next(iter(worker.containers), None)
                if chosen is None or worker.container_state(chosen) is None:
                    raise LogRequestError(404, f"container {chosen!r} is not valid for pod {namespace}/{name}")
                return worker, chosen
        raise LogRequestError(404, f"pod {namespace}/{name} is not on this node")

    async def container_log(self, namespace: str, name: str, container: str | None, tail: int | None) -> bytes:
        """The log of a container of a pod on this node (its first container by default); see _pod_container."""
        worker, chosen = self._pod_container(namespace, name, container)
        return read_container_log(worker.logs_dir(), chosen, tail)

    def log_source(self, namespace: str, name: str, container: str | None, *,
                   previous: bool = False) -> tuple[Path, Callable[[], bool]]:
        """The log file of a container (of its previous instance with PREVIOUS), and a test of whether a
        follower is done with it: when the running instance is gone (exited, restarted, or its pod
        stopped here). LogRequestError as _pod_container, and 400 for a previous instance there is not."""
        worker, chosen = self._pod_container(namespace, name, container)
        path = log_path(worker.logs_dir(), chosen, previous=previous)
        if previous and not path.exists():
            raise LogRequestError(400, f'previous terminated container "{chosen}" in pod "{name}" not found')
        state = worker.container_state(chosen)
        assert state is not None  # _pod_container found it
        instance = state.container
        if previous or instance is None or not instance.running:
            return path, lambda: True
        return path, lambda: (state.container is not instance or not instance.running
                              or self.workers.get(worker.uid) is not worker)

    def running_container(self, namespace: str, name: str, container: str | None) -> tuple[PodWorker, Container]:
        """A container of a pod here that is running now: what exec and attach need. LogRequestError as
        _pod_container, and 404 `container not found` (the runtime's words) when it is not running."""
        worker, chosen = self._pod_container(namespace, name, container)
        state = worker.container_state(chosen)
        instance = state.container if state is not None else None
        if worker.sandbox is None or instance is None or not instance.running or worker.stopping.is_set():
            raise LogRequestError(404, f'container not found ("{chosen}")')
        return worker, instance

    def pod_list(self) -> dict[str, Any]:
        """The kubelet API's /pods: the pods it runs, each with the status this kubelet makes for it."""
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                "items": [{**w.pod, "status": w.status()} for w in self.workers.values()]}

    async def runtime_session(self, verb: str, namespace: str, name: str, container: str | None,
                              body: dict[str, Any]) -> tuple[RuntimeClient, str] | None:
        """The runtime's session for VERB (Exec, Attach: of the running container; PortForward: of the
        pod's sandbox) as (client, URL), or None when this process runs the container (no runtime).
        SessionError with the runtime's refusal."""
        if self.runtime is None:
            return None
        if verb == "PortForward":
            self.pod_target(namespace, name)
            # with a runtime, every sandbox is the runtime's (_make_sandbox)
            worker = next(w for w in self.workers.values()
                          if w.pod["metadata"].get("namespace") == namespace and w.pod["metadata"]["name"] == name)
            request = {"podSandboxId": worker.uid, **body}
        else:
            _, instance = self.running_container(namespace, name, container)
            if not isinstance(instance, RemoteContainer) or instance.id is None:
                return None
            request = {"containerId": instance.id, **body}
        try:
            answer = await self.runtime.call(verb, request)
        except RuntimeCallError as exc:
            raise SessionError(exc.code if exc.code in (400, 404) else 500, exc.message) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SessionError(500, f"the node runtime is not reachable: {exc}") from None
        return self.runtime, str(answer["url"])

    async def resource_metrics(self) -> str:
        """/metrics/resource: the node's and its running containers' usage (control.kubelet.resourcemetrics)."""
        running = [resourcemetrics.Running(str(w.pod["metadata"].get("namespace")), w.pod["metadata"]["name"],
                                           state.container)
                   for w in self.workers.values() if not w.stopping.is_set()
                   for state in w.containers.values() if state.container is not None and state.container.running]
        return await resourcemetrics.collect(running, self.runtime, milli_value(self.config.cpu) / 1000,
                                             quantity_value(self.config.memory))

    def pod_target(self, namespace: str, name: str) -> PodProcessTarget:
        """The namespaces of a pod here whose sandbox is up (port-forward's way in). LogRequestError 404
        `pod does not exist` (the kubelet's words) for one that is not here or has no sandbox."""
        validate_log_request(namespace, name, None)
        for worker in self.workers.values():
            meta = worker.pod["metadata"]
            if meta.get("namespace") == namespace and meta["name"] == name and worker.sandbox is not None \
                    and not worker.stopping.is_set():
                return PodProcessTarget(worker.sandbox.netns)
        raise LogRequestError(404, "pod does not exist")

    def exec_target(self, namespace: str, name: str, container: str | None) -> PodProcessTarget:
        """Where `kubectl exec` runs its command: the pod's namespaces, the container's env and workingDir."""
        worker, instance = self.running_container(namespace, name, container)
        assert worker.sandbox is not None
        state = worker.container_state(instance.name)
        assert state is not None  # running_container found it
        spec = state.spec
        env = {"HOSTNAME": worker.hostname, **state.env}
        uid, gid = run_as(worker.pod.get("spec") or {}, spec)
        return PodProcessTarget(worker.sandbox.netns, env, spec.get("workingDir"),
                                place=namespaces.pod_place_exists(worker.sandbox.netns), uid=uid, gid=gid)
