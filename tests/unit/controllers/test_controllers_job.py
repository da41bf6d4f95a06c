"""The Job controller against the real apiserver (defaulting, the generated selector, validation), with
the test playing the kubelet: pods run to completion or fail when we say so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from control.apiserver.defaults import default
from control.apiserver.strategy import prepare_for_create
from control.apiserver.validation import validate
from control.client import JOBS, PODS, Client, Invalid, NotFound
from control.controllers import format_indexes
from tests.unit.controllers.controllers_kit import cluster, eventually, run, set_pod_status


def job(name: str, **spec: Any) -> dict[str, Any]:
    restart = spec.pop("restartPolicy", "Never")
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": restart, "containers": [
                {"name": "c", "image": "busybox", "command": ["true"]}]}}, **spec}}


async def pods(client: Client, name: str) -> list[dict[str, Any]]:
    listed = await client.list(PODS, namespace="default", label_selector=f"batch.kubernetes.io/job-name={name}")
    return sorted((p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: p["metadata"]["name"])


def phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase"))


async def status(client: Client, name: str) -> dict[str, Any]:
    return dict((await client.get(JOBS, name, namespace="default")).get("status") or {})


def condition(job_status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in job_status.get("conditions") or [] if c["type"] == kind and c["status"] == "True"), None)


def test_api_defaults_generated_selector_and_validation() -> None:
    obj = job("work")
    obj["metadata"]["uid"] = "uid-1"
    default("Job", obj)
    prepare_for_create("Job", obj)
    spec = obj["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"]) == \
        (1, 1, 6, "NonIndexed")
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "uid-1"}}
    assert spec["template"]["metadata"]["labels"] == {
        "job-name": "work", "batch.kubernetes.io/job-name": "work", "controller-uid": "uid-1",
        "batch.kubernetes.io/controller-uid": "uid-1"}
    assert validate("Job", obj) == []
    always = job("bad", restartPolicy="Always", completionMode="Indexed")
    always["metadata"]["uid"] = "uid-2"
    always["spec"]["completions"] = None
    always["spec"]["parallelism"] = 2
    default("Job", always)
    prepare_for_create("Job", always)
    assert [(e.field, e.message) for e in validate("Job", always)] == [
        ("spec.completions", "Required value: when completion mode is Indexed"),
        ("spec.template.spec.restartPolicy", 'Unsupported value: "Always": supported values: "OnFailure", "Never"')]


@pytest.mark.parametrize(("indexes", "text"), [(set(), ""), ({0}, "0"), ({0, 1, 2, 4, 6, 7}, "0-2,4,6-7")])
def test_completed_indexes_format(indexes: set[int], text: str) -> None:
    assert format_indexes(indexes) == text


def test_completions_with_parallelism(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "job") as (_, admin):
            with pytest.raises(Invalid):
                await admin.create(JOBS, job("always", restartPolicy="Always"), namespace="default")
            await admin.create(JOBS, job("work", completions=3, parallelism=2), namespace="default")
            first = await eventually(lambda: _count(admin, "work", 2), what="two pods")

            async def two_active() -> bool:  # the status is written after the pods, as upstream's sync does
                return (await status(admin, "work")).get("active") == 2

            await eventually(two_active, what="status.active 2")
            assert all(p["metadata"]["ownerReferences"][0]["kind"] == "Job" for p in first)
            await set_pod_status(admin, first[0], phase="Succeeded", ready=False)
            # One done, two to go, two at a time: a new pod replaces the finished one.
            await eventually(lambda: _active(admin, "work", 2, total=3), what="a third pod")
            for pod in await pods(admin, "work"):
                if phase(pod) != "Succeeded":
                    await set_pod_status(admin, pod, phase="Succeeded", ready=False)
            done = await eventually(lambda: _finished(admin, "work", "Complete"), what="Complete")
            assert done["succeeded"] == 3 and "active" not in done and done["completionTime"]
            assert done["startTime"] <= done["completionTime"]
            assert len(await pods(admin, "work")) == 3  # no pod beyond completions was ever made

    run(main)


def test_backoff_limit_and_deadline(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "job", job_backoff_base=0.05) as (_, admin):
            await admin.create(JOBS, job("flaky", backoffLimit=1), namespace="default")
            for _ in range(2):
                pod = (await eventually(lambda: _active(admin, "flaky", 1), what="a running pod"))[0]
                await set_pod_status(admin, pod, phase="Failed", ready=False)
            failed = await eventually(lambda: _finished(admin, "flaky", "Failed"), what="Failed")
            assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
            assert failed["failed"] == 2 and "completionTime" not in failed

            # a deadline long enough for the pod to be seen before it is deleted, on a busy machine too
            await admin.create(JOBS, job("slow", activeDeadlineSeconds=3), namespace="default")
            await eventually(lambda: _count(admin, "slow", 1), what="slow's pod")
            late = await eventually(lambda: _finished(admin, "slow", "Failed"), what="DeadlineExceeded")
            assert condition(late, "Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]

            async def none_left() -> bool:
                return not await pods(admin, "slow")

            await eventually(none_left, what="slow's pod deleted")

    run(main)


def test_indexed_completion_and_ttl(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "job", "garbagecollector") as (_, admin):
            await admin.create(JOBS, job("shards", completions=3, parallelism=3, completionMode="Indexed",
                                         ttlSecondsAfterFinished=0), namespace="default")
            created = await eventually(lambda: _count(admin, "shards", 3), what="three indexed pods")
            by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in created}
            assert sorted(by_index) == ["0", "1", "2"]
            one = by_index["1"]
            assert one["metadata"]["name"].startswith("shards-1-")
            assert one["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
            assert one["spec"]["hostname"] == "shards-1"
            assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} \
                in one["spec"]["containers"][0]["env"]
            await set_pod_status(admin, one, phase="Succeeded", ready=False)

            async def completed_indexes() -> str | None:
                return (await status(admin, "shards")).get("completedIndexes")

            assert await eventually(completed_indexes, what="index 1 done") == "1"
            for index in ("0", "2"):
                await set_pod_status(admin, by_index[index], phase="Succeeded", ready=False)

            async def deleted() -> bool:
                try:
                    await admin.get(JOBS, "shards", namespace="default")
                except NotFound:
                    return True
                return False

            # Deleted in the foreground: the garbage collector removes its pods first.
            await eventually(deleted, what="the finished Job deleted (ttlSecondsAfterFinished 0)")
            assert await pods(admin, "shards") == []

    run(main)


async def _count(client: Client, name: str, count: int) -> list[dict[str, Any]] | None:
    found = await pods(client, name)
    return found if len(found) == count else None


async def _active(client: Client, name: str, count: int, total: int | None = None) -> list[dict[str, Any]] | None:
    found = await pods(client, name)
    active = [p for p in found if phase(p) not in ("Succeeded", "Failed")]
    if len(active) == count and (total is None or len(found) == total):
        return active
    return None


async def _finished(client: Client, name: str, kind: str) -> dict[str, Any] | None:
    found = await status(client, name)
    return found if condition(found, kind) else None


def test_lowering_parallelism_deletes_extra_pods(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "job") as (_, admin):
            await admin.create(JOBS, job("wide", completions=5, parallelism=3), namespace="default")
            await eventually(lambda: _count(admin, "wide", 3), what="three pods")
            await admin.patch(JOBS, "wide", {"spec": {"parallelism": 1}}, namespace="default")
            await eventually(lambda: _count(admin, "wide", 1), what="two pods deleted")

            async def one_active() -> bool:
                return (await status(admin, "wide")).get("active") == 1

            await eventually(one_active, what="status.active 1")

    run(main)


def test_suspend_and_resume(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "job") as (_, admin):
            await admin.create(JOBS, job("later", completions=2, parallelism=2, suspend=True), namespace="default")

            async def suspended() -> dict[str, Any] | None:
                found = await status(admin, "later")
                return found if condition(found, "Suspended") else None

            held = await eventually(suspended, what="Suspended")
            assert "startTime" not in held and await pods(admin, "later") == []
            await admin.patch(JOBS, "later", {"spec": {"suspend": False}}, namespace="default")
            await eventually(lambda: _count(admin, "later", 2), what="pods once resumed")
            resumed = await status(admin, "later")
            assert resumed["startTime"] and next(c for c in resumed["conditions"] if c["type"] == "Suspended")[
                "reason"] == "JobResumed"
            await admin.patch(JOBS, "later", {"spec": {"suspend": True}}, namespace="default")

            async def none_left() -> bool:
                return not await pods(admin, "later")

            await eventually(none_left, what="pods deleted on suspend")

    run(main)
