"""Jobs (batch/v1): run pods to completion (pkg/controller/job), and delete finished Jobs after
ttlSecondsAfterFinished (pkg/controller/ttlafterfinished, folded in here: it acts on the same objects).

One sync of a Job, from its pods in the informer cache (those whose controllerRef is the Job):

    finished (Complete or Failed)   nothing but the TTL: delete the Job (foreground) once it expires
    failed pods > backoffLimit      Failed, BackoffLimitExceeded; active pods deleted
      (restartPolicy OnFailure: container restarts of active pods count too, as upstream's
      pastBackoffLimitOnFailure)
    active past activeDeadlineSeconds  Failed, DeadlineExceeded; active pods deleted
    enough succeeded                Complete (completions succeeded pods; for Indexed every index
                                    0..completions-1; without completions, one success and none active)
    suspended                       no pods (active ones deleted), condition Suspended; on resume the
                                    deadline counts afresh
    otherwise                       as many active pods as parallelism allows and completions still need,
                                    a new pod after failures only once the back-off (10 s doubling per
                                    failure, at most 6 min) has passed

Indexed pods are named <job>-<index>-<random>, carry the index as the annotation and label
batch.kubernetes.io/job-completion-index, JOB_COMPLETION_INDEX in every container's env, and the
hostname <job>-<index>.

Not built (upstream has them): the job-tracking finalizer and uncountedTerminatedPods, so counts come
from the pods that still exist (a finished pod deleted by hand is no longer counted); podFailurePolicy,
successPolicy, backoffLimitPerIndex, podReplacementPolicy, adopting orphan pods.
"""

from __future__ import annotations

import copy
from typing import ClassVar

from control.api.meta import meta, name_of, namespace_of, uid_of
from control.client import JOBS, PODS, ApiError, Conflict, NotFound, Resource
from control.controllers._base import OWNER_INDEX, Context, Controller, Expectations
from control.controllers._replicaset import (
    BURST_REPLICAS,
    SLOW_START_INITIAL_BATCH,
    pod_deletion_order,
    slow_start_batch,
)
from control.controllers._util import (
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    is_pod_ready,
    key_of,
    make_controller_ref,
    parse_time,
    pod_phase,
    rfc3339,
    selector_matches,
    split_key,
)

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
BACKOFF_MAX = 360.0  # MaxJobPodFailureBackOff


def condition_of(job: JsonObject, kind: str) -> JsonObject | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def is_finished(job: JsonObject) -> bool:
    return condition_of(job, "Complete") is not None or condition_of(job, "Failed") is not None


def pod_index(pod: JsonObject) -> int | None:
    """The completion index a pod of an Indexed Job carries (its annotation), None if none or malformed."""
    raw = (meta(pod).get("annotations") or {}).get(COMPLETION_INDEX)
    try:
        index = int(str(raw))
    except ValueError:
        return None
    return index if index >= 0 and str(index) == str(raw) else None


def format_indexes(indexes: set[int]) -> str:
    """Upstream's completedIndexes: sorted, runs of consecutive indexes as first-last ("0-2,4")."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _finished_at(pod: JsonObject) -> float | None:
    """When a failed pod's last container finished (the back-off runs from there)."""
    times = [parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for s in (pod.get("status") or {}).get("containerStatuses") or []]
    known = [t for t in times if t is not None]
    return max(known) if known else parse_time(meta(pod).get("creationTimestamp"))


def _restarts(pods: list[JsonObject]) -> int:
    return sum(int(s.get("restartCount") or 0) for p in pods for group in ("initContainerStatuses", "containerStatuses")
               for s in (p.get("status") or {}).get(group) or [])


