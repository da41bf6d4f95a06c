"""Garbage collector: background, foreground and orphan propagation by ownerReferences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers_kit import cluster, eventually, run

from control.client import CONFIG_MAPS, PODS, SECRETS, Client, NotFound


def owned(name: str, *owners: dict[str, Any], block: bool = False) -> dict[str, Any]:
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"],
             **({"blockOwnerDeletion": True} if block else {})} for o in owners]
    return {"metadata": {"name": name, "ownerReferences": refs}}


async def exists(client: Client, name: str, resource: Any = CONFIG_MAPS) -> bool:
    try:
        await client.get(resource, name, namespace="default")
        return True
    except NotFound:
        return False


async def missing(client: Client, name: str, resource: Any = CONFIG_MAPS) -> bool:
    return not await exists(client, name, resource)


def test_background_deletes_orphaned_dependents_and_trims_dangling_refs(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "garbagecollector") as (_, admin):
            owner = await admin.create(CONFIG_MAPS, {"metadata": {"name": "owner"}}, namespace="default")
            other = await admin.create(CONFIG_MAPS, {"metadata": {"name": "other"}}, namespace="default")
            await admin.create(CONFIG_MAPS, owned("dep", owner), namespace="default")
            await admin.create(CONFIG_MAPS, owned("shared", owner, other), namespace="default")
            ghost = {"metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}}
            await admin.create(CONFIG_MAPS, owned("dangling", ghost), namespace="default")
            pod = {"metadata": {"name": "p", "ownerReferences": owned("x", owner)["metadata"]["ownerReferences"]},
                   "spec": {"containers": [{"name": "c", "image": "i"}]}}
            await admin.create(PODS, pod, namespace="default")

            await eventually(lambda: missing(admin, "dangling"), what="dependent of a never-existing owner deleted")
            assert await exists(admin, "dep")  # its owner is alive

            await admin.delete(CONFIG_MAPS, "owner", namespace="default")
            await eventually(lambda: missing(admin, "dep"), what="dependent deleted")
            await eventually(lambda: missing(admin, "p", PODS), what="dependent pod deleted")

            async def trimmed() -> bool:
                shared = await admin.get(CONFIG_MAPS, "shared", namespace="default")
                return [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["other"]

            await eventually(trimmed, what="reference to the deleted owner removed, object kept")

            # An owner re-created under the same name is a different owner (uid).
            await admin.create(CONFIG_MAPS, {"metadata": {"name": "owner"}}, namespace="default")
            await admin.create(CONFIG_MAPS, owned("stale", owner), namespace="default")
            await eventually(lambda: missing(admin, "stale"), what="dependent of the old incarnation deleted")

    run(main)


def test_foreground_and_orphan_propagation(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "garbagecollector") as (_, admin):
            fg = await admin.create(CONFIG_MAPS, {"metadata": {"name": "fg"}}, namespace="default")
            await admin.create(CONFIG_MAPS, owned("fg-dep", fg, block=True), namespace="default")
            # A pod on a node terminates gracefully: the owner must wait for it.
            pod = {"metadata": {"name": "fg-pod", "ownerReferences": owned("x", fg, block=True)["metadata"][
                "ownerReferences"]}, "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "i"}]}}
            await admin.create(PODS, pod, namespace="default")

            await admin.delete(CONFIG_MAPS, "fg", namespace="default", propagation_policy="Foreground")
            await eventually(lambda: missing(admin, "fg-dep"), what="foreground dependent deleted")

            async def pod_terminating() -> bool:
                p = await admin.get(PODS, "fg-pod", namespace="default")
                return bool(p["metadata"].get("deletionTimestamp"))

            await eventually(pod_terminating, what="pod being deleted")
            owner = await admin.get(CONFIG_MAPS, "fg", namespace="default")
            assert "foregroundDeletion" in owner["metadata"]["finalizers"]
            await admin.delete(PODS, "fg-pod", namespace="default", grace_period_seconds=0)
            await eventually(lambda: missing(admin, "fg"), what="owner deleted after its dependents")

            orphan_owner = await admin.create(CONFIG_MAPS, {"metadata": {"name": "parent"}}, namespace="default")
            await admin.create(CONFIG_MAPS, owned("child", orphan_owner), namespace="default")
            await admin.delete(CONFIG_MAPS, "parent", namespace="default", propagation_policy="Orphan")
            await eventually(lambda: missing(admin, "parent"), what="orphaning owner deleted")
            child = await admin.get(CONFIG_MAPS, "child", namespace="default")
            assert not child["metadata"].get("ownerReferences")

    run(main)


def test_secrets_are_dependents_too(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "garbagecollector") as (_, admin):
            owner = await admin.create(CONFIG_MAPS, {"metadata": {"name": "owner"}}, namespace="default")
            await admin.create(SECRETS, {**owned("token", owner), "stringData": {"k": "v"}}, namespace="default")
            await admin.delete(CONFIG_MAPS, "owner", namespace="default")
            await eventually(lambda: missing(admin, "token", SECRETS), what="the owned Secret deleted")

    run(main)
