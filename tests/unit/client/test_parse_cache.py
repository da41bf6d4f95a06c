"""control.client.ParseCache: what the proxy and the policy agent parse their informers' objects with."""

from __future__ import annotations

from typing import Any

from control.client import ParseCache


def obj(name: str, version: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": version}, "spec": spec}


def test_an_unchanged_object_keeps_its_value_and_a_new_version_is_parsed_again() -> None:
    parsed: list[str] = []

    def parse(o: dict[str, Any]) -> tuple[str, str]:
        parsed.append(o["metadata"]["name"])
        return o["metadata"]["name"], o["metadata"]["resourceVersion"]

    cache: ParseCache[tuple[str, str]] = ParseCache(parse)
    first = cache.parse_all([obj("a", "1"), obj("b", "1")])
    second = cache.parse_all([obj("a", "1"), obj("b", "2")])
    assert parsed == ["a", "b", "b"]
    assert second[0] is first[0] and second[1] == ("b", "2")
    cache.parse_all([obj("b", "2")])
    assert set(cache.values) == {("uid-b", "2")}  # what is gone is forgotten


def test_an_unusable_object_is_left_out_and_reported_once_per_version() -> None:
    reported: list[str] = []

    def parse(o: dict[str, Any]) -> str | None:
        if o["spec"].get("bad"):
            raise ValueError(f"{o['metadata']['name']}: bad")
        return None if o["spec"].get("empty") else o["metadata"]["name"]

    cache: ParseCache[str] = ParseCache(parse, errors=(ValueError,), on_error=lambda o, err: reported.append(str(err)))
    objects = [obj("ok", "1"), obj("broken", "1", bad=True), obj("nothing", "1", empty=True)]
    assert cache.parse_all(objects) == ["ok"]
    assert cache.parse_all(objects) == ["ok"]
    assert reported == ["broken: bad"]
    assert cache.parse_all([obj("broken", "2", bad=True)]) == []
    assert reported == ["broken: bad", "broken: bad"]


def test_objects_without_uid_or_version_are_parsed_every_time() -> None:
    calls: list[int] = []
    cache: ParseCache[int] = ParseCache(lambda o: calls.append(1) or len(calls))
    handmade = {"metadata": {"name": "x"}}
    cache.parse_all([handmade])
    cache.parse_all([handmade])
    assert len(calls) == 2 and cache.values == {}
