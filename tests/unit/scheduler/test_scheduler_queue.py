"""The scheduling queue (active / backoff / unschedulable) and the cache's assumed pods."""

from __future__ import annotations

import asyncio

from scheduler_testlib import node, pod, pod_info

from control.scheduler import Cache, SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pop_all(queue: SchedulingQueue) -> list[str]:
    async def main() -> list[str]:
        names = []
        while queue.pending()["active"]:
            names.append((await queue.pop()).pod.name)
        return names
    return asyncio.run(main())


def _pop(queue: SchedulingQueue) -> object:
    return asyncio.run(queue.pop())


def test_active_queue_orders_by_priority_then_age() -> None:
    clock = Clock()
    queue = SchedulingQueue(clock=clock)
    for name, priority in (("a", 0), ("b", 10), ("c", 0), ("d", 10)):
        queue.add(pod_info(pod(name, priority=priority)))
        clock.now += 1
    assert _pop_all(queue) == ["b", "d", "a", "c"]


def test_backoff_doubles_from_one_second_to_ten() -> None:
    queue = SchedulingQueue()
    queue.add(pod_info(pod("p")))
    qpi = _pop(queue)
    durations = []
    for attempts in range(1, 7):
        qpi.attempts = attempts  # type: ignore[attr-defined]
        durations.append(queue.backoff_duration(qpi))  # type: ignore[arg-type]
    assert durations == [1, 2, 4, 8, 10, 10]


def test_unschedulable_pods_wait_for_a_cluster_change() -> None:
    clock = Clock()
    queue = SchedulingQueue(clock=clock)
    queue.add(pod_info(pod("p")))
    qpi = _pop(queue)
    queue.add_unschedulable(qpi)  # type: ignore[arg-type]
    assert queue.pending() == {"active": [], "backoff": [], "unschedulable": ["default/p"]}
    clock.now += 0.5
    queue.move_all_to_active_or_backoff("NodeAdd")
    assert queue.pending()["backoff"] == ["default/p"]  # still inside its 1 s backoff
    clock.now += 1
    assert _pop(queue).pod.name == "p"  # type: ignore[attr-defined]


def test_cluster_change_during_the_cycle_sends_the_pod_to_backoff() -> None:
    clock = Clock()
    queue = SchedulingQueue(clock=clock)
    queue.add(pod_info(pod("p")))
    qpi = _pop(queue)
    queue.move_all_to_active_or_backoff("NodeAdd")  # a node arrived while "p" was being tried
    queue.add_unschedulable(qpi)  # type: ignore[arg-type]
    assert queue.pending() == {"active": [], "backoff": ["default/p"], "unschedulable": []}


def test_a_changed_pod_leaves_the_unschedulable_set() -> None:
    clock = Clock()
    queue = SchedulingQueue(clock=clock)
    old = pod("p")
    queue.add(pod_info(old))
    queue.add_unschedulable(_pop(queue))  # type: ignore[arg-type]
    status_only = dict(old, status={"phase": "Pending", "conditions": [{"type": "PodScheduled"}]})
    queue.update(old, pod_info(status_only))
    assert queue.pending()["unschedulable"] == ["default/p"]
    clock.now += 5
    queue.update(old, pod_info(pod("p", tolerations=[{"operator": "Exists"}])))
    assert queue.pending()["active"] == ["default/p"]


def test_deleted_pods_are_not_requeued() -> None:
    queue = SchedulingQueue()
    queue.add(pod_info(pod("p")))
    qpi = _pop(queue)
    queue.delete("default/p")
    queue.add_unschedulable(qpi)  # type: ignore[arg-type]
    queue.add_backoff(qpi)  # type: ignore[arg-type]
    assert len(queue) == 0


def test_pop_waits_for_backoff_to_expire() -> None:
    async def main() -> None:
        queue = SchedulingQueue(initial_backoff=0.05)
        queue.add(pod_info(pod("p")))
        qpi = await queue.pop()
        queue.add_backoff(qpi)
        loop = asyncio.get_running_loop()
        started = loop.time()
        again = await asyncio.wait_for(queue.pop(), 2)
        assert again.pod.name == "p" and again.attempts == 2
        assert loop.time() - started >= 0.04
    asyncio.run(main())


def test_assumed_pods_hold_their_slot_until_confirmed_or_forgotten() -> None:
    cache = Cache()
    cache.add_node(node("a", cpu="1"))
    cache.add_node(node("b", cpu="1"))
    p = pod_info(pod("p", cpu="600m"))
    cache.assume_pod(p, "a")
    a = cache.node("a")
    assert a is not None and a.requested.milli_cpu == 600 and cache.is_assumed("default/p")
    cache.forget_pod("default/p")
    assert a.requested.milli_cpu == 0 and not cache.is_assumed("default/p")
    cache.assume_pod(p, "a")
    # The apiserver says it landed on b (someone else bound it): the informer's word wins.
    cache.add_pod(pod_info(pod("p", cpu="600m", node_name="b")))
    b = cache.node("b")
    assert a.requested.milli_cpu == 0 and b is not None and b.requested.milli_cpu == 600
    assert not cache.is_assumed("default/p")
    cache.forget_pod("default/p")  # confirmed pods are not forgotten
    assert b.requested.milli_cpu == 600
    cache.remove_pod("default/p")
    assert b.requested.milli_cpu == 0 and len(b.pods) == 0


def test_nodes_come_and_go() -> None:
    cache = Cache()
    cache.add_pod(pod_info(pod("p", node_name="late")))  # bound before its Node is known
    assert cache.node_list() == []
    cache.add_node(node("late"))
    assert [n.name for n in cache.node_list()] == ["late"]
    assert cache.update_node(node("late"), node("late", labels={"x": "y"})) is True
    heartbeat = node("late", labels={"x": "y"})
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:00Z"
    assert cache.update_node(node("late", labels={"x": "y"}), heartbeat) is False
    cache.remove_node("late")
    assert cache.node_list() == []
