"""A pod's resolv.conf from dnsPolicy and dnsConfig, against the cases of upstream's kubelet
(pkg/kubelet/network/dns/dns_test.go)."""

from __future__ import annotations

from typing import Any

import pytest

from control.dns import PodDNS, fit_nameservers, fit_searches, merge_options, parse_resolv_conf, pod_dns_config
from control.dns._resolvconf import pod_dns_type


@pytest.mark.parametrize(("text", "nameservers", "searches", "options"), [
    ("", [], [], []),
    ("\t\n\t", [], [], []),
    (" #comment\n", [], [], []),
    ("#comment\nnameserver 1.2.3.4\nsearch", ["1.2.3.4"], [], []),
    ("nameserver \t 1.2.3.4", ["1.2.3.4"], [], []),
    ("nameserver 1.2.3.4\nnameserver 5.6.7.8", ["1.2.3.4", "5.6.7.8"], [], []),
    ("nameserver 1.2.3.4 #comment", ["1.2.3.4"], [], []),
    ("search foo. bar", [], ["foo", "bar"], []),
    ("search foo\nsearch bar", [], ["bar"], []),
    ("nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar", ["1.2.3.4", "5.6.7.8"], ["bar"], []),
    ("options ndots:5 attempts:2", [], [], ["ndots:5", "attempts:2"]),
    ("options ndots:1\noptions ndots:5 attempts:3", [], [], ["ndots:5", "attempts:3"]),
])
def test_parse_resolv_conf_as_upstream(text: str, nameservers: list[str], searches: list[str],
                                       options: list[str]) -> None:
    host = parse_resolv_conf(text)
    assert (list(host.nameservers), list(host.searches), list(host.options)) == (nameservers, searches, options)


@pytest.mark.parametrize("text", ["#comment\nnameserver", "#comment\nnameserver\nsearch"])
def test_a_nameserver_without_an_address_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_resolv_conf(text)


def test_merge_options_lets_the_pod_override() -> None:
    assert merge_options(["ndots:5", "debug"], []) == ["ndots:5", "debug"]
    assert set(merge_options(["ndots:5", "debug"], [{"name": "single-request"}, {"name": "attempts", "value": "3"}])) \
        == {"ndots:5", "debug", "single-request", "attempts:3"}
    assert set(merge_options(["ndots:5", "debug"], [{"name": "ndots", "value": "3"}, {"name": "debug"},
                                                    {"name": "single-request"}, {"name": "attempts", "value": "3"}])) \
        == {"ndots:3", "debug", "single-request", "attempts:3"}


BASE = ["testNS.svc.TEST", "svc.TEST", "TEST"]
LIST_2048 = ["A" * 128, *["A" * 127] * 15]


@pytest.mark.parametrize(("searches", "kept", "warned"), [
    (BASE, BASE, False),
    ([*BASE, "AAA", "BBB"], [*BASE, "AAA", "BBB"], False),
    (LIST_2048, LIST_2048, False),
    ([*LIST_2048, "B"], LIST_2048, True),
    ([*BASE, "AAA", "B" * 256, "BBB"], [*BASE, "AAA", "BBB"], True),
    ([*BASE, *(str(i) for i in range(4, 33))], [*BASE, *(str(i) for i in range(4, 33))], False),
    ([*BASE, *(str(i) for i in range(4, 34))], [*BASE, *(str(i) for i in range(4, 33))], True),
])
def test_search_limits_as_upstream(searches: list[str], kept: list[str], warned: bool) -> None:
    result, warnings = fit_searches(searches)
    assert result == kept
    assert bool(warnings) == warned
    if warned:
        assert warnings[0].endswith("the applied search line is: " + " ".join(kept))


def test_nameserver_limit_is_three() -> None:
    assert fit_nameservers(["127.0.0.1", "10.0.0.10", "8.8.8.8"]) == (["127.0.0.1", "10.0.0.10", "8.8.8.8"], [])
    kept, warnings = fit_nameservers(["127.0.0.1", "10.0.0.10", "8.8.8.8", "1.2.3.4"])
    assert kept == ["127.0.0.1", "10.0.0.10", "8.8.8.8"] and warnings


