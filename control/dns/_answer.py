"""Queries to answers, as pure functions over a Zone.

    resolve(zone, query) -> response              one parsed dns.message.Message to its answer
    answer_wire(zone, data, transport) -> Reply   raw bytes in, raw bytes out (or None: drop)

What CoreDNS's kubernetes plugin answers, as the specification and RFCs 1035, 2308 and 6891 say:

    NOERROR + records          the name has records of the type (CNAME answers any type but CNAME)
    NOERROR, empty (NODATA)    the name exists (it or a name below it has records) but not of this type;
                               the zone's SOA in the authority section (RFC 2308), e.g. AAAA of an
                               IPv4-only Service, a headless Service without ready endpoints
    NXDOMAIN                   no such name in the zone, with the SOA
    REFUSED                    a name outside the cluster domain and the reverse zones: the cluster is
                               sealed, there is no upstream to forward to; also zone transfers
    NOTIMP                     an opcode other than QUERY (parsable or not, e.g. UPDATE), or the
                               meta-types ANY, MAILA, MAILB
    FORMERR                    not exactly one question, a question of class other than IN with
                               meta-types, or a packet dnspython cannot parse (a name over 255 octets,
                               a label over 63, trailing bytes, a bad compression pointer)
    BADVERS                    EDNS version above 0
    dropped                    fewer than 12 bytes (no header to answer to), or a response (QR set)

Over UDP an answer larger than 512 bytes (or the EDNS buffer size the query offered) goes back with
no records and TC set, so the client asks again over TCP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from control.dns._zone import CNAME, IN, SRV, Zone

Transport = Literal["udp", "tcp"]

#: RFC 1035's UDP limit without EDNS.
MAX_UDP_PLAIN = 512
#: The EDNS buffer size we offer (DNS flag day 2020's 1232) and the most we ever send over UDP.
OUR_EDNS_PAYLOAD = 1232
#: A DNS message over TCP is at most 65535 bytes (its two-byte length prefix).
MAX_TCP = 65535
#: How many CNAMEs within the zone an answer follows before giving up (a loop guard).
MAX_CHAIN = 8

_NOT_IMPLEMENTED_TYPES = frozenset({dns.rdatatype.ANY, dns.rdatatype.MAILA, dns.rdatatype.MAILB})
_TRANSFER_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_NEVER_QUESTIONS = frozenset({dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY})


@dataclass(frozen=True)
class Reply:
    """What went back (for metrics and the query log): WIRE is None when the packet is dropped."""

    wire: bytes | None
    rcode: int
    qname: str = "."
    qtype: str = "-"
    qclass: str = "IN"
    query_id: int = 0
    query_size: int = 0
    do: bool = False
    bufsize: int = MAX_UDP_PLAIN
    flags: str = ""
    truncated: bool = False


def _negative(response: dns.message.Message, zone: Zone, apex: dns.name.Name, rcode: dns.rcode.Rcode) -> None:
    response.set_rcode(rcode)
    soa = zone.soa(apex)
    minimum: int = soa.minimum  # type: ignore[attr-defined]
    # RFC 2308 section 5: the negative TTL is the lesser of the SOA's TTL and its MINIMUM.
    response.authority.append(dns.rrset.from_rdata_list(apex, min(zone.config.ttl, minimum), [soa]))


def _add(section: list[dns.rrset.RRset], owner: dns.name.Name, ttl: int, rdatas: list[dns.rdata.Rdata]) -> None:
    if rdatas:
        section.append(dns.rrset.from_rdata_list(owner, ttl, rdatas))


def resolve(zone: Zone, query: dns.message.Message) -> dns.message.Message:
    """The authoritative answer to a parsed QUERY (the caller has checked opcode and question count)."""
    response = dns.message.make_response(query, our_payload=OUR_EDNS_PAYLOAD)
    response.flags &= ~dns.flags.RA  # no recursion: the cluster is sealed
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if question.rdclass != IN or qtype in _NEVER_QUESTIONS:
        response.set_rcode(dns.rcode.REFUSED if question.rdclass != IN else dns.rcode.FORMERR)
        return response
    if qtype in _NOT_IMPLEMENTED_TYPES:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    apex = zone.authority_for(qname)
    if apex is None or qtype in _TRANSFER_TYPES:
        response.set_rcode(dns.rcode.REFUSED)
        return response
    response.flags |= dns.flags.AA
    ttl = zone.config.ttl
    if qtype == dns.rdatatype.SOA and qname == apex:
        _add(response.answer, apex, ttl, [zone.soa(apex)])
        return response
    name = qname
    for _ in range(MAX_CHAIN):
        records = zone.rrsets(name)
        if records and CNAME in records and qtype != CNAME:
            _add(response.answer, name, ttl, records[CNAME])
            target = records[CNAME][0].target  # type: ignore[attr-defined]
            if zone.authority_for(target) != zone.origin:
                return response  # outside the cluster: the client's resolver takes it from here
            name = target
            continue
        if records and qtype in records:
            _add(response.answer, name, ttl, records[qtype])
            _additional(zone, response, records[qtype] if qtype == SRV else [])
            return response
        pod = zone.pod_address(name)
        if pod is not None and qtype == (dns.rdatatype.A if pod.version == 4 else dns.rdatatype.AAAA):
            _add(response.answer, name, ttl, [dns.rdata.from_text(IN, qtype, str(pod))])
            return response
        if response.answer:
            return response  # a CNAME chain ending in NODATA/NXDOMAIN keeps NOERROR and the chain
        _negative(response, zone, apex, dns.rcode.NOERROR if zone.exists(name) else dns.rcode.NXDOMAIN)
        return response
    response.set_rcode(dns.rcode.SERVFAIL)  # a CNAME loop inside the zone
    return response


def _additional(zone: Zone, response: dns.message.Message, srvs: list[dns.rdata.Rdata]) -> None:
    """The A/AAAA of SRV targets, as the specification allows and CoreDNS gives."""
    for srv in srvs:
        target = srv.target  # type: ignore[attr-defined]
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            rdatas = (zone.rrsets(target) or {}).get(rdtype, [])
            if not any(r.name == target and r.rdtype == rdtype for r in response.additional):
                _add(response.additional, target, zone.config.ttl, rdatas)


def _header_only(data: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A bare response to an unparsable query: its id, opcode and RD bit (RFC 1035 4.1.1 copies them),
    QR set, no sections."""
    query_id = int.from_bytes(data[0:2], "big")
    flags = dns.flags.QR | (int.from_bytes(data[2:4], "big") & (dns.flags.RD | 0x7800))
    flags |= rcode & 0xF
    return query_id.to_bytes(2, "big") + flags.to_bytes(2, "big") + bytes(8)


