"""The Progressing condition of a rollout and the progress deadline (pkg/controller/deployment/progress.go)."""

from __future__ import annotations

from control.api.meta import name_of
from control.controllers._deployment.sync import DeploymentSync
from control.controllers._deployment.util import (
    NEW_RS_AVAILABLE,
    RS_UPDATED,
    TIMED_OUT,
    condition,
    deployment_complete,
    deployment_progressing,
    get_condition,
    progress_deadline,
    set_condition,
)
from control.controllers._util import JsonObject, key_of, parse_time


class DeploymentProgress(DeploymentSync):
    """syncRolloutStatus: the status of a rollout, with Progressing, requeued until its deadline."""

    async def sync_rollout_status(self, all_rss: list[JsonObject], new_rs: JsonObject | None, d: JsonObject) -> None:
        status = self.calculate_status(all_rss, new_rs, d)
        deadline = progress_deadline(d)
        now = self.ctx.now()
        if deadline is not None:
            current = get_condition(d, "Progressing")
            complete = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                        and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
            if not complete:
                if deployment_complete(d, status):
                    msg = (f'ReplicaSet "{name_of(new_rs)}" has successfully progressed.' if new_rs
                           else "Deployment has successfully progressed.")
                    set_condition(status, condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now))
                elif deployment_progressing(d, status):
                    msg = f'ReplicaSet "{name_of(new_rs)}" is progressing.' if new_rs else "Deployment is progressing."
                    cond = condition("Progressing", "True", RS_UPDATED, msg, now)
                    if current is not None and current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    # Always replaced: lastUpdateTime records the latest progress.
                    status["conditions"] = [c for c in status.get("conditions") or []
                                            if c.get("type") != "Progressing"] + [cond]
                elif current is not None and current.get("status") == "True" and self._timed_out(current, deadline):
                    msg = (f'ReplicaSet "{name_of(new_rs)}" has timed out progressing.' if new_rs
                           else f'Deployment "{name_of(d)}" has timed out progressing.')
                    set_condition(status, condition("Progressing", "False", TIMED_OUT, msg, now))
                else:
                    # Not done and no progress this time: look again by the deadline (requeueStuckDeployment).
                    remaining = self._remaining(current, deadline)
                    if remaining is not None:
                        self.queue.add_after(key_of(d), min(max(remaining, 0.1), self.options.max_requeue))
        if status != (d.get("status") or {}):
            await self._write_status(d, status)

    def _remaining(self, cond: JsonObject | None, deadline: int) -> float | None:
        if cond is None:
            return None
        updated = parse_time(cond.get("lastUpdateTime"))
        return None if updated is None else updated + deadline - self.ctx.now()

    def _timed_out(self, cond: JsonObject, deadline: int) -> bool:
        if cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        remaining = self._remaining(cond, deadline)
        return remaining is not None and remaining < 0
