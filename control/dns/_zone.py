"""The cluster zone: every record of the Kubernetes DNS-Based Service Discovery specification (1.1.0),
computed from Service, EndpointSlice and Pod dicts as a pure function.

    zone = build_zone(services, endpoint_slices, pods, config=ZoneConfig())
    zone.rrsets(name) -> {rdtype: [rdata]} | None     exact records at NAME
    zone.exists(name) -> bool                         a record owner or an ancestor of one (NODATA, not NXDOMAIN)
    zone.pod_address(name) -> ip | None               `a-b-c-d.<ns>.pod.<zone>` (CoreDNS's `pods` modes)

Names are dnspython Names: they compare and hash case-insensitively, as the specification requires.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.PTR
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV

JsonObject = Mapping[str, Any]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PodMode = Literal["disabled", "insecure", "verified"]
#: A name as the zone's tables key it: its labels, lower-cased. dnspython's Names compare and hash in
#: Python, and the zone is rebuilt whole on every change; tuples of bytes do both in C.
Key = tuple[bytes, ...]


def key_of(name: dns.name.Name) -> Key:
    return tuple(label.lower() for label in name.labels)

IN = dns.rdataclass.IN
A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME,
                                          dns.rdatatype.NS, dns.rdatatype.PTR, dns.rdatatype.SOA,
                                          dns.rdatatype.SRV, dns.rdatatype.TXT)

#: The schema version the specification asks `dns-version.<zone>` to carry.
SCHEMA_VERSION = "1.1.0"
#: The label of an EndpointSlice naming its Service (discovery.k8s.io/v1).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: The zones answered besides the cluster domain (kind's Corefile: `kubernetes cluster.local in-addr.arpa ip6.arpa`).
REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))
# CoreDNS's SRV priority and weight: one target set, equal shares (plugin/kubernetes/kubernetes.go).
SRV_PRIORITY = 0
SRV_WEIGHT_TOTAL = 100


@dataclass(frozen=True)
class ZoneConfig:
    """domain: the cluster domain; ttl: of every answer and of negative answers (CoreDNS's `ttl`, default
    5 s); pods: CoreDNS's `pods` option, `verified` answering only for IPs of existing pods in that
    namespace, `insecure` for any well-formed dashed IP (kind's Corefile), `disabled` for none."""

    domain: str = "cluster.local"
    ttl: int = 5
    pods: PodMode = "verified"

    def __post_init__(self) -> None:
        if not 0 <= self.ttl <= 3600:
            raise ValueError(f"dns ttl {self.ttl}: must be between 0 and 3600 seconds (CoreDNS's range)")
        if self.pods not in ("disabled", "insecure", "verified"):
            raise ValueError(f"dns pods mode {self.pods!r}: use disabled, insecure or verified")
        dns.name.from_text(self.domain)  # raises dns.exception.SyntaxError for an unusable domain

    @functools.cached_property
    def origin(self) -> dns.name.Name:
        # Cached: every query asks for it, and parsing the domain each time was a third of an answer.
        return dns.name.from_text(self.domain)


@dataclass
class Zone:
    """An immutable-by-convention snapshot: built whole, swapped whole, never edited in place."""

    config: ZoneConfig
    serial: int = 1
    records: dict[Key, dict[int, list[dns.rdata.Rdata]]] = field(default_factory=dict)
    existing: set[Key] = field(default_factory=set)
    pod_ips: dict[str, set[IPAddress]] = field(default_factory=dict)
    # Every negative answer carries the SOA: made once per apex of this snapshot, not per query.
    _soas: dict[dns.name.Name, dns.rdata.Rdata] = field(default_factory=dict, repr=False, compare=False)

    @property
    def origin(self) -> dns.name.Name:
        return self.config.origin

    def authority_for(self, name: dns.name.Name) -> dns.name.Name | None:
        """The zone apex NAME falls in (cluster domain or a reverse zone), or None: not ours."""
        for apex in (self.origin, *REVERSE_ZONES):
            if name.is_subdomain(apex):
                return apex
        return None

    def soa(self, apex: dns.name.Name) -> dns.rdata.Rdata:
        # CoreDNS's SOA: ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>.
        made = self._soas.get(apex)
        if made is None:
            mname, rname = dns.name.from_text("ns.dns", self.origin), dns.name.from_text("hostmaster", apex)
            made = self._soas[apex] = rdata(SOA, f"{mname} {rname} {self.serial} 7200 1800 86400 {self.config.ttl}")
        return made

    def rrsets(self, name: dns.name.Name) -> dict[int, list[dns.rdata.Rdata]] | None:
        return self.records.get(key_of(name))

    def exists(self, name: dns.name.Name) -> bool:
        return key_of(name) in self.existing or self.pod_address(name) is not None

    def pod_address(self, name: dns.name.Name) -> IPAddress | None:
        """The address of `<dashed-ip>.<ns>.pod.<zone>`, per the pods mode."""
        if self.config.pods == "disabled" or len(name) != len(self.origin) + 3:
            return None
        if not name.is_subdomain(self.origin) or name.labels[2].lower() != b"pod":
            return None
        address = parse_dashed_ip(name.labels[0].decode("ascii", "replace"))
        namespace = name.labels[1].decode("ascii", "replace").lower()
        if address is None:
            return None
        if self.config.pods == "insecure" or address in self.pod_ips.get(namespace, set()):
            return address
        return None


def rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    """One IN record from its zone-file text (names in TEXT are absolute): for the few fixed records."""
    return dns.rdata.from_text(IN, rdtype, text)


# The per-object records are made with dnspython's constructors (untyped, hence the ignores): parsing
# zone-file text for each costs ten times more, and the zone is rebuilt on every change.
def address_rdata(ip: IPAddress) -> dns.rdata.Rdata:
    if ip.version == 4:
        return dns.rdtypes.IN.A.A(IN, A, str(ip))  # type: ignore[no-untyped-call]
    return dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, str(ip))  # type: ignore[no-untyped-call]