@pytest.mark.parametrize(("policy", "host_network", "expected"), [
    ("ClusterFirst", False, "cluster"), ("ClusterFirstWithHostNet", True, "cluster"),
    ("ClusterFirstWithHostNet", False, "cluster"), ("Default", False, "host"), ("Default", True, "host"),
    ("ClusterFirst", True, "host"), ("None", False, "none"), (None, False, "cluster"),
])
def test_pod_dns_type_as_upstream(policy: str | None, host_network: bool, expected: str) -> None:
    assert pod_dns_type({"dnsPolicy": policy, "hostNetwork": host_network}) == expected


def test_an_unknown_policy_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"spec\.dnsPolicy 'invalidPolicy'"):
        pod_dns_type({"dnsPolicy": "invalidPolicy"})


def pod(policy: str | None = None, *, namespace: str = "testNS", host_network: bool = False,
        dns_config: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hostNetwork": host_network}
    if policy:
        spec["dnsPolicy"] = policy
    if dns_config is not None:
        spec["dnsConfig"] = dns_config
    return {"metadata": {"name": "test_pod", "namespace": namespace}, "spec": spec}


HOST = "nameserver 8.8.8.8\nsearch host.domain\n"
CUSTOM = {"nameservers": ["10.0.0.11"], "searches": ["my.domain"],
          "options": [{"name": "ndots", "value": "3"}, {"name": "debug"}]}


def dns_of(p: dict[str, Any], host: str | None = HOST) -> PodDNS:
    return pod_dns_config(p, cluster_dns=["10.0.0.10"], cluster_domain="kubernetes.io", host_resolv_conf=host)


def test_cluster_first_is_the_default_and_renders_the_familiar_file() -> None:
    result = pod_dns_config(pod(namespace="default"), cluster_dns=["10.96.0.10"], cluster_domain="cluster.local",
                            host_resolv_conf=None)
    assert result.render() == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                               "nameserver 10.96.0.10\noptions ndots:5\n")


def test_host_network_pods_fall_back_to_the_node_unless_with_host_net() -> None:
    assert dns_of(pod("ClusterFirst", host_network=True), host=None) == PodDNS(("127.0.0.1",), (".",), ())
    assert dns_of(pod("Default"), host=None) == PodDNS(("127.0.0.1",), (".",), ())
    with_host_net = dns_of(pod("ClusterFirstWithHostNet", host_network=True))
    assert with_host_net.nameservers == ("10.0.0.10",)
    assert with_host_net.searches == ("testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io", "host.domain")


def test_none_without_dns_config_is_empty() -> None:
    assert dns_of(pod("None")) == PodDNS()


@pytest.mark.parametrize(("policy", "host_network", "nameservers", "searches"), [
    ("None", False, ["203.0.113.1"], ["my.domain", "second.domain"]),
    ("ClusterFirst", False, ["10.0.0.10", "10.0.0.11"],
     ["testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io", "host.domain", "my.domain"]),
    ("ClusterFirstWithHostNet", True, ["10.0.0.10", "10.0.0.11"],
     ["testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io", "host.domain", "my.domain"]),
    ("Default", False, ["8.8.8.8", "10.0.0.11"], ["host.domain", "my.domain"]),
])
def test_dns_config_is_merged_as_upstream(policy: str, host_network: bool, nameservers: list[str],
                                          searches: list[str]) -> None:
    config = dict(CUSTOM)
    if policy == "None":
        config = {**CUSTOM, "nameservers": ["203.0.113.1"], "searches": ["my.domain", "second.domain"]}
    result = dns_of(pod(policy, host_network=host_network, dns_config=config))
    assert list(result.nameservers) == nameservers
    assert list(result.searches) == searches
    assert set(result.options) == {"ndots:3", "debug"}


def test_without_cluster_dns_cluster_first_falls_back_with_a_warning() -> None:
    result = pod_dns_config(pod(), cluster_dns=[], cluster_domain="cluster.local", host_resolv_conf=HOST)
    assert result.nameservers == ("8.8.8.8",) and result.searches == ("host.domain",)
    assert any("ClusterDNS" in w for w in result.warnings)


def test_duplicates_are_removed_and_limits_applied_after_merging() -> None:
    config = {"nameservers": ["10.0.0.10", "1.1.1.1", "2.2.2.2", "3.3.3.3"], "searches": ["kubernetes.io", "x"]}
    result = dns_of(pod(dns_config=config))
    assert result.nameservers == ("10.0.0.10", "1.1.1.1", "2.2.2.2")
    assert result.searches.count("kubernetes.io") == 1 and result.searches[-1] == "x"
    assert result.warnings
