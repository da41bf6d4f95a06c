"""Cluster DNS with the behaviour of CoreDNS's `kubernetes` plugin (the Kubernetes DNS-Based Service
Discovery specification), fed by informers and served over UDP and TCP.

Built on dnspython rather than dnslib: dnspython is typed (it ships `py.typed`, so mypy strict checks
our use of it), actively maintained, parses every wire quirk we must survive into specific exceptions
(name too long, bad pointer, trailing junk, bad EDNS), and gives us Names that compare
case-insensitively as the specification asks. dnslib is smaller but untyped and laxer on malformed input.

    zone = build_zone(services, endpoint_slices, pods, config=ZoneConfig(domain="cluster.local", ttl=5))
    reply = answer_wire(zone, packet, "udp")      # pure: bytes in, bytes (or None: drop) out
    server = DNSServer(lambda: zone); await server.start("127.0.0.1", 5353)   # UDP + TCP
    pod_dns_config(pod, cluster_dns=["10.96.0.10"], cluster_domain="cluster.local", host_resolv_conf=None)
        -> a pod's resolv.conf by dnsPolicy, as upstream's kubelet (not yet written into pods)

Errors: bad configuration is ValueError (naming the option); a query never raises, whatever its bytes.
Overload: when UDP queries come faster than they are answered, each source keeps a max-min fair share
and the surplus of the heaviest is dropped (logged), so one pod's flood does not starve the others.
"""

from __future__ import annotations

from control.dns._answer import MAX_UDP_PLAIN, OUR_EDNS_PAYLOAD, Reply, answer_wire, resolve
from control.dns._manifests import COREDNS_IMAGE, cluster_dns_objects, dns_service_ip
from control.dns._resolvconf import (
    HostDNS,
    PodDNS,
    fit_nameservers,
    fit_searches,
    merge_options,
    parse_resolv_conf,
    pod_dns_config,
)
from control.dns._server import DNSServer, Observer
from control.dns._zone import SCHEMA_VERSION, Zone, ZoneConfig, build_zone, dashed, parse_dashed_ip

__all__ = [
    "COREDNS_IMAGE",
    "MAX_UDP_PLAIN",
    "OUR_EDNS_PAYLOAD",
    "SCHEMA_VERSION",
    "DNSServer",
    "HostDNS",
    "Observer",
    "PodDNS",
    "Reply",
    "Zone",
    "ZoneConfig",
    "answer_wire",
    "build_zone",
    "cluster_dns_objects",
    "dashed",
    "dns_service_ip",
    "fit_nameservers",
    "fit_searches",
    "merge_options",
    "parse_dashed_ip",
    "parse_resolv_conf",
    "pod_dns_config",
    "resolve",
]
