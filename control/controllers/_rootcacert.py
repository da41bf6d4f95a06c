"""The root CA certificate publisher (pkg/controller/certificates/rootcacertpublisher): every active
Namespace has a ConfigMap kube-root-ca.crt whose ca.crt is the cluster's CA, so that a pod's projected
ServiceAccount volume can carry the certificate to verify the apiserver with."""

from __future__ import annotations

from typing import ClassVar

from control.api.meta import meta, name_of
from control.client import CONFIG_MAPS, NAMESPACES, AlreadyExists, Forbidden, NotFound, Resource
from control.controllers._base import Controller
from control.controllers._util import JsonObject, deepcopy, is_deleting

CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name: ClassVar[str] = "root-ca-cert-publisher"
    primary: ClassVar[Resource | None] = NAMESPACES
    resources: ClassVar[tuple[Resource, ...]] = (NAMESPACES, CONFIG_MAPS)

    def register(self) -> None:
        self.informer(NAMESPACES).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))
        self.informer(CONFIG_MAPS).add_handler(on_update=lambda o, n: self._configmap(n), on_delete=self._configmap)

    def _configmap(self, cm: JsonObject) -> None:
        if name_of(cm) == CONFIGMAP:
            self.queue.add(str(meta(cm).get("namespace") or ""))

    async def sync(self, key: str) -> None:
        ca = self.options.root_ca
        if not ca:
            return  # no --root-ca-file: nothing to publish (upstream's controller does not start)
        ns = self.informer(NAMESPACES).store.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        current = self.informer(CONFIG_MAPS).store.get(CONFIGMAP, key)
        want = {"ca.crt": ca}
        try:
            if current is None:
                await self.client.create(CONFIG_MAPS, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": CONFIGMAP, "annotations": {"kubernetes.io/description": DESCRIPTION}},
                    "data": want}, namespace=key)
                self.log.info("published %s in namespace %s", CONFIGMAP, key)
            elif current.get("data") != want:
                body = deepcopy(current)
                body["data"] = want
                await self.client.update(CONFIG_MAPS, body, namespace=key)
        except (AlreadyExists, NotFound):
            return
        except Forbidden as exc:
            if "being terminated" in exc.message:
                return
            raise
