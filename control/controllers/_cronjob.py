"""CronJobs (batch/v1): a Job at every time the schedule names (pkg/controller/cronjob, its v2 controller).

One sync of a CronJob, at the controller's clock (Context.now, which tests replace):

    status.active      the Jobs it started that still run (finished or vanished ones are dropped, and
                       lastSuccessfulTime follows the newest Complete one)
    history            finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit, oldest
                       first, are deleted (in the background, so their pods go too)
    suspend            nothing is started
    schedule           the most recent firing since lastScheduleTime (or creation) that has not run; with
                       startingDeadlineSeconds, only one within that many seconds of now counts
    concurrencyPolicy  Allow starts it beside running Jobs; Forbid skips it while one runs; Replace deletes
                       the running ones first

The Job is <cronjob>-<scheduled time in minutes since the epoch> (so a restart never starts one twice),
annotated batch.kubernetes.io/cronjob-scheduled-timestamp, controlled by the CronJob; the CronJob is
synced again just after its next firing.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from control.api.cron import MAX_MISSED, CronError, next_time, unmet_times
from control.api.meta import meta, name_of, namespace_of, uid_of
from control.client import CRON_JOBS, JOBS, AlreadyExists, ApiError, Conflict, NotFound, Resource
from control.controllers._base import OWNER_INDEX, Context, Controller
from control.controllers._job import condition_of, is_finished
from control.controllers._util import (
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    key_of,
    make_controller_ref,
    parse_time,
    rfc3339,
    split_key,
)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# A little past the firing, so the sync sees it as due whatever the clocks' rounding.
NEXT_SYNC_SLACK = 0.1


class CronJobController(Controller):
    name: ClassVar[str] = "cronjob"
    component: ClassVar[str] = "cronjob-controller"
    kind: ClassVar[str] = "CronJob"
    api_version: ClassVar[str] = "batch/v1"
    primary: ClassVar[Resource | None] = CRON_JOBS
    resources: ClassVar[tuple[Resource, ...]] = (CRON_JOBS, JOBS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # The resourceVersion of each CronJob's last status write: acting on an older copy (the informer
        # lags) would start the same firing twice, its status not yet saying it ran.
        self._written: dict[str, int] = {}

    def _behind(self, key: str, cached: JsonObject) -> bool:
        written = self._written.get(key)
        try:
            return written is not None and int(str(meta(cached).get("resourceVersion"))) < written
        except ValueError:
            return False

    def register(self) -> None:
        self.informer(CRON_JOBS).add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                             on_delete=self._cron_job_deleted)
        self.informer(JOBS).add_handler(on_add=self._job_event, on_update=lambda old, new: self._job_event(new),
                                        on_delete=self._job_event)

    def _cron_job_deleted(self, cron_job: JsonObject) -> None:
        self._written.pop(key_of(cron_job), None)

    def _job_event(self, job: JsonObject) -> None:
        ref = controller_ref(job)
        if ref is None or ref.get("kind") != self.kind:
            return
        cron_job = self.informer(CRON_JOBS).store.get(str(ref.get("name")), namespace_of(job))
        if cron_job is not None and uid_of(cron_job) == ref.get("uid"):
            self.enqueue(cron_job)

    def _jobs(self, cron_job: JsonObject) -> list[JsonObject]:
        return [j for j in self.informer(JOBS).store.by_index(OWNER_INDEX, uid_of(cron_job))
                if (controller_ref(j) or {}).get("uid") == uid_of(cron_job)]

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.informer(CRON_JOBS).store.get(name, namespace)
        if cached is None or is_deleting(cached):
            return
        if self._behind(key, cached):
            return  # our own status write has not reached the cache: its update event syncs us again
        cron_job = deepcopy(cached)
        spec = cron_job.get("spec") or {}
        now = self.ctx.now()
        jobs = self._jobs(cron_job)
        status = deepcopy(cron_job.get("status") or {})
        self._track_active(cron_job, status, jobs)
        await self._clean_up_history(cron_job, jobs)
        if spec.get("suspend") is True:
            await self._write_status(cron_job, status)
            return
        schedule, time_zone = str(spec.get("schedule") or ""), spec.get("timeZone")
        since = parse_time(status.get("lastScheduleTime")) or parse_time(meta(cron_job).get("creationTimestamp"))
        deadline = spec.get("startingDeadlineSeconds")
        earliest = since if since is not None else now
        if deadline is not None:
            earliest = max(earliest, now - float(deadline))
        try:
            scheduled, missed = unmet_times(schedule, time_zone, earliest, now)
            upcoming = next_time(schedule, time_zone, now)
        except CronError as exc:  # validation refuses these; an old object may still hold one
            self.event(cron_job, "InvalidSchedule", f"invalid schedule: {schedule}: {exc}", warning=True)
            return
        self.queue.add_after(key, max(0.0, upcoming - now) + NEXT_SYNC_SLACK)
        if scheduled is None:
            await self._write_status(cron_job, status)
            return
        if missed > MAX_MISSED:
            self.event(cron_job, "TooManyMissedTimes", f"too many missed start times: {missed}. Set or decrease "
                       ".spec.startingDeadlineSeconds or check clock skew", warning=True)
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and status.get("active"):
            self.log.info("CronJob %s: not starting the %s run, one is still running (Forbid)", key,
                          rfc3339(scheduled))
            await self._write_status(cron_job, status)
            return
        if policy == "Replace":
            for ref in list(status.get("active") or []):
                await self._delete_job(cron_job, str(ref.get("name")), str(ref.get("uid") or ""))
                self.event(cron_job, "SuccessfulDelete", f"Deleted job {ref.get('name')}")
            status.pop("active", None)
        job = await self._start(cron_job, scheduled)
        if job is not None:
            refs = [r for r in status.get("active") or [] if r.get("uid") != uid_of(job)]
            refs.append(_reference(job))
            status["active"] = refs
        status["lastScheduleTime"] = rfc3339(scheduled)
        await self._write_status(cron_job, status)

    def job_from_template(self, cron_job: JsonObject, scheduled: float) -> JsonObject:
        """getJobFromTemplate2: the template's metadata and spec, named for the scheduled minute."""
        template = (cron_job.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP] = rfc3339(scheduled)
        job_meta: JsonObject = {"name": f"{name_of(cron_job)}-{int(scheduled // 60)}",
                                "namespace": namespace_of(cron_job), "annotations": annotations,
                                "ownerReferences": [make_controller_ref(cron_job, self.api_version, self.kind)]}
        if tmeta.get("labels"):
            job_meta["labels"] = dict(tmeta["labels"])
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
                "spec": deepcopy(template.get("spec") or {})}

    async def _start(self, cron_job: JsonObject, scheduled: float) -> JsonObject | None:
        body = self.job_from_template(cron_job, scheduled)
        try:
            job = await self.client.create(JOBS, body, namespace=namespace_of(cron_job))
        except AlreadyExists:
            # Started before (our status write was lost, or we restarted): ours only if we control it.
            try:
                job = await self.client.get(JOBS, name_of(body), namespace=namespace_of(cron_job))
            except NotFound:
                return None
            if (controller_ref(job) or {}).get("uid") != uid_of(cron_job) or is_finished(job):
                return None
            return job
        except ApiError as exc:
            self.event(cron_job, "FailedCreate", f"Error creating job: {exc.message}", warning=True)
            raise
        self.event(cron_job, "SuccessfulCreate", f"Created job {name_of(job)}")
        return job

    def _track_active(self, cron_job: JsonObject, status: JsonObject, jobs: list[JsonObject]) -> None:
        by_uid = {uid_of(j): j for j in jobs}
        active = []
        for ref in status.get("active") or []:
            job = by_uid.get(str(ref.get("uid") or ""))
            if job is None:
                # Not in the cache: gone (deleted by someone), or made a moment ago and not seen yet.
                if self._recent(ref, status) and ref.get("name") not in {name_of(j) for j in jobs}:
                    active.append(ref)
                continue
            if is_finished(job):
                self.event(cron_job, "SawCompletedJob", f"Saw completed job: {name_of(job)}, status: "
                           f"{'Complete' if condition_of(job, 'Complete') else 'Failed'}")
                continue
            active.append(ref)
        # A Job we started (it carries the scheduled time) that is still running is active even if the
        # status we wrote has not reached the cache yet: without this, Forbid could start a second one.
        # Jobs made by hand (kubectl create job --from) carry no such annotation and are not counted.
        listed = {str(r.get("uid")) for r in active}
        for job in sorted(jobs, key=name_of):
            if (uid_of(job) not in listed and not is_finished(job) and not is_deleting(job)
                    and SCHEDULED_TIMESTAMP in (meta(job).get("annotations") or {})):
                active.append(_reference(job))
        if active:
            status["active"] = active
        else:
            status.pop("active", None)
        finished = [parse_time((j.get("status") or {}).get("completionTime")) for j in jobs
                    if condition_of(j, "Complete") is not None]
        latest = max((t for t in finished if t is not None), default=None)
        known = parse_time(status.get("lastSuccessfulTime"))
        if latest is not None and (known is None or latest > known):
            status["lastSuccessfulTime"] = rfc3339(latest)

    @staticmethod
    def _recent(ref: JsonObject, status: JsonObject) -> bool:
        # The Job we started in the last sync may not have reached the informer yet: keep it one more round
        # (the Job's own add event syncs us again); any other missing Job is dropped.
        return bool(ref.get("name")) and str(ref.get("name")).endswith(
            f"-{int((parse_time(status.get('lastScheduleTime')) or 0) // 60)}")

    async def _clean_up_history(self, cron_job: JsonObject, jobs: list[JsonObject]) -> None:
        spec = cron_job.get("spec") or {}
        for state, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(field)
            if limit is None:
                continue
            done = [j for j in jobs if condition_of(j, state) is not None and not is_deleting(j)]
            done.sort(key=lambda j: (parse_time((j.get("status") or {}).get("startTime"))
                                     or parse_time(meta(j).get("creationTimestamp")) or 0.0, name_of(j)))
            for job in done[:max(0, len(done) - int(limit))]:
                await self._delete_job(cron_job, name_of(job), uid_of(job))
                self.event(cron_job, "SuccessfulDelete", f"Deleted job {name_of(job)}")

    async def _delete_job(self, cron_job: JsonObject, name: str, uid: str) -> None:
        try:
            await self.client.delete(JOBS, name, namespace=namespace_of(cron_job), propagation_policy="Background",
                                     preconditions={"uid": uid} if uid else None)
        except (NotFound, Conflict):
            return

    async def _write_status(self, cron_job: JsonObject, status: JsonObject) -> None:
        if status == (cron_job.get("status") or {}):
            return
        body = deepcopy(cron_job)
        body["status"] = status
        try:
            written = await self.client.update_status(CRON_JOBS, body, namespace=namespace_of(cron_job))
        except NotFound:
            self._written.pop(key_of(cron_job), None)
            return
        except Conflict:
            self.queue.add_rate_limited(key_of(cron_job))
            return
        with contextlib.suppress(ValueError):  # an opaque resourceVersion: no guard, as before
            self._written[key_of(cron_job)] = int(str(meta(written).get("resourceVersion")))


def _reference(job: JsonObject) -> JsonObject:
    return {"kind": "Job", "namespace": namespace_of(job), "name": name_of(job), "uid": uid_of(job),
            "apiVersion": "batch/v1", "resourceVersion": meta(job).get("resourceVersion")}


__all__ = ["SCHEDULED_TIMESTAMP", "CronJobController"]
