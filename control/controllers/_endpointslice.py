"""EndpointSlice: the pods behind each Service with a selector, in slices of at most 100 endpoints
(pkg/controller/endpointslice and staging/src/k8s.io/endpointslice).

Endpoints are the selected pods that have an address and are not terminal. Conditions as upstream since
1.22: serving = Ready (or publishNotReadyAddresses), terminating = deletionTimestamp set, ready = serving and
not terminating (or publishNotReadyAddresses). Ports come from the Service's targetPort, by number or by
the pods' named container ports; pods that resolve to different ports go to different slices. A Service
without endpoints keeps one empty "placeholder" slice, as upstream.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from control.api.meta import labels_of, meta, name_of, namespace_of
from control.client import (
    ENDPOINT_SLICES,
    NODES,
    PODS,
    SERVICE_NAME_LABEL,
    SERVICES,
    Conflict,
    Forbidden,
    NotFound,
    Resource,
)
from control.controllers._base import NAMESPACE_INDEX, NODE_INDEX, SERVICE_INDEX, Context, Controller
from control.controllers._util import (
    ZONE_LABEL,
    JsonObject,
    deepcopy,
    is_deleting,
    is_pod_ready,
    is_pod_terminal,
    key_of,
    make_controller_ref,
    map_selector_matches,
    parse_time,
    pod_condition,
    pod_ips,
    rfc3339,
    split_key,
)

MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
MAX_ENDPOINTS_PER_SLICE = 100
_RESERVED_LABELS = {SERVICE_NAME_LABEL, MANAGED_BY, HEADLESS_LABEL}


# --- shared with the Endpoints controller -----------------------------------------------------------

def service_selects(svc: JsonObject, pod: JsonObject) -> bool:
    return map_selector_matches((svc.get("spec") or {}).get("selector"), labels_of(pod))


def should_include(pod: JsonObject, include_terminating: bool) -> bool:
    """endpointutil.ShouldPodBeInEndpoints."""
    if is_pod_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not is_deleting(pod)


def ipv4_of(pod: JsonObject) -> str | None:
    return next((ip for ip in pod_ips(pod) if ":" not in ip), None)


def find_port(pod: JsonObject, svc_port: JsonObject) -> int | None:
    """podutil.FindPort: a numeric targetPort as is; a name looked up among the pod's container ports
    of the same protocol. None when the pod has no such named port."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    protocol = svc_port.get("protocol") or "TCP"
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if target is None or target == "":
        port = svc_port.get("port")
        return int(port) if isinstance(port, int) else None
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                value = port.get("containerPort")
                return int(value) if isinstance(value, int) else None
    return None


def pod_ports(svc: JsonObject, pod: JsonObject) -> list[JsonObject]:
    ports: list[JsonObject] = []
    for svc_port in (svc.get("spec") or {}).get("ports") or []:
        number = find_port(pod, svc_port)
        if number is None:
            continue
        port: JsonObject = {"name": svc_port.get("name") or "", "port": number,
                            "protocol": svc_port.get("protocol") or "TCP"}
        if svc_port.get("appProtocol"):
            port["appProtocol"] = svc_port["appProtocol"]
        ports.append(port)
    return ports


def ports_key(ports: list[JsonObject]) -> tuple[tuple[str, int, str, str], ...]:
    return tuple(sorted((str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"),
                         str(p.get("appProtocol") or "")) for p in ports))


def should_set_hostname(pod: JsonObject, svc: JsonObject) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == name_of(svc) and \
        namespace_of(svc) == namespace_of(pod)


def is_headless(svc: JsonObject) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def pod_trigger_time(pod: JsonObject) -> float | None:
    # The Ready condition's last transition is when the pod's endpoint last changed (upstream's getPodTriggerTime).
    return parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))