def name_rdata(rdtype: dns.rdatatype.RdataType, target: dns.name.Name) -> dns.rdata.Rdata:
    kind = dns.rdtypes.ANY.PTR.PTR if rdtype == PTR else dns.rdtypes.ANY.CNAME.CNAME
    return kind(IN, rdtype, target)


def srv_rdata(weight: int, port: int, target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.IN.SRV.SRV(IN, SRV, SRV_PRIORITY, weight, port, target)  # type: ignore[no-untyped-call]


def reverse_name(ip: IPAddress) -> dns.name.Name:
    """d.c.b.a.in-addr.arpa. (or the nibbles under ip6.arpa.), without parsing text."""
    return dns.name.Name((*(label.encode() for label in ip.reverse_pointer.split(".")), b""))


def parse_dashed_ip(label: str) -> IPAddress | None:
    """`10-244-1-5` or `fd00--5`: CoreDNS's rule, three dashes is IPv4, anything else is IPv6."""
    text = label.replace("-", ".") if label.count("-") == 3 else label.replace("-", ":")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def dashed(address: IPAddress) -> str:
    """The endpoint name CoreDNS gives an address without a hostname (plugin/kubernetes endpointHostname)."""
    return str(address).replace(".", "-").replace(":", "-")


class _Builder:
    def __init__(self, config: ZoneConfig, serial: int):
        self.zone = Zone(config=config, serial=serial)
        self.origin = config.origin

    def name(self, *labels: str, under: dns.name.Name | None = None) -> dns.name.Name | None:
        """<labels>.<under, default the zone>, or None when a label cannot be a DNS name (too long, empty,
        not ASCII): such an object is skipped rather than failing the whole zone."""
        try:
            encoded = tuple(label.encode("ascii") for label in labels)
            if any(b"." in label or b"\\" in label for label in encoded):
                return dns.name.from_text(".".join(labels), under or self.origin)
            return dns.name.Name(encoded + (under or self.origin).labels)
        except (dns.exception.DNSException, UnicodeError):
            return None

    def add(self, owner: dns.name.Name, rdata: dns.rdata.Rdata, apex: dns.name.Name | None = None) -> None:
        rdatas = self.zone.records.setdefault(key_of(owner), {}).setdefault(rdata.rdtype, [])
        if rdata not in rdatas:
            rdatas.append(rdata)
        self.mark(owner, apex)

    def mark(self, owner: dns.name.Name, apex: dns.name.Name | None = None) -> None:
        """OWNER and every ancestor up to its apex exist: queries for them are NODATA, not NXDOMAIN. APEX,
        when the caller knows it, saves looking it up."""
        apex = apex or self.zone.authority_for(owner)
        if apex is None:
            return
        top, key, existing = key_of(apex), key_of(owner), self.zone.existing
        while key != top and key not in existing:
            existing.add(key)
            key = key[1:]
        existing.add(top)

    def address(self, owner: dns.name.Name, ip: IPAddress) -> None:
        self.add(owner, address_rdata(ip), self.origin)

    def pointer(self, ip: IPAddress, target: dns.name.Name) -> None:
        self.add(reverse_name(ip), name_rdata(PTR, target), REVERSE_ZONES[0] if ip.version == 4 else REVERSE_ZONES[1])

    def service(self, svc: JsonObject, slices: list[JsonObject]) -> None:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        name, namespace = str(meta.get("name", "")), str(meta.get("namespace", "default"))
        owner = self.name(name, namespace, "svc")
        if owner is None:
            return
        if spec.get("type") == "ExternalName":
            self.external_name(owner, str(spec.get("externalName") or ""))
            return
        cluster_ips = _cluster_ips(spec)
        if cluster_ips:
            self.cluster_ip_service(owner, spec, cluster_ips)
        else:
            self.headless_service(owner, spec, slices)

    def external_name(self, owner: dns.name.Name, external: str) -> None:
        try:
            target = dns.name.from_text(external)
        except dns.exception.DNSException:
            self.mark(owner, self.origin)  # the Service exists; its target is unusable, so it has no records
            return
        self.add(owner, name_rdata(CNAME, target), self.origin)

    def cluster_ip_service(self, owner: dns.name.Name, spec: JsonObject, cluster_ips: list[IPAddress]) -> None:
        self.mark(owner, self.origin)
        for ip in cluster_ips:
            self.address(owner, ip)
            self.pointer(ip, owner)
        for port in spec.get("ports") or []:
            srv = self.srv_owner(owner, port)
            if srv is not None:
                self.add(srv, srv_rdata(SRV_WEIGHT_TOTAL, int(port.get("port", 0)), owner), self.origin)

    def srv_owner(self, service: dns.name.Name, port: JsonObject) -> dns.name.Name | None:
        """_<port>._<proto>.<service>: only named ports have one."""
        port_name = str(port.get("name") or "")
        if not port_name:
            return None
        proto = str(port.get("protocol") or "TCP").lower()
        return self.name(f"_{port_name}", f"_{proto}", under=service)

    def headless_service(self, owner: dns.name.Name, spec: JsonObject, slices: list[JsonObject]) -> None:
        self.mark(owner, self.origin)  # no ready endpoints: an empty answer, not NXDOMAIN (the specification)
        for port in spec.get("ports") or []:
            srv = self.srv_owner(owner, port)
            if srv is not None:
                self.mark(srv, self.origin)
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        targets: list[tuple[dns.name.Name, list[JsonObject]]] = []
        for endpoint_slice in slices:
            ports = list(endpoint_slice.get("ports") or [])
            for endpoint in endpoint_slice.get("endpoints") or []:
                if not (publish_not_ready or _ready(endpoint)):
                    continue
                for target in self.endpoint(owner, endpoint):
                    targets.append((target, ports))
        # CoreDNS shares the weight equally among a name's targets.
        weight = max(1, SRV_WEIGHT_TOTAL // max(1, len(targets)))
        for target, ports in targets:
            for port in ports:
                srv = self.srv_owner(owner, port)
                if srv is not None and port.get("port") is not None:
                    self.add(srv, srv_rdata(weight, int(port["port"]), target), self.origin)

    def endpoint(self, service: dns.name.Name, endpoint: JsonObject) -> list[dns.name.Name]:
        """An endpoint's A/AAAA at the Service and at <hostname>.<service>, and its PTR; the hostname names."""
        hostname = str(endpoint.get("hostname") or "")
        names: list[dns.name.Name] = []
        for text in endpoint.get("addresses") or []:
            try:
                ip = ipaddress.ip_address(str(text))
            except ValueError:
                continue  # an FQDN-type slice: no address records
            self.address(service, ip)
            host = self.name(hostname or dashed(ip), under=service)
            if host is None:
                continue
            self.address(host, ip)
            self.pointer(ip, host)
            if host not in names:
                names.append(host)
        return names

    def pod(self, pod: JsonObject) -> None:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            return
        namespace = str(meta.get("namespace", "default")).lower()
        texts = [str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")] or \
            ([str(status["podIP"])] if status.get("podIP") else [])
        for text in texts:
            try:
                self.zone.pod_ips.setdefault(namespace, set()).add(ipaddress.ip_address(text))
            except ValueError:
                continue

    def fixed(self) -> None:
        """The zone apex's NS (and its glue, the kube-dns Service as CoreDNS gives it) and dns-version."""
        ns_name = dns.name.from_text("ns.dns", self.origin)
        self.add(self.origin, rdata(NS, ns_name.to_text()))
        kube_dns = self.name("kube-dns", "kube-system", "svc")
        for rdtype in (A, AAAA):
            for glue in (self.zone.rrsets(kube_dns) or {}).get(rdtype, []) if kube_dns else []:
                self.add(ns_name, glue)
        self.add(dns.name.from_text("dns-version", self.origin), rdata(TXT, f'"{SCHEMA_VERSION}"'))
        self.mark(dns.name.from_text("svc", self.origin))
        if self.zone.config.pods != "disabled":
            self.mark(dns.name.from_text("pod", self.origin))
            for namespace in self.zone.pod_ips:
                pod_ns = self.name(namespace, "pod")
                if pod_ns is not None:
                    self.mark(pod_ns)


def _cluster_ips(spec: JsonObject) -> list[IPAddress]:
    texts = [str(t) for t in spec.get("clusterIPs") or []] or \
        ([str(spec["clusterIP"])] if spec.get("clusterIP") else [])
    found: list[IPAddress] = []
    for text in texts:
        if text == "None":
            return []
        try:
            found.append(ipaddress.ip_address(text))
        except ValueError:
            continue
    return found


def _ready(endpoint: JsonObject) -> bool:
    # discovery.k8s.io/v1: a nil ready condition is to be read as ready.
    return (endpoint.get("conditions") or {}).get("ready") is not False


#: What a Service adds to the zone, by itself: its records and the names it makes exist.
Fragment = tuple[dict[Key, dict[int, list[dns.rdata.Rdata]]], frozenset[Key]]
#: A Service's fragment is a pure function of its object and its EndpointSlices; their resourceVersions
#: (with the names) identify those, so an unchanged Service's fragment is reused across rebuilds.
FragmentKey = tuple[str, str, str, tuple[tuple[str, str], ...]]


def _fragment_key(svc: JsonObject, slices: list[JsonObject]) -> FragmentKey | None:
    meta = svc.get("metadata") or {}
    versions = [((s.get("metadata") or {}).get("name"), (s.get("metadata") or {}).get("resourceVersion"))
                for s in slices]
    if not meta.get("resourceVersion") or not all(name and rv for name, rv in versions):
        return None  # objects that did not come from an API: nothing identifies them, build afresh
    return (str(meta.get("namespace", "default")), str(meta.get("name", "")), str(meta["resourceVersion"]),
            tuple(sorted((str(n), str(rv)) for n, rv in versions)))


def _service_fragment(config: ZoneConfig, svc: JsonObject, slices: list[JsonObject]) -> Fragment:
    builder = _Builder(config, 0)
    builder.service(svc, slices)
    return builder.zone.records, frozenset(builder.zone.existing)


def _merge(zone: Zone, fragment: Fragment) -> None:
    records, existing = fragment
    for key, by_type in records.items():
        merged = zone.records.get(key)
        if merged is None:
            zone.records[key] = {rdtype: list(rdatas) for rdtype, rdatas in by_type.items()}  # never share lists
            continue
        for rdtype, rdatas in by_type.items():  # e.g. one pod's PTR from two headless Services
            into = merged.setdefault(rdtype, [])
            into.extend(r for r in rdatas if r not in into)
    zone.existing |= existing


def build_zone(services: Iterable[JsonObject], endpoint_slices: Iterable[JsonObject],
               pods: Iterable[JsonObject] = (), *, config: ZoneConfig | None = None, serial: int = 1,
               fragments: dict[FragmentKey, Fragment] | None = None) -> Zone:
    """The zone for these objects. Objects whose names cannot be DNS names are left out, never fatal.

    FRAGMENTS, if given, is a cache of each Service's records from the previous build (objects with
    resourceVersions only): unchanged Services are merged from it instead of built again, and it is left
    holding exactly this build's. At 1,000 Services that turns a 50 ms rebuild into a few."""
    config = config or ZoneConfig()
    builder = _Builder(config, serial)
    slices_by_service: dict[tuple[str, str], list[JsonObject]] = {}
    for endpoint_slice in endpoint_slices:
        meta = endpoint_slice.get("metadata") or {}
        service_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service_name:
            key = (str(meta.get("namespace", "default")), str(service_name))
            slices_by_service.setdefault(key, []).append(endpoint_slice)
    for pod in pods:
        builder.pod(pod)
    used: dict[FragmentKey, Fragment] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        slices = slices_by_service.get((str(meta.get("namespace", "default")), str(meta.get("name", ""))), [])
        if fragments is None:
            builder.service(svc, slices)
            continue
        fragment_key = _fragment_key(svc, slices)
        fragment = fragments.get(fragment_key) if fragment_key is not None else None
        if fragment is None:
            fragment = _service_fragment(config, svc, slices)
        if fragment_key is not None:
            used[fragment_key] = fragment
        _merge(builder.zone, fragment)
    if fragments is not None:
        fragments.clear()
        fragments.update(used)
    builder.fixed()
    return builder.zone