class JobController(Controller):
    name: ClassVar[str] = "job"
    component: ClassVar[str] = "job-controller"
    kind: ClassVar[str] = "Job"
    api_version: ClassVar[str] = "batch/v1"
    primary: ClassVar[Resource | None] = JOBS
    resources: ClassVar[tuple[Resource, ...]] = (JOBS, PODS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.expectations = Expectations(ctx.options.expectations_timeout)
        self.backoff_base = ctx.options.job_backoff_base

    # --- handlers: enqueue only ------------------------------------------------------------------

    def register(self) -> None:
        self.informer(JOBS).add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                        on_delete=self._job_deleted)
        self.informer(PODS).add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                        on_delete=self._pod_deleted)

    def _job_deleted(self, job: JsonObject) -> None:
        self.expectations.forget(key_of(job))

    def _owner(self, pod: JsonObject) -> JsonObject | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return None
        job = self.informer(JOBS).store.get(str(ref.get("name")), namespace_of(pod))
        return job if job is not None and uid_of(job) == ref.get("uid") else None

    def _pod_added(self, pod: JsonObject) -> None:
        job = self._owner(pod)
        if job is not None:
            self.expectations.creation_observed(key_of(job))
            self.enqueue(job)

    def _pod_updated(self, old: JsonObject, new: JsonObject) -> None:
        job = self._owner(new)
        if job is None:
            return
        if is_deleting(new) and not is_deleting(old):
            # A graceful deletion has begun: as good as gone for the expectations (the ReplicaSet's rule).
            self.expectations.deletion_observed(key_of(job), key_of(new))
        self.enqueue(job)

    def _pod_deleted(self, pod: JsonObject) -> None:
        job = self._owner(pod)
        if job is not None:
            self.expectations.deletion_observed(key_of(job), key_of(pod))
            self.enqueue(job)

    # --- sync ------------------------------------------------------------------------------------

    def _pods(self, job: JsonObject) -> list[JsonObject]:
        selector = (job.get("spec") or {}).get("selector")
        return [p for p in self.informer(PODS).store.by_index(OWNER_INDEX, uid_of(job))
                if (controller_ref(p) or {}).get("uid") == uid_of(job) and selector_matches(selector, meta(p).get(
                    "labels") or {})]

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.informer(JOBS).store.get(name, namespace)
        if cached is None:
            self.expectations.forget(key)
            return
        job = deepcopy(cached)
        if is_deleting(job):
            return
        if is_finished(job):
            await self._expire(job)
            return
        spec = job.get("spec") or {}
        pods = self._pods(job)
        active = [p for p in pods if pod_phase(p) not in ("Succeeded", "Failed") and not is_deleting(p)]
        succeeded = [p for p in pods if pod_phase(p) == "Succeeded"]
        failed = [p for p in pods if pod_phase(p) == "Failed"]
        now = self.ctx.now()
        status = deepcopy(job.get("status") or {})
        suspended = spec.get("suspend") is True
        was_suspended = condition_of(job, "Suspended") is not None
        if suspended and not was_suspended:
            self._set_condition(status, "Suspended", "JobSuspended", "Job suspended", now)
            self.event(job, "Suspended", "Job suspended")
        elif was_suspended and not suspended:
            # Resumed: the deadline counts from now (upstream resets startTime).
            self._set_condition(status, "Suspended", "JobResumed", "Job resumed", now, held=False)
            status["startTime"] = rfc3339(now)
            self.event(job, "Resumed", "Job resumed")
        if not status.get("startTime") and not suspended:
            status["startTime"] = rfc3339(now)
        started = parse_time(status.get("startTime"))
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        done_indexes = {i for i in map(pod_index, succeeded) if i is not None and i < (completions or 0)}

        failure: tuple[str, str] | None = None
        backoff_limit = int(spec.get("backoffLimit", 6))
        on_failure = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure"
        restarts = _restarts(active) if on_failure else 0
        if len(failed) > backoff_limit or (on_failure and (restarts > 0 if backoff_limit == 0
                                                           else restarts >= backoff_limit)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        deadline = spec.get("activeDeadlineSeconds")
        if failure is None and deadline is not None and started is not None and not suspended:
            remaining = started + float(deadline) - now
            if remaining <= 0:
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                self.queue.add_after(key, remaining)

        complete = False
        if failure is None:
            if indexed:
                complete = len(done_indexes) >= int(completions or 0)
            elif completions is not None:
                complete = len(succeeded) >= int(completions)
            else:
                complete = bool(succeeded) and not active

        error: Exception | None = None
        if failure is not None or complete:
            await self._delete_pods(job, active)
            active = []
            if failure is not None:
                self._set_condition(status, "Failed", failure[0], failure[1], now)
                self.event(job, failure[0], failure[1], warning=True)
            else:
                self._set_condition(status, "Complete", "CompletionsReached",
                                    "Reached expected number of succeeded pods", now)
                status["completionTime"] = rfc3339(now)
                self.event(job, "Completed", "Job completed")
        elif suspended:
            await self._delete_pods(job, active)  # a suspended Job runs nothing
            active = []
        elif self.expectations.satisfied(key):
            try:
                await self._manage(job, active, succeeded, failed, done_indexes, now)
            except Exception as exc:  # still record status, then retry
                error = exc

        for field in ("active", "succeeded", "failed"):
            status.pop(field, None)  # omitempty: a count that fell to zero is not shown
        status.update(self._counts(active, succeeded, failed, pods))
        if indexed:
            status["completedIndexes"] = format_indexes(done_indexes)
            if not status["completedIndexes"]:
                del status["completedIndexes"]
        await self._write_status(job, status)
        if error is not None:
            raise error
        if is_finished({"status": status}):
            await self._expire({**job, "status": status})

    @staticmethod
    def _counts(active: list[JsonObject], succeeded: list[JsonObject], failed: list[JsonObject],
                pods: list[JsonObject]) -> JsonObject:
        # active, succeeded and failed are omitempty upstream; ready and terminating are pointers, always shown.
        counts: JsonObject = {"ready": sum(1 for p in active if is_pod_ready(p)),
                              "terminating": sum(1 for p in pods if is_deleting(p))}
        for field, group in (("active", active), ("succeeded", succeeded), ("failed", failed)):
            if group:
                counts[field] = len(group)
        return counts

    @staticmethod
    def _set_condition(status: JsonObject, kind: str, reason: str, message: str, now: float, *,
                       held: bool = True) -> None:
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != kind]
        stamp = rfc3339(now)
        conditions.append({"type": kind, "status": "True" if held else "False", "reason": reason, "message": message,
                           "lastProbeTime": stamp, "lastTransitionTime": stamp})
        status["conditions"] = conditions

    # --- pods ------------------------------------------------------------------------------------

    def pod_from_template(self, job: JsonObject, index: int | None) -> JsonObject:
        """The Job's template as a pod it controls; for an Indexed Job, the index's name, annotation,
        label, hostname and JOB_COMPLETION_INDEX (pkg/controller/job/indexed_job_utils.go addCompletionIndex*)."""
        template = (job.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        pod_meta: JsonObject = {"generateName": f"{name_of(job)}-", "namespace": namespace_of(job),
                                "ownerReferences": [make_controller_ref(job, self.api_version, self.kind)]}
        for field in ("labels", "annotations", "finalizers"):
            if tmeta.get(field):
                pod_meta[field] = copy.deepcopy(tmeta[field])
        spec = deepcopy(template.get("spec") or {})
        if index is not None:
            pod_meta["generateName"] = f"{name_of(job)}-{index}-"
            pod_meta.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
            pod_meta.setdefault("labels", {})[COMPLETION_INDEX] = str(index)
            spec.setdefault("hostname", f"{name_of(job)}-{index}")
            for group in ("initContainers", "containers"):
                for container in spec.get(group) or []:
                    env = container.setdefault("env", [])
                    if not any(e.get("name") == INDEX_ENV for e in env):
                        env.append({"name": INDEX_ENV, "valueFrom": {"fieldRef": {
                            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}})
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}

    def _backoff_remaining(self, failed: list[JsonObject], now: float) -> float:
        if not failed:
            return 0.0
        delay = min(self.backoff_base * 2 ** (len(failed) - 1), BACKOFF_MAX)
        last = max((t for t in map(_finished_at, failed) if t is not None), default=None)
        return 0.0 if last is None else max(0.0, last + delay - now)

    async def _manage(self, job: JsonObject, active: list[JsonObject], succeeded: list[JsonObject],
                      failed: list[JsonObject], done_indexes: set[int], now: float) -> None:
        key = key_of(job)
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism", 1) or 0)
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed":
            running = {i for i in map(pod_index, active) if i is not None}
            pending = [i for i in range(int(completions or 0)) if i not in done_indexes and i not in running]
            want = max(0, min(parallelism, len(running) + len(pending)))
        else:
            pending = []
            if completions is None:
                want = parallelism if not succeeded else len(active)
            else:
                want = max(0, min(parallelism, int(completions) - len(succeeded)))
        excess = len(active) - want
        if excess > 0:
            # Indexed: the highest indexes go first (upstream keeps the lowest running).
            victims = sorted(active, key=lambda p: -(pod_index(p) or 0)) if spec.get("completionMode") == "Indexed" \
                else pod_deletion_order(active, active)
            victims = victims[:min(excess, BURST_REPLICAS)]
            self.expectations.expect(key, deletes=[key_of(p) for p in victims])
            await self._delete_pods(job, victims, expected=True)
            return
        count = min(-excess, BURST_REPLICAS)
        if count <= 0:
            return
        waiting = self._backoff_remaining(failed, now)
        if waiting > 0:
            self.queue.add_after(key, waiting)
            return
        indexes: list[int | None] = list(pending[:count]) if spec.get("completionMode") == "Indexed" \
            else [None] * count
        self.expectations.expect(key, adds=len(indexes))
        queue = list(indexes)

        async def create() -> None:
            body = self.pod_from_template(job, queue.pop(0))
            try:
                created = await self.client.create(PODS, body, namespace=namespace_of(job))
            except Exception as exc:
                self.expectations.creation_observed(key)
                if isinstance(exc, ApiError):
                    self.event(job, "FailedCreate", f"Error creating: {exc.message}", warning=True)
                raise
            self.event(job, "SuccessfulCreate", f"Created pod: {name_of(created)}")

        successes, failures, error = await slow_start_batch(len(indexes), SLOW_START_INITIAL_BATCH, create)
        if error is not None:
            self.expectations.creation_observed(key, len(indexes) - successes - failures)
            raise error

    async def _delete_pods(self, job: JsonObject, pods: list[JsonObject], *, expected: bool = False) -> None:
        key = key_of(job)
        for pod in pods:
            try:
                await self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod),
                                         preconditions={"uid": uid_of(pod)})
            except Exception as exc:
                if expected:  # a deletion that did not happen will never be observed
                    self.expectations.deletion_observed(key, key_of(pod))
                if isinstance(exc, NotFound):
                    continue
                raise
            self.event(job, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")

    # --- status and TTL --------------------------------------------------------------------------

    async def _write_status(self, job: JsonObject, status: JsonObject) -> None:
        if (job.get("status") or {}) == status:
            return
        body = deepcopy(job)
        body["status"] = status
        try:
            await self.client.update_status(JOBS, body, namespace=namespace_of(job))
        except NotFound:
            return
        except Conflict:
            self.queue.add_rate_limited(key_of(job))  # a newer Job in the cache: sync again from it

    async def _expire(self, job: JsonObject) -> None:
        """ttlSecondsAfterFinished: delete the finished Job (and, in the foreground, its pods) once due."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished = parse_time((job.get("status") or {}).get("completionTime")) or parse_time(
            (condition_of(job, "Complete") or condition_of(job, "Failed") or {}).get("lastTransitionTime"))
        if finished is None:
            return
        remaining = finished + float(ttl) - self.ctx.now()
        if remaining > 0:
            self.queue.add_after(key_of(job), remaining)
            return
        try:
            await self.client.delete(JOBS, name_of(job), namespace=namespace_of(job), propagation_policy="Foreground",
                                     preconditions={"uid": uid_of(job)})
        except (NotFound, Conflict):
            return
        self.log.info("Job %s deleted: finished more than %ss ago (ttlSecondsAfterFinished)", key_of(job), ttl)


__all__ = ["COMPLETION_INDEX", "JobController", "format_indexes", "is_finished", "pod_index"]