def _flag_text(flags: int) -> str:
    return ",".join(name.lower() for name in dns.flags.to_text(flags).split())


def answer_wire(zone: Zone, data: bytes, transport: Transport) -> Reply:
    """The reply to one DNS message as it came off the wire. Never raises for any input."""
    if len(data) < 12 or data[2] & 0x80:
        return Reply(None, -1, query_size=len(data))  # nothing to answer to, or a response: drop
    try:
        query = dns.message.from_wire(data)
    except dns.message.BadEDNS:
        return Reply(_header_only(data, dns.rcode.FORMERR), dns.rcode.FORMERR, query_size=len(data))
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        # An opcode we do not serve is NOTIMP even when its body does not parse as a query (an UPDATE's
        # sections are not a query's, RFC 2136 2.2): what the client asked, not how, is what we lack.
        rcode = dns.rcode.NOTIMP if (data[2] >> 3) & 0xF != dns.opcode.QUERY else dns.rcode.FORMERR
        return Reply(_header_only(data, rcode), rcode, query_id=_id(data), query_size=len(data))
    if query.opcode() != dns.opcode.QUERY:
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.NOTIMP)
        return _reply(query, response, data, transport)
    if len(query.question) != 1:
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.FORMERR)
        return _reply(query, response, data, transport)
    if query.edns > 0:
        response = dns.message.make_response(query, our_payload=OUR_EDNS_PAYLOAD)
        response.use_edns(0, 0, OUR_EDNS_PAYLOAD)
        response.set_rcode(dns.rcode.BADVERS)
        return _reply(query, response, data, transport)
    return _reply(query, resolve(zone, query), data, transport)


def _id(data: bytes) -> int:
    return int.from_bytes(data[0:2], "big")


def _limit(query: dns.message.Message, transport: Transport) -> int:
    if transport == "tcp":
        return MAX_TCP
    if query.edns < 0:
        return MAX_UDP_PLAIN
    return max(MAX_UDP_PLAIN, min(query.payload, OUR_EDNS_PAYLOAD))


def _reply(query: dns.message.Message, response: dns.message.Message, data: bytes,
           transport: Transport) -> Reply:
    limit = _limit(query, transport)
    truncated = False
    try:
        wire = response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # Too big for this transport: no records and TC, so that the client retries over TCP (RFC 2181 9).
        truncated = True
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        wire = response.to_wire(max_size=limit)
    # An RRset in the question section has no rdatas, so it is falsy: test for None, not truth.
    question = query.question[0] if len(query.question) > 0 else None
    return Reply(wire, response.rcode(),
                 qname=question.name.to_text() if question is not None else ".",
                 qtype=dns.rdatatype.to_text(question.rdtype) if question is not None else "-",
                 qclass=dns.rdataclass.to_text(question.rdclass) if question is not None else "-",
                 query_id=query.id, query_size=len(data), do=bool(query.ednsflags & dns.flags.DO),
                 bufsize=_limit(query, "udp"), flags=_flag_text(response.flags), truncated=truncated)
