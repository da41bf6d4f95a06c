"""Namespace deletion and the default ServiceAccount.

Namespace (pkg/controller/namespace/deletion): a Namespace with a deletionTimestamp (phase Terminating)
still carries the `kubernetes` finalizer in spec.finalizers. We delete every namespaced object of every
resource the apiserver serves (found by discovery, as upstream), wait until they are all gone (pods
terminate gracefully through their kubelet; objects with finalizers wait for them), then PUT
namespaces/NAME/finalize without our finalizer, and the apiserver removes the Namespace.

ServiceAccount (pkg/controller/serviceaccount): every active Namespace has a `default` ServiceAccount.
"""

from __future__ import annotations

from typing import ClassVar

from control.api.meta import meta, name_of
from control.client import (
    NAMESPACES,
    SERVICE_ACCOUNTS,
    AlreadyExists,
    ApiError,
    Client,
    Forbidden,
    NotFound,
    Resource,
    resource_path,
)
from control.controllers._base import Controller
from control.controllers._util import (
    JsonObject,
    deepcopy,
    is_deleting,
    rfc3339,
)

FINALIZER = "kubernetes"


async def namespaced_resources(client: Client) -> list[tuple[str, str, str, list[str]]]:
    """(group, version, plural, verbs) of every namespaced top-level resource, by discovery."""
    found: list[tuple[str, str, str, list[str]]] = []
    versions: list[tuple[str, str]] = [("", "v1")]
    groups = await client.request("GET", "/apis")
    for group in groups.get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("version")
        if preferred:
            versions.append((str(group["name"]), str(preferred)))
    for group_name, version in versions:
        path = f"/api/{version}" if not group_name else f"/apis/{group_name}/{version}"
        listing = await client.request("GET", path)
        for res in listing.get("resources") or []:
            name = str(res.get("name") or "")
            if res.get("namespaced") and "/" not in name and "delete" in (res.get("verbs") or []):
                found.append((group_name, version, name, list(res.get("verbs") or [])))
    return found


class NamespaceController(Controller):
    name: ClassVar[str] = "namespace"
    primary: ClassVar[Resource | None] = NAMESPACES
    resources: ClassVar[tuple[Resource, ...]] = (NAMESPACES,)

    def register(self) -> None:
        self.informer(NAMESPACES).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))

    async def sync(self, key: str) -> None:
        ns = self.informer(NAMESPACES).store.get(key)
        if ns is None or not is_deleting(ns) or FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        remaining: dict[str, int] = {}
        for group, version, plural, verbs in await namespaced_resources(self.client):
            path = resource_path(group, version, plural, key)
            try:
                listed = await self.client.request("GET", path)
            except (NotFound, Forbidden):
                continue
            items = listed.get("items") or []
            if not items:
                continue
            live = [i for i in items if not is_deleting(i)]
            if live:
                await self._delete_all(path, plural, live, "deletecollection" in verbs)
            remaining[plural] = len(items)
        if remaining:
            await self._report(ns, remaining)
            # Pods wait for their kubelet (grace period): look again shortly (upstream estimates the wait).
            self.queue.add_after(key, self.options.namespace_recheck)
            return
        body = deepcopy(ns)
        body.setdefault("spec", {})["finalizers"] = [
            f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != FINALIZER]
        try:
            await self.client.update(NAMESPACES, body, subresource="finalize")
        except NotFound:
            return
        self.log.info("namespace %s is empty: finalized", key)

    async def _delete_all(self, path: str, plural: str, items: list[JsonObject], collection: bool) -> None:
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if collection:
            try:
                await self.client.request("DELETE", path, body=options)
                self.log.info("namespace content: deleted %d %s in %s", len(items), plural, path)
                return
            except ApiError as exc:
                self.log.info("deletecollection %s failed (%s); deleting one by one", path, exc)
        for item in items:
            try:
                await self.client.request("DELETE", f"{path}/{name_of(item)}", body=options)
            except NotFound:
                continue
            self.log.info("namespace content: deleted %s %s", plural, name_of(item))

    async def _report(self, ns: JsonObject, remaining: dict[str, int]) -> None:
        # NamespaceContentRemaining, as upstream shows it in `kubectl describe namespace`.
        message = "Some resources are remaining: " + ", ".join(
            f"{plural} has {count} resource instances" for plural, count in sorted(remaining.items()))
        conditions = [c for c in (ns.get("status") or {}).get("conditions") or []
                      if c.get("type") != "NamespaceContentRemaining"]
        old = next((c for c in (ns.get("status") or {}).get("conditions") or []
                    if c.get("type") == "NamespaceContentRemaining"), None)
        if old is not None and old.get("message") == message:
            return
        conditions.append({"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
                           "message": message, "lastTransitionTime": rfc3339(self.ctx.now())})
        body = deepcopy(ns)
        body.setdefault("status", {})["conditions"] = conditions
        try:
            await self.client.update_status(NAMESPACES, body)
        except ApiError as exc:
            self.log.debug("namespace %s: status not updated: %s", meta(ns).get("name"), exc)


class ServiceAccountController(Controller):
    name: ClassVar[str] = "serviceaccount"
    primary: ClassVar[Resource | None] = NAMESPACES
    resources: ClassVar[tuple[Resource, ...]] = (NAMESPACES, SERVICE_ACCOUNTS)

    DEFAULT = "default"

    def register(self) -> None:
        self.informer(NAMESPACES).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))
        self.informer(SERVICE_ACCOUNTS).add_handler(on_delete=self._sa_deleted)

    def _sa_deleted(self, sa: JsonObject) -> None:
        if name_of(sa) == self.DEFAULT:
            self.queue.add(str(meta(sa).get("namespace") or ""))

    async def sync(self, key: str) -> None:
        ns = self.informer(NAMESPACES).store.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.informer(SERVICE_ACCOUNTS).store.get(self.DEFAULT, key) is not None:
            return
        try:
            await self.client.create(SERVICE_ACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                        "metadata": {"name": self.DEFAULT}}, namespace=key)
        except AlreadyExists:
            return
        except Forbidden as exc:
            if "being terminated" in exc.message:
                return
            raise
        self.log.info("created ServiceAccount %s/%s", key, self.DEFAULT)
