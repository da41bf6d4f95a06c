"""The zone rebuilt with each Service's fragment reused from the previous build is the zone built from
scratch, whatever changed in between (the cache must never serve a stale Service)."""

from __future__ import annotations

from typing import Any

import dns.name
import dns.reversename
from hypothesis import given
from hypothesis import strategies as st

from control.dns import build_zone
from control.dns._zone import Fragment, FragmentKey


def svc(name: str, rv: int, *, headless: bool = False, ip: int = 2, port: str = "http") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)},
            "spec": {"clusterIP": "None" if headless else f"10.96.1.{ip}", "ports": [{"name": port, "port": 80}]}}


def eps(service: str, rv: int, ips: list[str], name: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name or f"{service}-x", "namespace": "default", "resourceVersion": str(rv),
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "hostname": f"h{ip.rsplit('.', 1)[1]}"} for ip in ips]}


def same(a: Any, b: Any) -> bool:
    return bool(a.records == b.records and a.existing == b.existing and a.pod_ips == b.pod_ips)


def test_a_changed_service_is_built_again_and_a_gone_one_leaves() -> None:
    cache: dict[FragmentKey, Fragment] = {}
    first = [svc("a", 1, ip=2), svc("b", 2, ip=3)]
    assert same(build_zone(first, [], fragments=cache), build_zone(first, []))
    assert len(cache) == 2
    changed = [svc("a", 5, ip=9)]  # a's address changed (new resourceVersion), b deleted
    rebuilt = build_zone(changed, [], fragments=cache)
    assert same(rebuilt, build_zone(changed, []))
    assert rebuilt.rrsets(dns.name.from_text("b.default.svc.cluster.local")) is None
    assert len(cache) == 1


def test_one_pod_in_two_headless_services_keeps_both_ptrs() -> None:
    services = [svc("x", 1, headless=True), svc("y", 2, headless=True)]
    slices = [eps("x", 3, ["10.244.1.5"]), eps("y", 4, ["10.244.1.5"])]
    cache: dict[FragmentKey, Fragment] = {}
    build_zone(services, slices, fragments=cache)
    again = build_zone(services, slices, fragments=cache)  # every fragment from the cache this time
    assert same(again, build_zone(services, slices))
    ptrs = again.rrsets(dns.reversename.from_address("10.244.1.5"))
    assert ptrs is not None and len(next(iter(ptrs.values()))) == 2


def test_objects_without_resource_versions_are_never_cached() -> None:
    cache: dict[FragmentKey, Fragment] = {}
    plain = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"clusterIP": "10.96.1.7"}}
    build_zone([plain], [], fragments=cache)
    assert cache == {}


STATE = st.lists(st.tuples(st.sampled_from("abcd"), st.integers(1, 3), st.booleans(),
                           st.lists(st.sampled_from(["10.244.1.5", "10.244.1.6", "10.244.2.7"]), max_size=3)),
                 max_size=6)


@given(st.lists(STATE, min_size=1, max_size=5))
def test_any_sequence_of_states_builds_the_same_zone_with_the_cache(states: list[Any]) -> None:
    cache: dict[FragmentKey, Fragment] = {}
    for state in states:
        services, slices, seen = [], [], set()
        for name, version, headless, ips in state:
            if name in seen:
                continue
            seen.add(name)
            # The resourceVersion follows the content, as the API's does: same version, same object.
            rv = hash((name, version, headless, tuple(ips))) & 0xFFFFFF
            services.append(svc(name, rv, headless=headless, ip=version + 10))
            slices.append(eps(name, rv + 1, list(dict.fromkeys(ips))))
        assert same(build_zone(services, slices, fragments=cache), build_zone(services, slices))
