"""Endpoints (legacy core/v1): the same pods as the EndpointSlices, as one object named like the Service
(pkg/controller/endpoint). Ready pods go to `addresses`, the others to `notReadyAddresses`
(publishNotReadyAddresses puts all in `addresses`); terminating pods are left out unless
publishNotReadyAddresses; addresses with the same ports share a subset (RepackSubsets).
The `kubernetes` Service's Endpoints belong to the apiserver and are never touched.
"""

from __future__ import annotations

from typing import Any, ClassVar

from control.api.meta import labels_of, meta, name_of, namespace_of
from control.client import ENDPOINTS, PODS, SERVICES, AlreadyExists, Forbidden, NotFound, Resource
from control.controllers._base import Context
from control.controllers._endpointslice import (
    TRIGGER_TIME,
    ServicePodsController,
    TriggerTimeTracker,
    ipv4_of,
    pod_ports,
    ports_key,
    should_include,
    should_set_hostname,
)
from control.controllers._util import (
    JsonObject,
    deepcopy,
    is_pod_ready,
    key_of,
    rfc3339,
    split_key,
)


class EndpointsController(ServicePodsController):
    name: ClassVar[str] = "endpoint"
    resources: ClassVar[tuple[Resource, ...]] = (SERVICES, PODS, ENDPOINTS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.tracker = TriggerTimeTracker()

    def register(self) -> None:
        super().register()
        # Someone else changing or deleting our Endpoints: put them back.
        self.informer(ENDPOINTS).add_handler(on_update=lambda o, n: self.enqueue(n), on_delete=self.enqueue)

    def resync_keys(self) -> list[str]:
        # Also Endpoints whose Service went away while we were not running (checkLeftoverEndpoints).
        keys = set(super().resync_keys())
        keys.update(key_of(ep) for ep in self.informer(ENDPOINTS).store.list())
        return sorted(keys)

    def subsets(self, svc: JsonObject, pods: list[JsonObject]) -> list[JsonObject]:
        publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        groups: dict[tuple[Any, ...], JsonObject] = {}
        for pod in pods:
            if not should_include(pod, include_terminating=publish):
                continue
            ip = ipv4_of(pod)
            if ip is None:
                continue
            address: JsonObject = {"ip": ip}
            if should_set_hostname(pod, svc):
                address["hostname"] = (pod.get("spec") or {})["hostname"]
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                address["nodeName"] = node
            address["targetRef"] = {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod),
                                    "uid": meta(pod).get("uid")}
            ports = pod_ports(svc, pod)
            if not ports and (svc.get("spec") or {}).get("ports"):
                continue  # no port resolves on this pod: it can't serve the Service
            subset = groups.setdefault(ports_key(ports), {"ports": sorted(ports, key=lambda p: p["name"])})
            field = "addresses" if publish or is_pod_ready(pod) else "notReadyAddresses"
            subset.setdefault(field, []).append(address)
        result: list[JsonObject] = []
        for pkey in sorted(groups):
            subset = groups[pkey]
            for field in ("addresses", "notReadyAddresses"):
                if field in subset:
                    subset[field].sort(key=lambda a: (a["ip"], a["targetRef"]["name"]))
            if not subset["ports"]:
                del subset["ports"]
            result.append({k: subset[k] for k in ("addresses", "notReadyAddresses", "ports") if k in subset})
        return result

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        assert namespace is not None
        if namespace == "default" and name == "kubernetes":
            return
        svc = self.informer(SERVICES).store.get(name, namespace)
        if svc is None:
            self.tracker.forget(key)
            try:
                await self.client.delete(ENDPOINTS, name, namespace=namespace)
                self.log.info("Service %s is gone: deleted its Endpoints", key)
            except NotFound:
                pass
            return
        spec = svc.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return  # Endpoints of selector-less Services are the user's
        pods = self.selected_pods(svc)
        trigger = self.tracker.compute(key, svc, pods)
        subsets = self.subsets(svc, pods)
        labels = self.service_labels(svc)
        current = self.informer(ENDPOINTS).store.get(name, namespace)
        if current is not None and (current.get("subsets") or []) == subsets and labels_of(current) == labels:
            return
        body: JsonObject = deepcopy(current) if current is not None else {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace}}
        body["subsets"] = subsets
        body["metadata"]["labels"] = labels
        annotations = dict(body["metadata"].get("annotations") or {})
        if trigger is not None:
            annotations[TRIGGER_TIME] = rfc3339(trigger)
        else:
            annotations.pop(TRIGGER_TIME, None)
        if annotations:
            body["metadata"]["annotations"] = annotations
        else:
            body["metadata"].pop("annotations", None)
        if current is None:
            try:
                await self.client.create(ENDPOINTS, body, namespace=namespace)
            except AlreadyExists:
                self.queue.add_after(key, 0.05)  # the cache hasn't seen it yet: update next time
                return
            except Forbidden as exc:
                if "being terminated" in exc.message:
                    return
                raise
            self.log.info("Service %s: created Endpoints (%d subsets)", key, len(subsets))
        else:
            await self.client.update(ENDPOINTS, body, namespace=namespace)
            self.log.info("Service %s: updated Endpoints (%d subsets)", key, len(subsets))
