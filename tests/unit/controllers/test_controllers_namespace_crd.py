"""A namespace's custom resources go with it: the namespace controller finds them by discovery, as upstream's."""

from __future__ import annotations

from pathlib import Path

from controllers_kit import cluster, eventually, run

from control.client import NAMESPACES, NotFound
from tests.crd_examples import GROUP, crontab, crontab_crd

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CRONTABS = f"/apis/{GROUP}/v1/namespaces/team/crontabs"


def test_deleting_a_namespace_deletes_its_custom_resources(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "namespace") as (_, admin):
            await admin.request("POST", CRDS, body=crontab_crd())
            await admin.create(NAMESPACES, {"metadata": {"name": "team"}})

            async def created() -> bool:
                try:
                    await admin.request("POST", CRONTABS, body=crontab("tab", "team"))
                except NotFound:  # not served yet
                    return False
                return True

            await eventually(created, what="a CronTab in team")
            await admin.delete(NAMESPACES, "team")

            async def namespace_gone() -> bool:
                try:
                    await admin.get(NAMESPACES, "team")
                except NotFound:
                    return True
                return False

            await eventually(namespace_gone, what="team deleted, its CronTab first")
            listed = await admin.request("GET", f"/apis/{GROUP}/v1/crontabs")
            assert listed["items"] == []

    run(main)
