"""A `*/1 * * * *` CronJob on the real clock, for an e2e module that runs long anyway: `start` makes it when
the module starts, `check` (the module's last test) waits for what is left of the minute and checks its
scheduled Job. Its first firing is the minute boundary after it was made, so a module whose tests take
a minute hides the wait entirely; a shorter one waits only for the rest (at most a minute and the Job's run).

Its pod is pinned to one node (NODE's hostname label), so a module that kills or cuts off other nodes does
not disturb it. The schedule's corner cases are unit-tested on a fake clock in
tests/unit/controllers/test_controllers_cronjob.py; this is the proof that the real clock drives it."""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Callable
from typing import Any

from tests.waiting import eventually

MINUTELY = "minutely"
SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"

#: kubectl(*args, stdin=None) -> its stdout; raises when kubectl fails.
Kubectl = Callable[..., str]


def cron_job(node: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": MINUTELY},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"app": MINUTELY}},
                "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                         "containers": [{"name": "work", "image": "busybox",
                                         "command": ["sh", "-c", "echo minute"]}]}}}}}}


def start(kubectl: Kubectl, node: str) -> float:
    """Makes the CronJob, its pods pinned to NODE; returns the time it was made."""
    made = time.time()
    kubectl("apply", "-f", "-", stdin=json.dumps(cron_job(node)))
    return made


def stamp(text: str) -> int:
    """Unix seconds of a whole-second RFC 3339 time in UTC (what metav1.Time prints)."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def _get(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def check(kubectl: Kubectl, made: float, node: str) -> float:
    """Waits for a scheduled Job of the CronJob made at MADE to complete, checks it and the CronJob's
    status, deletes the CronJob and waits for its Jobs and pods to be collected. Returns the seconds it
    waited for the Job (the wall time the real clock cost the module)."""
    def ran() -> list[dict[str, Any]]:
        listed = _get(kubectl, "jobs")["items"]
        return [j for j in listed if SCHEDULED in (j["metadata"].get("annotations") or {})
                and j["metadata"]["name"].startswith(f"{MINUTELY}-")
                and any(c["type"] == "Complete" and c["status"] == "True"
                        for c in (j.get("status") or {}).get("conditions") or [])]

    waited = time.monotonic()
    # The hang guard: the first firing is within 60 s of the creation, plus 60 s for the Job.
    done = eventually(ran, timeout=max(1.0, made + 120 - time.time()), interval=0.5,
                      message="a scheduled Job of the CronJob completed")
    waited = time.monotonic() - waited
    cron = _get(kubectl, "cronjob", MINUTELY)
    created = stamp(cron["metadata"]["creationTimestamp"])
    for job in done:
        annotated = job["metadata"]["annotations"][SCHEDULED]
        at = stamp(annotated)
        # a minute boundary after the CronJob was made, the Job made then (not before), and named for it in
        # minutes since the epoch
        assert at % 60 == 0 and created < at <= stamp(job["metadata"]["creationTimestamp"]), (annotated, created)
        assert job["metadata"]["name"] == f"{MINUTELY}-{at // 60}"
        owner = job["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o.get("controller")) for o in owner] == \
            [("CronJob", MINUTELY, cron["metadata"]["uid"], True)]
        assert job["spec"]["template"]["metadata"]["labels"]["app"] == MINUTELY
    first = done[0]["metadata"]["name"]
    assert kubectl("logs", f"job/{first}") == "minute\n"
    ran_on = {p["spec"].get("nodeName") for p in _get(kubectl, "pods", "-l", f"job-name={first}")["items"]}
    assert ran_on == {node}, ran_on

    def settled() -> dict[str, Any]:
        got: dict[str, Any] = _get(kubectl, "cronjob", MINUTELY).get("status") or {}
        return got if got.get("lastSuccessfulTime") and got.get("lastScheduleTime") else {}

    # the status write follows the Job's completion by a sync of the controller
    status = eventually(settled, timeout=30, message="the CronJob's lastScheduleTime and lastSuccessfulTime")
    scheduled = sorted(stamp(j["metadata"]["annotations"][SCHEDULED]) for j in done)
    assert stamp(status["lastScheduleTime"]) >= scheduled[-1]
    assert stamp(status["lastSuccessfulTime"]) >= scheduled[0]  # a completion after the first run started
    kubectl("delete", "cronjob", MINUTELY)  # background: its Jobs and their pods follow

    def collected() -> bool:
        jobs = [j for j in _get(kubectl, "jobs")["items"] if j["metadata"]["name"].startswith(f"{MINUTELY}-")]
        pods = [p for p in _get(kubectl, "pods", "-l", f"app={MINUTELY}")["items"]
                if not p["metadata"].get("deletionTimestamp")]
        return not jobs and not pods

    eventually(collected, timeout=60, message="the CronJob's Jobs and their pods collected")
    return waited
