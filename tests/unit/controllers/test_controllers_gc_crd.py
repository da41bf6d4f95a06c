"""The garbage collector follows CRDs as they come and go (upstream's GC discovers every resource it can
list, watch and delete): a custom resource owned by a ConfigMap goes with it; a Pod and a ConfigMap owned
by a custom resource go with it, in the background and in the foreground (the CR waits for its blocking
dependents), and stay, unowned, when it is deleted orphaning them; a CRD made after the GC started is
followed too, and when a CRD goes, what its instances owned goes with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers_kit import cluster, eventually, run

from control.client import CONFIG_MAPS, PODS, Client, NotFound, Resource
from tests.crd_examples import GROUP, NAME, crontab, crontab_crd

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CRONTABS = Resource(GROUP, "v1", "crontabs", kind="CronTab")


def ref(owner: dict[str, Any], *, block: bool = False) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], **({"blockOwnerDeletion": True} if block else {})}


def pod(name: str, owner: dict[str, Any], *, block: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": [ref(owner, block=block)]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


async def exists(client: Client, resource: Resource, name: str) -> bool:
    try:
        await client.get(resource, name, namespace="default")
        return True
    except NotFound:
        return False


async def gone(client: Client, resource: Resource, name: str) -> bool:
    return not await exists(client, resource, name)


async def _listed(admin: Client) -> bool:
    try:
        await admin.request("GET", f"/apis/{GROUP}/v1/namespaces/default/crontabs")
        return True
    except NotFound:
        return False


async def make_crontab(admin: Client, name: str, owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = crontab(name)
    if owners:
        body["metadata"]["ownerReferences"] = owners
    made: dict[str, Any] = await admin.create(CRONTABS, body, namespace="default")
    return made


def test_custom_resources_owned_and_owning_are_collected(tmp_path: Path) -> None:
    async def main() -> None:
        # the CRD is made after the GC started: followed as it comes
        async with cluster(tmp_path, "garbagecollector") as (_, admin):
            await admin.request("POST", CRDS, body=crontab_crd())
            await eventually(lambda: _listed(admin), what="crontabs served")

            # a CR owned by a ConfigMap goes with it
            owner = await admin.create(CONFIG_MAPS, {"metadata": {"name": "owner"}}, namespace="default")
            await make_crontab(admin, "owned", [ref({**owner, "apiVersion": "v1", "kind": "ConfigMap"})])
            await admin.delete(CONFIG_MAPS, "owner", namespace="default")
            await eventually(lambda: gone(admin, CRONTABS, "owned"), what="the CronTab owned by a ConfigMap deleted")

            # a Pod and a ConfigMap owned by a CR go with it (background)
            tab = await make_crontab(admin, "parent")
            await admin.create(PODS, pod("child", tab), namespace="default")
            await admin.create(CONFIG_MAPS, {"metadata": {"name": "child", "ownerReferences": [ref(tab)]}},
                               namespace="default")
            await admin.delete(CRONTABS, "parent", namespace="default")
            await eventually(lambda: gone(admin, PODS, "child"), what="the CronTab's Pod deleted")
            await eventually(lambda: gone(admin, CONFIG_MAPS, "child"), what="the CronTab's ConfigMap deleted")

            # foreground: the CR waits, with the foregroundDeletion finalizer, until its blocking Pod is gone
            tab = await make_crontab(admin, "fg")
            await admin.create(PODS, pod("fg-child", tab, block=True), namespace="default")
            await admin.delete(CRONTABS, "fg", namespace="default", propagation_policy="Foreground")
            await eventually(lambda: gone(admin, PODS, "fg-child"), what="the blocking Pod deleted first")
            await eventually(lambda: gone(admin, CRONTABS, "fg"), what="the CronTab deleted after its Pod")

            # orphan: the CR goes, its Pod stays without the reference
            tab = await make_crontab(admin, "leaving")
            await admin.create(PODS, pod("left", tab), namespace="default")
            await admin.delete(CRONTABS, "leaving", namespace="default", propagation_policy="Orphan")
            await eventually(lambda: gone(admin, CRONTABS, "leaving"), what="the CronTab deleted, orphaning")
            left = await admin.get(PODS, "left", namespace="default")
            assert not left["metadata"].get("ownerReferences")

            # a CR owned by a CR of the same kind: dependents of custom resources are custom resources too
            top = await make_crontab(admin, "top")
            await make_crontab(admin, "below", [ref(top)])
            await admin.delete(CRONTABS, "top", namespace="default")
            await eventually(lambda: gone(admin, CRONTABS, "below"), what="the CronTab owned by a CronTab deleted")

    run(main)


def test_when_the_crd_goes_what_its_instances_owned_goes(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "garbagecollector") as (_, admin):
            await admin.request("POST", CRDS, body=crontab_crd())
            await eventually(lambda: _listed(admin), what="crontabs served")
            tab = await make_crontab(admin, "doomed")
            await admin.create(PODS, pod("orphan-to-be", tab), namespace="default")
            keeper = await admin.create(CONFIG_MAPS, {"metadata": {"name": "keeper"}}, namespace="default")
            # owned by the CR and by a ConfigMap that stays: kept, its reference to the CR removed
            await admin.create(CONFIG_MAPS, {"metadata": {"name": "shared", "ownerReferences": [
                ref(tab), ref({**keeper, "apiVersion": "v1", "kind": "ConfigMap"})]}}, namespace="default")
            await admin.request("DELETE", f"{CRDS}/{NAME}")  # the apiserver deletes the CronTabs, then the CRD
            await eventually(lambda: gone(admin, PODS, "orphan-to-be"), what="the Pod of a CronTab whose CRD went")

            async def trimmed() -> bool:
                shared = await admin.get(CONFIG_MAPS, "shared", namespace="default")
                return [r["kind"] for r in shared["metadata"]["ownerReferences"]] == ["ConfigMap"]

            await eventually(trimmed, what="the reference to the CronTab removed, the ConfigMap kept")
            # and a CRD made again is followed again
            await eventually(lambda: _crd_gone(admin), what="the CRD gone")
            await admin.request("POST", CRDS, body=crontab_crd())
            await eventually(lambda: _listed(admin), what="crontabs served again")
            again = await make_crontab(admin, "again")
            await admin.create(PODS, pod("again-child", again), namespace="default")
            await admin.delete(CRONTABS, "again", namespace="default")
            await eventually(lambda: gone(admin, PODS, "again-child"), what="collected under the CRD made again")

    run(main, timeout=60)


async def _crd_gone(admin: Client) -> bool:
    try:
        await admin.request("GET", f"{CRDS}/{NAME}")
        return False
    except NotFound:
        return True


def test_a_cluster_scoped_custom_resource_owns_namespaced_objects(tmp_path: Path) -> None:
    cluster_tabs = Resource(GROUP, "v1", "crontabs", namespaced=False, kind="CronTab")

    async def main() -> None:
        async with cluster(tmp_path, "garbagecollector") as (_, admin):
            await admin.request("POST", CRDS, body=crontab_crd(scope="Cluster"))

            async def listed() -> bool:
                try:
                    await admin.request("GET", f"/apis/{GROUP}/v1/crontabs")
                    return True
                except NotFound:
                    return False

            await eventually(listed, what="cluster-scoped crontabs served")
            tab = await admin.create(cluster_tabs, crontab("global", namespace=None))
            await admin.create(CONFIG_MAPS, {"metadata": {"name": "of-global", "ownerReferences": [ref(tab)]}},
                               namespace="default")
            await admin.delete(cluster_tabs, "global")
            await eventually(lambda: gone(admin, CONFIG_MAPS, "of-global"),
                             what="the ConfigMap of a cluster-scoped CronTab deleted")

    run(main)
