"""CoreDNS's metric names and labels (plugin/metrics/vars/vars.go) and its `log` plugin's line.

    coredns_dns_requests_total{server,zone,view,proto,family,type}
    coredns_dns_responses_total{server,zone,view,rcode,plugin}
    coredns_dns_request_duration_seconds{server,zone,view,type}      histogram, CoreDNS's buckets
"""

from __future__ import annotations

import ipaddress
import logging

import dns.rcode
from prometheus_client import CollectorRegistry, Counter, Histogram

from control.dns._answer import Reply, Transport

query_log = logging.getLogger("control.dns.query")

# The server block kind's Corefile declares (`.:53`), as CoreDNS names it in its labels.
SERVER_LABEL = "dns://:53"
ZONE_LABEL = "."
# CoreDNS reports only well-known query types by name and the rest as "other" (vars.monitorType).
MONITORED_TYPES = frozenset({"A", "AAAA", "NS", "PTR", "SOA", "CNAME", "MX", "TXT", "SRV", "NAPTR", "DS",
                             "DNSKEY", "RRSIG", "NSEC", "NSEC3", "HINFO", "IXFR", "AXFR", "ANY"})
# prometheus.ExponentialBuckets(0.00025, 2, 16): 0.25 ms to about 8 s.
DURATION_BUCKETS = tuple(0.00025 * 2**i for i in range(16))


class DNSMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("coredns_dns_requests", "Counter of DNS requests made per zone, protocol and family.",
                                ["server", "zone", "view", "proto", "family", "type"], registry=self.registry)
        self.responses = Counter("coredns_dns_responses", "Counter of response status codes.",
                                 ["server", "zone", "view", "rcode", "plugin"], registry=self.registry)
        self.duration = Histogram("coredns_dns_request_duration_seconds",
                                  "Histogram of the time (in seconds) each request took per zone.",
                                  ["server", "zone", "view", "type"], buckets=DURATION_BUCKETS,
                                  registry=self.registry)

    def observe(self, reply: Reply, transport: Transport, peer: tuple[str, int], seconds: float) -> None:
        qtype = reply.qtype if reply.qtype in MONITORED_TYPES else "other"
        self.requests.labels(SERVER_LABEL, ZONE_LABEL, "", transport, _family(peer[0]), qtype).inc()
        self.duration.labels(SERVER_LABEL, ZONE_LABEL, "", qtype).observe(seconds)
        if reply.wire is not None:
            rcode = dns.rcode.to_text(dns.rcode.Rcode(reply.rcode))
            self.responses.labels(SERVER_LABEL, ZONE_LABEL, "", rcode, "kubernetes").inc()


def _family(address: str) -> str:
    """CoreDNS's family label: 1 for IPv4, 2 for IPv6."""
    try:
        return "2" if ipaddress.ip_address(address.split("%", 1)[0]).version == 6 else "1"
    except ValueError:
        return "1"


def log_line(reply: Reply, transport: Transport, peer: tuple[str, int], seconds: float) -> str:
    """CoreDNS's log plugin's common format:
    {remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}
    """
    rcode = "DROPPED" if reply.wire is None else dns.rcode.to_text(dns.rcode.Rcode(reply.rcode))
    size = len(reply.wire) if reply.wire is not None else 0
    do = "true" if reply.do else "false"
    return (f'{peer[0]}:{peer[1]} - {reply.query_id} "{reply.qtype} {reply.qclass} {reply.qname} {transport} '
            f'{reply.query_size} {do} {reply.bufsize}" {rcode} {reply.flags or "-"} {size} {seconds:.9f}s')


class Observers:
    """Metrics and the query log, called after every query."""

    def __init__(self, metrics: DNSMetrics, *, log_queries: bool = True):
        self.metrics = metrics
        self.log_queries = log_queries

    def __call__(self, reply: Reply, transport: Transport, peer: tuple[str, int], seconds: float) -> None:
        self.metrics.observe(reply, transport, peer, seconds)
        if self.log_queries:
            query_log.info("%s", log_line(reply, transport, peer, seconds))
