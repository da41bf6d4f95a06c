"""A pod's /etc/resolv.conf from its dnsPolicy and dnsConfig, as upstream's kubelet computes it
(pkg/kubelet/network/dns/dns.go, GetPodDNS), as a pure function. Writing it into the pod is the pod
runtime's business, not this module's.

    pod_dns_config(pod, cluster_dns=["10.96.0.10"], cluster_domain="cluster.local",
                   host_resolv_conf=text_or_None) -> PodDNS(nameservers, searches, options, warnings)
    PodDNS.render() -> the file's text

Policies (pod.spec.dnsPolicy, default ClusterFirst):
    ClusterFirst             the cluster's DNS, search <ns>.svc.<domain> svc.<domain> <domain> + the
                             host's searches, options ndots:5; for a hostNetwork pod: as Default; with
                             no cluster DNS configured: as Default, with a MissingClusterDNS warning
    ClusterFirstWithHostNet  the cluster's DNS even for a hostNetwork pod
    Default                  the node's resolv.conf (none given: nameserver 127.0.0.1, search ".")
    None                     only what dnsConfig says
then dnsConfig's nameservers and searches are appended without duplicates and its options merged
(a pod's option replaces the base option of the same name), and the limits applied as upstream's
(ExpandedDNSConfig, GA in 1.28): 3 nameservers, 32 search paths of at most 253 characters each and
2048 characters in all, with a warning (upstream's DNSConfigForming event) when anything was dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_LIST_CHARS = 2048
MAX_SEARCH_PATH_CHARS = 253  # a DNS-1123 subdomain; longer paths make glibc 2.28 abort()
DEFAULT_OPTIONS = ("ndots:5",)
POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


@dataclass(frozen=True)
class HostDNS:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodDNS:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def render(self) -> str:
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {server}" for server in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


def parse_resolv_conf(text: str) -> HostDNS:
    """A resolv.conf's nameservers, searches and options, as upstream's parseResolvConf: comments (# or ;)
    ignored, the last search and options lines win, trailing dots trimmed from search domains. A
    `nameserver` line without an address is a ValueError naming the line."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0]
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "nameserver":
            if len(fields) < 2:
                raise ValueError(f"resolv.conf line {number}: 'nameserver' needs an address")
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options = fields[1:]
    return HostDNS(tuple(nameservers), tuple(searches), tuple(options))


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def merge_options(base: Sequence[str], pod_options: Sequence[Mapping[str, Any]]) -> list[str]:
    """Upstream's mergeDNSOptions: NAME[:VALUE] options keyed by name, the pod's replacing the base's."""
    merged: dict[str, str] = {}
    for text in base:
        name, _, value = text.partition(":")
        merged[name] = value
    for option in pod_options:
        given = option.get("value")
        merged[str(option.get("name", ""))] = "" if given is None else str(given)
    return [f"{name}:{value}" if value else name for name, value in merged.items() if name]


def fit_searches(searches: Sequence[str]) -> tuple[list[str], list[str]]:
    """Upstream's formDNSSearchFitsLimits: (the search line kept, warnings)."""
    kept = list(searches[:MAX_SEARCH_PATHS])
    exceeded = len(searches) > MAX_SEARCH_PATHS
    fitting = [s for s in kept if len(s) <= MAX_SEARCH_PATH_CHARS]
    exceeded |= len(fitting) != len(kept)
    while fitting and len(" ".join(fitting)) > MAX_SEARCH_LIST_CHARS:
        fitting.pop()  # cut from the end, as upstream does
        exceeded = True
    warnings = [f"Search Line limits were exceeded, some search paths have been omitted, the applied search line "
                f"is: {' '.join(fitting)}"] if exceeded else []
    return fitting, warnings


def fit_nameservers(nameservers: Sequence[str]) -> tuple[list[str], list[str]]:
    """Upstream's formDNSNameserversFitsLimits."""
    if len(nameservers) <= MAX_NAMESERVERS:
        return list(nameservers), []
    kept = list(nameservers[:MAX_NAMESERVERS])
    return kept, [f"Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver "
                  f"line is: {' '.join(kept)}"]


def pod_dns_type(spec: Mapping[str, Any]) -> str:
    """`cluster`, `host` or `none` (upstream's getPodDNSType); ValueError for a policy Kubernetes does not have."""
    policy = spec.get("dnsPolicy") or "ClusterFirst"  # the apiserver's default
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy == "ClusterFirst":
        return "host" if spec.get("hostNetwork") else "cluster"
    if policy == "Default":
        return "host"
    raise ValueError(f"spec.dnsPolicy {policy!r}: use one of {', '.join(POLICIES)}")


def pod_dns_config(pod: Mapping[str, Any], *, cluster_dns: Sequence[str], cluster_domain: str,
                   host_resolv_conf: str | None) -> PodDNS:
    """The resolv.conf settings of POD. HOST_RESOLV_CONF is the node's resolv.conf text (the kubelet's
    --resolv-conf), or None when it has none."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    kind = pod_dns_type(spec)
    warnings: list[str] = []
    host = parse_resolv_conf(host_resolv_conf) if host_resolv_conf is not None else None
    if kind == "cluster" and not cluster_dns:
        warnings.append("kubelet does not have ClusterDNS IP configured and cannot create Pod using "
                        f'"{spec.get("dnsPolicy") or "ClusterFirst"}" policy. Falling back to "Default" policy.')
        kind = "host"
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if kind == "cluster":
        nameservers = list(cluster_dns)
        host_searches = list(host.searches) if host else []
        if cluster_domain:
            namespace = meta.get("namespace") or "default"
            searches = _unique([f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain,
                                *host_searches])
        else:
            searches = host_searches
        options = list(DEFAULT_OPTIONS)
    elif kind == "host":
        if host is None:
            nameservers, searches = ["127.0.0.1"], ["."]  # upstream: "use the nameserver on the local machine"
        else:
            nameservers, searches, options = list(host.nameservers), list(host.searches), list(host.options)
    config = spec.get("dnsConfig")
    if config:
        nameservers = _unique([*nameservers, *(str(s) for s in config.get("nameservers") or [])])
        searches = _unique([*searches, *(str(s) for s in config.get("searches") or [])])
        options = merge_options(options, config.get("options") or [])
    nameservers, dropped = fit_nameservers(nameservers)
    searches, cut = fit_searches(searches)
    return PodDNS(tuple(nameservers), tuple(searches), tuple(options), tuple(warnings + dropped + cut))
