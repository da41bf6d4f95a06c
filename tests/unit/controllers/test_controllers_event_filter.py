"""The controllers' Event spam filter: client-go's EventSourceObjectSpamFilter (burst 25, then 1 per 5 min)."""

from __future__ import annotations

from control.controllers._base import EventSpamFilter


def owner(name: str, uid: str) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default", "uid": uid}}


def test_a_burst_of_25_events_about_one_object_then_one_per_five_minutes() -> None:
    now = [1000.0]
    spam = EventSpamFilter(clock=lambda: now[0])
    web = owner("web", "u1")
    assert [spam.allow(web) for _ in range(1000)].count(True) == 25  # a ReplicaSet creating 1000 pods
    now[0] += 299
    assert not spam.allow(web)
    now[0] += 2  # 301 s after the burst: one token back, and only one
    assert spam.allow(web) and not spam.allow(web)
    now[0] += 25 * 300  # refilled up to the burst, never beyond it
    assert [spam.allow(web) for _ in range(30)].count(True) == 25


def test_each_involved_object_has_its_own_bucket() -> None:
    spam = EventSpamFilter(clock=lambda: 0.0)
    for _ in range(25):
        assert spam.allow(owner("web", "u1"))
    assert not spam.allow(owner("web", "u1"))
    # Another object, or the same name recreated (another uid), starts with a full burst.
    assert spam.allow(owner("api", "u2"))
    assert spam.allow(owner("web", "u3"))


def test_the_buckets_are_an_lru_of_bounded_size() -> None:
    spam = EventSpamFilter(clock=lambda: 0.0)
    first = owner("first", "u0")
    for _ in range(25):
        spam.allow(first)
    assert not spam.allow(first)
    for i in range(EventSpamFilter.SIZE):  # enough other objects to push the first out
        spam.allow(owner(f"o{i}", f"u{i + 1}"))
    assert spam.allow(first)  # forgotten, so a full burst again (as client-go's LRU forgets it)
