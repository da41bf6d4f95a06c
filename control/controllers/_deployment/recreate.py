"""The Recreate strategy (pkg/controller/deployment/recreate.go): scale the old ReplicaSets to zero, wait
until their pods are gone, then scale the new one up."""

from __future__ import annotations

from control.api.meta import uid_of
from control.client import PODS
from control.controllers._base import OWNER_INDEX
from control.controllers._deployment.progress import DeploymentProgress
from control.controllers._deployment.util import active, deployment_complete, replicas, status_int
from control.controllers._util import JsonObject


class DeploymentRecreate(DeploymentProgress):
    """rolloutRecreate."""

    async def rollout_recreate(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        new_rs, old = await self.get_all(d, rs_list, create=False)
        all_rss = [*old, *([new_rs] if new_rs else [])]
        scaled = False
        for rs in active(list(old)):
            scaled = await self.scale_rs(rs, 0, d) or scaled
        if scaled or self._old_pods_running(new_rs, old):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old = await self.get_all(d, rs_list, create=True)
            assert new_rs is not None
            all_rss = [*old, new_rs]
        await self.scale_rs(new_rs, replicas(d), d)
        if deployment_complete(d, d.get("status") or {}):
            await self.cleanup(d, old)
        await self.sync_rollout_status(all_rss, new_rs, d)

    def _old_pods_running(self, new_rs: JsonObject | None, old: list[JsonObject]) -> bool:
        if sum(status_int(rs, "replicas") for rs in old) > 0:
            return True
        pods = self.informer(PODS).store
        for rs in old:
            for pod in pods.by_index(OWNER_INDEX, uid_of(rs)):
                if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False
