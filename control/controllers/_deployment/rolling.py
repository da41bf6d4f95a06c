"""The RollingUpdate strategy (pkg/controller/deployment/rolling.go): scale the new ReplicaSet up as far as
maxSurge lets it, and the old ones down as far as maxUnavailable lets them, unhealthy pods first."""

from __future__ import annotations

from control.controllers._deployment.progress import DeploymentProgress
from control.controllers._deployment.util import (
    _creation_key,
    active,
    deployment_complete,
    max_unavailable,
    new_rs_new_replicas,
    replicas,
    status_int,
)
from control.controllers._util import JsonObject


class DeploymentRolling(DeploymentProgress):
    """rolloutRolling and its two reconcilers."""

    async def rollout_rolling(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        new_rs, old = await self.get_all(d, rs_list, create=True)
        assert new_rs is not None
        all_rss = [*old, new_rs]
        if await self.reconcile_new(all_rss, new_rs, d):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if await self.reconcile_old(all_rss, active(list(old)), new_rs, d):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if deployment_complete(d, d.get("status") or {}):
            await self.cleanup(d, old)
        await self.sync_rollout_status(all_rss, new_rs, d)

    async def reconcile_new(self, all_rss: list[JsonObject], new_rs: JsonObject, d: JsonObject) -> bool:
        if replicas(new_rs) == replicas(d):
            return False
        if replicas(new_rs) > replicas(d):
            return await self.scale_rs(new_rs, replicas(d), d)
        return await self.scale_rs(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)

    async def reconcile_old(self, all_rss: list[JsonObject], old: list[JsonObject], new_rs: JsonObject,
                            d: JsonObject) -> bool:
        if sum(replicas(rs) for rs in old) == 0:
            return False
        all_count = sum(replicas(rs) for rs in all_rss)
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new_rs) - status_int(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # First the old pods that are not available anyway (cleanupUnhealthyReplicas) ...
        cleaned = 0
        for rs in sorted(old, key=_creation_key):
            if cleaned >= max_scaled_down:
                break
            if replicas(rs) == 0 or replicas(rs) == status_int(rs, "availableReplicas"):
                continue
            count = min(max_scaled_down - cleaned, replicas(rs) - status_int(rs, "availableReplicas"))
            await self.scale_rs(rs, replicas(rs) - count, d)
            cleaned += count
        # ... then available ones, as far as maxUnavailable allows (scaleDownOldReplicaSetsForRollingUpdate).
        available = sum(status_int(rs, "availableReplicas") for rs in [*old, new_rs])
        scaled = 0
        if available > min_available:
            budget = available - min_available
            for rs in sorted(old, key=_creation_key):
                if scaled >= budget:
                    break
                if replicas(rs) == 0:
                    continue
                count = min(replicas(rs), budget - scaled)
                await self.scale_rs(rs, replicas(rs) - count, d)
                scaled += count
        return cleaned + scaled > 0
