"""The CronJob controller against the real apiserver, on a fake clock (Context.now) so that no test waits for
a minute to pass, and its schedule arithmetic (control.api.cron)."""

from __future__ import annotations

import calendar
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from control.api.cron import CronError, check_schedule, next_time, unmet_times
from control.apiserver.defaults import default
from control.apiserver.validation import validate
from control.client import CRON_JOBS, JOBS, Client, Invalid
from control.controllers import ControllerManager, Options
from tests.harness import local_apiserver
from tests.unit.controllers.controllers_kit import FAST, eventually, run


def utc(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


def cron_job(name: str = "tick", schedule: str = "*/1 * * * *", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"metadata": {"labels": {"cron": name}}, "spec": {
                "template": {"spec": {"restartPolicy": "Never",
                                      "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}},
                     **spec}}


# --- schedules -------------------------------------------------------------------------------------

def test_schedule_checks_in_upstreams_words() -> None:
    check_schedule("*/5 * * * *")
    check_schedule("@hourly")
    for bad, why in (("* * * * * *", "expected exactly 5 fields, found 6"), ("61 * * * *", "out of range"),
                     ("TZ=UTC * * * * *", "use timeZone field instead"), ("@fortnightly", "unrecognized descriptor")):
        with pytest.raises(CronError, match=why):
            check_schedule(bad)


def test_unmet_and_next_times() -> None:
    since, now = utc("2026-03-01T10:00:30Z"), utc("2026-03-01T10:05:10Z")
    assert unmet_times("*/1 * * * *", None, since, now) == (utc("2026-03-01T10:05:00Z"), 5)
    assert unmet_times("0 * * * *", None, since, now) == (None, 0)
    assert next_time("0 * * * *", None, now) == utc("2026-03-01T11:00:00Z")
    # 09:00 in New York is 14:00 UTC in winter and 13:00 UTC after the switch to summer time (8 March 2026).
    assert next_time("0 9 * * *", "America/New_York", utc("2026-03-07T12:00:00Z")) == utc("2026-03-07T14:00:00Z")
    assert next_time("0 9 * * *", "America/New_York", utc("2026-03-08T12:00:00Z")) == utc("2026-03-08T13:00:00Z")
    # A long outage: counting stops past 100, the most recent missed time is still found.
    latest, count = unmet_times("*/1 * * * *", None, utc("2026-03-01T00:00:00Z"), now)
    assert latest == utc("2026-03-01T10:05:00Z") and count > 100


def test_defaults_and_validation() -> None:
    obj = cron_job()
    default("CronJob", obj)
    spec = obj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert validate("CronJob", obj) == []
    bad = cron_job(schedule="61 * * * *", timeZone="Mars/Olympus", concurrencyPolicy="Sometimes",
                   startingDeadlineSeconds=-1)
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    default("CronJob", bad)
    assert [(e.field, e.message) for e in validate("CronJob", bad)] == [
        ("spec.schedule", 'Invalid value: "61 * * * *": [61 * * * *] is not acceptable, out of range'),
        ("spec.timeZone", 'Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'),
        ("spec.concurrencyPolicy", 'Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"'),
        ("spec.startingDeadlineSeconds", "Invalid value: -1: must be greater than or equal to 0"),
        ("spec.jobTemplate.spec.template.spec.restartPolicy",
         'Unsupported value: "Always": supported values: "OnFailure", "Never"')]
    long = cron_job(name="x" * 53)
    default("CronJob", long)
    assert [e.field for e in validate("CronJob", long)] == ["metadata.name"]


# --- the controller --------------------------------------------------------------------------------

class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def cron_cluster(tmp_path: Path, clock: Clock) -> AsyncIterator[Client]:
    async with local_apiserver(tmp_path) as api:
        cm = ControllerManager(api.client("controller-manager"), Options(**FAST), controllers=["cronjob"])
        cm.ctx.now = clock  # the seam: every "now" of the controller
        async with cm:
            yield api.client("admin")


async def jobs(client: Client) -> list[dict[str, Any]]:
    listed = await client.list(JOBS, namespace="default")
    return sorted((j for j in listed["items"] if not j["metadata"].get("deletionTimestamp")),
                  key=lambda j: j["metadata"]["name"])


async def cron_status(client: Client, name: str = "tick") -> dict[str, Any]:
    return dict((await client.get(CRON_JOBS, name, namespace="default")).get("status") or {})


async def finish(client: Client, job: dict[str, Any], outcome: str, when: float) -> None:
    """What the Job controller would write when the Job ends."""
    fresh = await client.get(JOBS, job["metadata"]["name"], namespace="default")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    status: dict[str, Any] = {"startTime": stamp, "conditions": [
        {"type": outcome, "status": "True", "lastTransitionTime": stamp, "lastProbeTime": stamp}]}
    if outcome == "Complete":
        status["completionTime"] = stamp
        status["succeeded"] = 1
        status["conditions"].insert(0, {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": stamp,
                                        "lastProbeTime": stamp})
    else:
        status["failed"] = 1
        status["conditions"].insert(0, {"type": "FailureTarget", "status": "True", "lastTransitionTime": stamp,
                                        "lastProbeTime": stamp})
    fresh["status"] = status
    await client.update_status(JOBS, fresh)


def _minute_after(seconds_past: float) -> float:
    """A clock reading SECONDS_PAST a minute boundary, a few minutes after now (the CronJob is created now)."""
    return (time.time() // 60 + 3) * 60 + seconds_past


async def _nudge(admin: Client, name: str = "tick") -> None:
    # Any change to the CronJob enqueues it: a label, which no rule reads.
    await admin.patch(CRON_JOBS, name, {"metadata": {"labels": {"nudge": str(time.monotonic_ns())}}},
                      namespace="default")


def test_starts_a_job_per_firing_and_tracks_it(tmp_path: Path) -> None:
    async def main() -> None:
        clock = Clock(_minute_after(5))
        async with cron_cluster(tmp_path, clock) as admin:
            with pytest.raises(Invalid, match=r"spec\.schedule"):
                await admin.create(CRON_JOBS, cron_job(schedule="every minute"), namespace="default")
            await admin.create(CRON_JOBS, cron_job(), namespace="default")
            (job,) = await eventually(lambda: _jobs_n(admin, 1), what="the first Job")
            fired = clock.now - 5
            assert job["metadata"]["name"] == f"tick-{int(fired // 60)}"
            assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fired))
            assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
            assert job["metadata"]["labels"] == {"cron": "tick"}
            st = await eventually(lambda: _status_has(admin, "active"), what="active")
            assert [r["name"] for r in st["active"]] == [job["metadata"]["name"]]
            assert st["lastScheduleTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fired))
            # It finishes: no longer active, lastSuccessfulTime set; the next minute starts the next Job.
            await finish(admin, job, "Complete", fired + 20)
            st = await eventually(lambda: _status_lacks(admin, "active"), what="not active")
            assert st["lastSuccessfulTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fired + 20))
            clock.now += 60
            await _nudge(admin)
            await eventually(lambda: _jobs_n(admin, 2), what="the next minute's Job")

    run(main)


def test_forbid_skips_while_running_and_replace_replaces(tmp_path: Path) -> None:
    async def main() -> None:
        clock = Clock(_minute_after(5))
        async with cron_cluster(tmp_path, clock) as admin:
            await admin.create(CRON_JOBS, cron_job(concurrencyPolicy="Forbid"), namespace="default")
            (first,) = await eventually(lambda: _jobs_n(admin, 1), what="the first Job")
            clock.now += 60
            await _nudge(admin)
            await eventually(lambda: _status_is(admin, lastScheduleTime=_stamp(clock.now - 65)), what="synced")
            await _nudge(admin)
            assert [j["metadata"]["name"] for j in await jobs(admin)] == [first["metadata"]["name"]]
            # Replace: the running Job is deleted and the new minute's Job takes its place.
            await admin.patch(CRON_JOBS, "tick", {"spec": {"concurrencyPolicy": "Replace"}}, namespace="default")
            (second,) = await eventually(lambda: _jobs_named_not(admin, first["metadata"]["name"]),
                                         what="the replacement")
            assert second["metadata"]["name"] == f"tick-{int((clock.now - 5) // 60)}"
            await eventually(lambda: _active_names(admin, [second["metadata"]["name"]]), what="only the new one active")
            assert (await cron_status(admin))["lastScheduleTime"] == _stamp(clock.now - 5)

    run(main)


def test_allow_runs_concurrently_history_limits_and_suspend(tmp_path: Path) -> None:
    async def main() -> None:
        clock = Clock(_minute_after(5))
        async with cron_cluster(tmp_path, clock) as admin:
            await admin.create(CRON_JOBS, cron_job(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0),
                               namespace="default")
            await eventually(lambda: _jobs_n(admin, 1), what="one")
            clock.now += 60
            await _nudge(admin)
            both = await eventually(lambda: _jobs_n(admin, 2), what="two running side by side (Allow)")
            st = await eventually(lambda: _status_active_n(admin, 2), what="both active")
            assert len(st["active"]) == 2
            await finish(admin, both[0], "Complete", clock.now)
            await finish(admin, both[1], "Complete", clock.now + 1)
            # Two successes, limit 1: the older is deleted.
            (kept,) = await eventually(lambda: _jobs_n(admin, 1), what="history trimmed to one success")
            assert kept["metadata"]["name"] == both[1]["metadata"]["name"]
            await admin.patch(CRON_JOBS, "tick", {"spec": {"suspend": True}}, namespace="default")
            clock.now += 120
            await _nudge(admin)
            await eventually(lambda: _status_lacks(admin, "active"), what="synced while suspended")
            assert [j["metadata"]["name"] for j in await jobs(admin)] == [kept["metadata"]["name"]]

    run(main)


def test_starting_deadline_skips_a_late_start(tmp_path: Path) -> None:
    async def main() -> None:
        # 45 s past the minute with a 30 s deadline: the firing is too late to start.
        clock = Clock(_minute_after(45))
        async with cron_cluster(tmp_path, clock) as admin:
            await admin.create(CRON_JOBS, cron_job(startingDeadlineSeconds=30), namespace="default")
            await admin.create(CRON_JOBS, cron_job(name="lenient", startingDeadlineSeconds=60), namespace="default")
            await eventually(lambda: _status_has(admin, "active", "lenient"), what="the lenient one started")
            assert [j["metadata"]["name"] for j in await jobs(admin)] == [f"lenient-{int((clock.now - 45) // 60)}"]
            assert "lastScheduleTime" not in await cron_status(admin)

    run(main)


# --- helpers ---------------------------------------------------------------------------------------

def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when // 60 * 60))


async def _jobs_n(admin: Client, n: int) -> list[dict[str, Any]] | None:
    items = await jobs(admin)
    return items if len(items) == n else None


async def _jobs_named_not(admin: Client, name: str) -> list[dict[str, Any]] | None:
    items = await jobs(admin)
    return items if len(items) == 1 and items[0]["metadata"]["name"] != name else None


async def _status_has(admin: Client, field: str, name: str = "tick") -> dict[str, Any] | None:
    st = await cron_status(admin, name)
    return st if st.get(field) else None


async def _status_lacks(admin: Client, field: str) -> dict[str, Any] | None:
    st = await cron_status(admin)
    return st if field not in st else None


async def _status_active_n(admin: Client, n: int) -> dict[str, Any] | None:
    st = await cron_status(admin)
    return st if len(st.get("active") or []) == n else None


async def _active_names(admin: Client, names: list[str]) -> bool:
    return [r["name"] for r in (await cron_status(admin)).get("active") or []] == names


async def _status_is(admin: Client, **want: Any) -> dict[str, Any] | None:
    st = await cron_status(admin)
    return st if all(st.get(k) == v for k, v in want.items()) else None