class TriggerTimeTracker:
    """endpointutil.TriggerTimeTracker: for the last-change-trigger-time annotation, the earliest trigger
    time (pod Ready transition, Service creation) among the inputs that changed since the last sync — so
    the annotation measures the full latency from the first unprocessed change to the API write."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[dict[str, float], float]] = {}

    def compute(self, key: str, svc: JsonObject, pods: list[JsonObject]) -> float | None:
        last_pods, last_svc = self._state.get(key, ({}, float("-inf")))
        earliest: float | None = None
        times: dict[str, float] = {}
        for pod in pods:
            t = pod_trigger_time(pod)
            if t is None:
                continue
            times[name_of(pod)] = t
            if t > last_pods.get(name_of(pod), float("-inf")):
                earliest = t if earliest is None else min(earliest, t)
        svc_time = parse_time(meta(svc).get("creationTimestamp")) or float("-inf")
        if svc_time > last_svc:
            earliest = svc_time if earliest is None else min(earliest, svc_time)
        self._state[key] = (times, svc_time)
        return earliest

    def forget(self, key: str) -> None:
        self._state.pop(key, None)


class ServicePodsController(Controller):
    """The handler wiring both endpoint controllers share: a pod change enqueues the Services that
    select it (before or after the change)."""

    primary: ClassVar[Resource | None] = SERVICES

    def register(self) -> None:
        self.informer(SERVICES).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                            on_delete=self.enqueue)
        self.informer(PODS).add_handler(on_add=self._pod_changed, on_update=self._pod_updated,
                                        on_delete=self._pod_changed)

    def _services_for(self, pod: JsonObject) -> list[JsonObject]:
        return [s for s in self.informer(SERVICES).store.by_index(NAMESPACE_INDEX, namespace_of(pod))
                if service_selects(s, pod)]

    def _pod_changed(self, pod: JsonObject) -> None:
        for svc in self._services_for(pod):
            self.enqueue(svc)

    def _pod_updated(self, old: JsonObject, new: JsonObject) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        keys = {key_of(s) for s in self._services_for(new)}
        if labels_of(old) != labels_of(new):
            keys |= {key_of(s) for s in self._services_for(old)}
        for key in keys:
            self.queue.add(key)

    def selected_pods(self, svc: JsonObject) -> list[JsonObject]:
        return [p for p in self.informer(PODS).store.by_index(NAMESPACE_INDEX, namespace_of(svc))
                if service_selects(svc, p)]

    def service_labels(self, svc: JsonObject) -> dict[str, str]:
        labels = {k: v for k, v in labels_of(svc).items() if k not in _RESERVED_LABELS}
        if is_headless(svc):
            labels[HEADLESS_LABEL] = ""
        return labels


class EndpointSliceController(ServicePodsController):
    name: ClassVar[str] = "endpointslice"
    resources: ClassVar[tuple[Resource, ...]] = (SERVICES, PODS, ENDPOINT_SLICES, NODES)

    #: How long we distrust the slice cache after our own writes (upstream's EndpointSliceTracker).
    STALE_WINDOW = 5.0

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.tracker = TriggerTimeTracker()
        # service key -> (when, {slice name: resourceVersion we wrote, or None for deleted})
        self._written: dict[str, tuple[float, dict[str, str | None]]] = {}

    def register(self) -> None:
        super().register()
        self.informer(ENDPOINT_SLICES).add_handler(on_add=self._slice_changed,
                                                   on_update=lambda o, n: self._slice_changed(n),
                                                   on_delete=self._slice_changed)
        self.informer(NODES).add_handler(on_update=self._node_updated)

    def resync_keys(self) -> list[str]:
        # Services, and those that only our slices remember (deleted while we were not running).
        keys = set(super().resync_keys())
        keys.update(self.informer(ENDPOINT_SLICES).store.index_values(SERVICE_INDEX))
        return sorted(keys)

    def _slice_changed(self, slice_: JsonObject) -> None:
        labels = labels_of(slice_)
        if labels.get(MANAGED_BY) == CONTROLLER_NAME and labels.get(SERVICE_NAME_LABEL):
            self.queue.add(f"{namespace_of(slice_)}/{labels[SERVICE_NAME_LABEL]}")

    def _node_updated(self, old: JsonObject, new: JsonObject) -> None:
        if labels_of(old).get(ZONE_LABEL) == labels_of(new).get(ZONE_LABEL):
            return
        for pod in self.informer(PODS).store.by_index(NODE_INDEX, name_of(new)):
            self._pod_changed(pod)

    # --- desired state ---------------------------------------------------------------------------

    def endpoint_for(self, svc: JsonObject, pod: JsonObject, address: str) -> JsonObject:
        publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        serving = publish or is_pod_ready(pod)
        terminating = is_deleting(pod)
        ready = publish or (serving and not terminating)
        endpoint: JsonObject = {"addresses": [address],
                                "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
        if should_set_hostname(pod, svc):
            endpoint["hostname"] = (pod.get("spec") or {})["hostname"]
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            endpoint["nodeName"] = node_name
            node = self.informer(NODES).store.get(str(node_name))
            zone = labels_of(node).get(ZONE_LABEL) if node is not None else None
            if zone:
                endpoint["zone"] = zone
                if (svc.get("spec") or {}).get("trafficDistribution") == "PreferClose":
                    # Upstream's PreferClose heuristic: each endpoint hinted for its own zone; kube-proxy
                    # then sends a zone's traffic to that zone's endpoints when it has any.
                    endpoint["hints"] = {"forZones": [{"name": zone}]}
        endpoint["targetRef"] = {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod),
                                 "uid": meta(pod).get("uid")}
        return endpoint

    def desired_groups(self, svc: JsonObject, pods: list[JsonObject]
                       ) -> dict[tuple[Any, ...], tuple[list[JsonObject], list[JsonObject]]]:
        groups: dict[tuple[Any, ...], tuple[list[JsonObject], list[JsonObject]]] = {}
        for pod in pods:
            # Terminating pods stay (serving/terminating) so that connections drain (upstream since 1.22).
            if not should_include(pod, include_terminating=True):
                continue
            address = ipv4_of(pod)
            if address is None:
                continue
            ports = pod_ports(svc, pod)
            group = groups.setdefault(ports_key(ports), (ports, []))
            group[1].append(self.endpoint_for(svc, pod, address))
        for _, endpoints in groups.values():
            endpoints.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["name"]))
        return groups

    # --- sync ------------------------------------------------------------------------------------

    def _stale(self, key: str, namespace: str) -> bool:
        written = self._written.get(key)
        if written is None:
            return False
        when, names = written
        if time.monotonic() - when > self.STALE_WINDOW:
            self._written.pop(key, None)
            return False
        store = self.informer(ENDPOINT_SLICES).store
        for name, rv in names.items():
            cached = store.get(name, namespace)
            if rv is None:
                if cached is not None:
                    return True
            elif cached is None or _rv_older(str(meta(cached).get("resourceVersion") or ""), rv):
                return True
        self._written.pop(key, None)
        return False

    def _our_slices(self, key: str) -> list[JsonObject]:
        return [s for s in self.informer(ENDPOINT_SLICES).store.by_index(SERVICE_INDEX, key)
                if labels_of(s).get(MANAGED_BY) == CONTROLLER_NAME]

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        assert namespace is not None
        if self._stale(key, namespace):
            # Our last writes are not in the cache yet: acting now could duplicate slices.
            self.queue.add_after(key, 0.05)
            return
        svc = self.informer(SERVICES).store.get(name, namespace)
        existing = self._our_slices(key)
        if svc is None:
            self.tracker.forget(key)
            # The ownerReference lets the garbage collector do this too; we don't rely on it running.
            for slice_ in existing:
                await self._delete(key, slice_)
            return
        spec = svc.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return
        pods = self.selected_pods(svc)
        trigger = self.tracker.compute(key, svc, pods)
        groups = self.desired_groups(svc, pods)
        if not groups:
            groups = {(): ([], [])}  # the placeholder slice
        chunks: list[tuple[tuple[Any, ...], list[JsonObject], list[JsonObject]]] = []
        for pkey in sorted(groups):
            ports, endpoints = groups[pkey]
            for start in range(0, max(len(endpoints), 1), MAX_ENDPOINTS_PER_SLICE):
                chunks.append((pkey, ports, endpoints[start:start + MAX_ENDPOINTS_PER_SLICE]))
        by_ports: dict[tuple[Any, ...], list[JsonObject]] = {}
        for slice_ in sorted(existing, key=name_of):
            if slice_.get("addressType") == "IPv4":
                by_ports.setdefault(ports_key(slice_.get("ports") or []), []).append(slice_)
        plan: list[tuple[tuple[Any, ...], list[JsonObject], list[JsonObject], JsonObject | None]] = []
        for pkey, ports, endpoints in chunks:
            candidates = by_ports.get(pkey) or []
            plan.append((pkey, ports, endpoints, candidates.pop(0) if candidates else None))
        leftovers = [s for s in existing if all(s is not p[3] for p in plan)]
        for i, (pkey, ports, endpoints, current) in enumerate(plan):
            if current is None and leftovers:
                plan[i] = (pkey, ports, endpoints, leftovers.pop(0))
        labels = {**self.service_labels(svc), SERVICE_NAME_LABEL: name, MANAGED_BY: CONTROLLER_NAME}
        owner = [make_controller_ref(svc, "v1", "Service")]
        writes: dict[str, str | None] = {}
        for _, ports, endpoints, current in plan:
            if current is None:
                body: JsonObject = {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": f"{name}-", "namespace": namespace, "labels": labels,
                                 "ownerReferences": owner},
                    "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
                }
                if trigger is not None:
                    body["metadata"]["annotations"] = {TRIGGER_TIME: rfc3339(trigger)}
                try:
                    created = await self.client.create(ENDPOINT_SLICES, body, namespace=namespace)
                except Forbidden as exc:
                    if "being terminated" in exc.message:
                        return
                    raise
                writes[name_of(created)] = str(meta(created).get("resourceVersion") or "")
                self.log.info("Service %s: created EndpointSlice %s with %d endpoints", key, name_of(created),
                              len(endpoints))
                continue
            if (current.get("endpoints") or []) == endpoints and (current.get("ports") or []) == ports \
                    and labels_of(current) == labels and meta(current).get("ownerReferences") == owner:
                continue
            body = deepcopy(current)
            body["endpoints"], body["ports"] = endpoints, ports
            body["metadata"]["labels"] = labels
            body["metadata"]["ownerReferences"] = owner
            annotations = dict(meta(current).get("annotations") or {})
            if trigger is not None:
                annotations[TRIGGER_TIME] = rfc3339(trigger)
            else:
                annotations.pop(TRIGGER_TIME, None)
            if annotations:
                body["metadata"]["annotations"] = annotations
            else:
                body["metadata"].pop("annotations", None)
            try:
                updated = await self.client.update(ENDPOINT_SLICES, body, namespace=namespace)
            except NotFound:
                self.queue.add(key)
                continue
            writes[name_of(updated)] = str(meta(updated).get("resourceVersion") or "")
            self.log.info("Service %s: updated EndpointSlice %s (%d endpoints)", key, name_of(updated),
                          len(endpoints))
        for slice_ in leftovers:
            await self._delete(key, slice_)
            writes[name_of(slice_)] = None
        if writes:
            self._written[key] = (time.monotonic(), writes)

    async def _delete(self, key: str, slice_: JsonObject) -> None:
        try:
            await self.client.delete(ENDPOINT_SLICES, name_of(slice_), namespace=namespace_of(slice_),
                                     preconditions={"uid": str(meta(slice_).get("uid") or "")})
        except (NotFound, Conflict):
            return
        self.log.info("Service %s: deleted EndpointSlice %s", key, name_of(slice_))


def _rv_older(have: str, want: str) -> bool:
    try:
        return int(have) < int(want)
    except ValueError:
        return have != want
