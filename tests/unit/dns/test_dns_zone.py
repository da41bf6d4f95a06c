"""The cluster zone and its answers, per the Kubernetes DNS-Based Service Discovery specification and
CoreDNS's kubernetes plugin: every record kind, NXDOMAIN versus NODATA, SOA in negative answers,
REFUSED outside the cluster, truncation and hostile packets."""

from __future__ import annotations

import random
import struct
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from control.dns import ZoneConfig, answer_wire, build_zone, parse_dashed_ip, resolve

Obj = dict[str, Any]


def service(name: str, namespace: str = "default", *, cluster_ip: str | None = "10.96.0.50",
            ports: list[Obj] | None = None, **spec: Any) -> Obj:
    body: Obj = {"ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
        body["clusterIPs"] = [cluster_ip] if cluster_ip != "None" else ["None"]
    return {"metadata": {"name": name, "namespace": namespace}, "spec": body}


def endpoint_slice(service_name: str, endpoints: list[Obj], namespace: str = "default", *,
                   ports: list[Obj] | None = None, address_type: str = "IPv4", suffix: str = "abc") -> Obj:
    return {"metadata": {"name": f"{service_name}-{suffix}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def endpoint(ip: str, *, ready: bool | None = True, hostname: str | None = None) -> Obj:
    found: Obj = {"addresses": [ip]}
    if ready is not None:
        found["conditions"] = {"ready": ready}
    if hostname:
        found["hostname"] = hostname
    return found


def pod(name: str, ip: str, namespace: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": namespace}, "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


KUBERNETES = service("kubernetes", cluster_ip="10.96.0.1", ports=[{"name": "https", "port": 443, "protocol": "TCP"}])
KUBE_DNS = service("kube-dns", "kube-system", cluster_ip="10.96.0.10",
                   ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                          {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                          {"name": "metrics", "port": 9153, "protocol": "TCP"}])
HEADLESS = service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])
HEADLESS_SLICE = endpoint_slice("db", [endpoint("10.244.1.5", hostname="db-0"), endpoint("10.244.2.6", hostname="db-1"),
                                       endpoint("10.244.1.7"), endpoint("10.244.2.8", ready=False)],
                                ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])
EXTERNAL = service("search", cluster_ip=None, type="ExternalName", externalName="www.example.com", ports=[])
INTERNAL_ALIAS = service("alias", cluster_ip=None, type="ExternalName",
                         externalName="kubernetes.default.svc.cluster.local", ports=[])
EMPTY_HEADLESS = service("nobody", cluster_ip="None")
OTHER_NS = service("echo", "team-a", cluster_ip="10.96.7.7")

ZONE = build_zone([KUBERNETES, KUBE_DNS, HEADLESS, EXTERNAL, INTERNAL_ALIAS, EMPTY_HEADLESS, OTHER_NS],
                  [HEADLESS_SLICE], [pod("web", "10.244.1.9"), pod("db-0", "10.244.1.5")])


def ask(name: str, rdtype: str = "A", zone: Any = ZONE) -> dns.message.Message:
    return resolve(zone, dns.message.make_query(name, rdtype))


def answers(response: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def test_cluster_ip_service_has_an_a_record_with_the_configured_ttl() -> None:
    response = ask("kubernetes.default.svc.cluster.local")
    assert response.rcode() == dns.rcode.NOERROR
    assert answers(response) == ["10.96.0.1"]
    assert response.answer[0].ttl == 5
    assert response.flags & dns.flags.AA


def test_names_compare_case_insensitively_and_keep_the_question_case() -> None:
    response = ask("KUBERNETES.Default.SVC.cluster.LOCAL")
    assert answers(response) == ["10.96.0.1"]
    assert response.question[0].name.to_text() == "KUBERNETES.Default.SVC.cluster.LOCAL."


def test_ttl_is_configurable() -> None:
    zone = build_zone([KUBERNETES], [], config=ZoneConfig(ttl=30))
    assert ask("kubernetes.default.svc.cluster.local", zone=zone).answer[0].ttl == 30


def test_a_service_in_another_namespace() -> None:
    assert answers(ask("echo.team-a.svc.cluster.local")) == ["10.96.7.7"]
    assert ask("echo.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_headless_service_answers_every_ready_endpoint_and_not_the_unready() -> None:
    assert answers(ask("db.default.svc.cluster.local")) == ["10.244.1.5", "10.244.1.7", "10.244.2.6"]


def test_headless_endpoint_with_a_nil_ready_condition_counts_as_ready() -> None:
    zone = build_zone([HEADLESS], [endpoint_slice("db", [endpoint("10.244.3.3", ready=None)])])
    assert answers(ask("db.default.svc.cluster.local", zone=zone)) == ["10.244.3.3"]


def test_publish_not_ready_addresses_includes_unready_endpoints() -> None:
    svc = service("db", cluster_ip="None", publishNotReadyAddresses=True)
    zone = build_zone([svc], [endpoint_slice("db", [endpoint("10.244.3.3", ready=False)])])
    assert answers(ask("db.default.svc.cluster.local", zone=zone)) == ["10.244.3.3"]


def test_endpoint_hostnames_resolve_and_unnamed_endpoints_get_their_dashed_ip() -> None:
    assert answers(ask("db-0.db.default.svc.cluster.local")) == ["10.244.1.5"]
    assert answers(ask("db-1.db.default.svc.cluster.local")) == ["10.244.2.6"]
    assert answers(ask("10-244-1-7.db.default.svc.cluster.local")) == ["10.244.1.7"]
    assert ask("10-244-2-8.db.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN  # not ready


def test_headless_service_without_ready_endpoints_is_nodata_not_nxdomain() -> None:
    response = ask("nobody.default.svc.cluster.local")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_srv_of_a_named_port_targets_the_service_for_a_cluster_ip_service() -> None:
    response = ask("_https._tcp.kubernetes.default.svc.cluster.local", "SRV")
    assert answers(response) == ["0 100 443 kubernetes.default.svc.cluster.local."]
    assert [rd.to_text() for rrset in response.additional for rd in rrset] == ["10.96.0.1"]


def test_srv_protocol_label_follows_the_port_protocol() -> None:
    assert answers(ask("_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")) == [
        "0 100 53 kube-dns.kube-system.svc.cluster.local."]
    assert answers(ask("_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local", "SRV")) == [
        "0 100 53 kube-dns.kube-system.svc.cluster.local."]
    assert ask("_dns._tcp.kube-dns.kube-system.svc.cluster.local", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_headless_srv_has_one_record_per_ready_endpoint_targeting_its_hostname() -> None:
    response = ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    targets = sorted(rd.target.to_text() for rrset in response.answer for rd in rrset)
    assert targets == ["10-244-1-7.db.default.svc.cluster.local.", "db-0.db.default.svc.cluster.local.",
                       "db-1.db.default.svc.cluster.local."]
    assert {rd.port for rrset in response.answer for rd in rrset} == {5432}
    assert len([rd for rrset in response.additional for rd in rrset]) == 3


def test_unnamed_ports_have_no_srv_record() -> None:
    zone = build_zone([service("web", ports=[{"port": 80, "protocol": "TCP"}])], [])
    assert ask("_http._tcp.web.default.svc.cluster.local", "SRV", zone=zone).rcode() == dns.rcode.NXDOMAIN


def test_ptr_for_a_cluster_ip_and_for_headless_endpoints() -> None:
    assert answers(ask("1.0.96.10.in-addr.arpa", "PTR")) == ["kubernetes.default.svc.cluster.local."]
    assert answers(ask(dns.reversename.from_address("10.244.1.5").to_text(), "PTR")) == [
        "db-0.db.default.svc.cluster.local."]
    assert answers(ask(dns.reversename.from_address("10.244.1.7").to_text(), "PTR")) == [
        "10-244-1-7.db.default.svc.cluster.local."]


def test_ptr_for_an_unknown_address_is_nxdomain_with_the_reverse_zone_soa() -> None:
    response = ask("9.9.9.9.in-addr.arpa", "PTR")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.authority[0].name.to_text() == "in-addr.arpa."


def test_external_name_is_a_cname_for_any_type_and_is_not_followed_outside() -> None:
    for rdtype in ("A", "AAAA", "CNAME"):
        response = ask("search.default.svc.cluster.local", rdtype)
        assert response.rcode() == dns.rcode.NOERROR
        assert answers(response) == ["www.example.com."]


def test_external_name_into_the_cluster_is_followed() -> None:
    response = ask("alias.default.svc.cluster.local")
    assert answers(response) == ["10.96.0.1", "kubernetes.default.svc.cluster.local."]


def test_aaaa_of_an_ipv4_only_service_is_nodata_with_the_soa() -> None:
    response = ask("kubernetes.default.svc.cluster.local", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    soa = response.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "cluster.local."
    assert soa[0].mname.to_text() == "ns.dns.cluster.local."
    assert soa.ttl == 5


def test_dual_stack_service_answers_aaaa() -> None:
    svc = service("dual")
    svc["spec"]["clusterIPs"] = ["10.96.0.60", "fd00:10:96::60"]
    zone = build_zone([svc], [])
    assert answers(ask("dual.default.svc.cluster.local", "AAAA", zone=zone)) == ["fd00:10:96::60"]
    assert answers(ask(dns.reversename.from_address("fd00:10:96::60").to_text(), "PTR", zone=zone)) == [
        "dual.default.svc.cluster.local."]


def test_missing_service_is_nxdomain_with_the_soa() -> None:
    response = ask("missing.default.svc.cluster.local")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.authority[0].rdtype == dns.rdatatype.SOA
    assert response.flags & dns.flags.AA


@pytest.mark.parametrize("name", ["cluster.local", "svc.cluster.local", "default.svc.cluster.local",
                                  "_tcp.kubernetes.default.svc.cluster.local", "pod.cluster.local"])
def test_names_above_records_exist_and_answer_nodata(name: str) -> None:
    response = ask(name)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []


def test_a_namespace_without_services_is_nxdomain() -> None:
    assert ask("nowhere.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_zone_apex_soa_ns_and_dns_version() -> None:
    assert ask("cluster.local", "SOA").answer[0].rdtype == dns.rdatatype.SOA
    assert answers(ask("cluster.local", "NS")) == ["ns.dns.cluster.local."]
    assert answers(ask("ns.dns.cluster.local")) == ["10.96.0.10"]
    assert answers(ask("dns-version.cluster.local", "TXT")) == ['"1.1.0"']


def test_verified_pod_records_answer_only_existing_pods_in_that_namespace() -> None:
    assert answers(ask("10-244-1-9.default.pod.cluster.local")) == ["10.244.1.9"]
    assert ask("10-244-1-9.team-a.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask("10-244-9-9.default.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask("10-244-1-9.default.pod.cluster.local", "AAAA").rcode() == dns.rcode.NOERROR


def test_insecure_pod_mode_answers_any_dashed_ip_and_disabled_none() -> None:
    insecure = build_zone([], [], config=ZoneConfig(pods="insecure"))
    assert answers(ask("1-2-3-4.anywhere.pod.cluster.local", zone=insecure)) == ["1.2.3.4"]
    assert ask("not-an-ip.anywhere.pod.cluster.local", zone=insecure).rcode() == dns.rcode.NXDOMAIN
    disabled = build_zone([], [], [pod("web", "10.244.1.9")], config=ZoneConfig(pods="disabled"))
    assert ask("10-244-1-9.default.pod.cluster.local", zone=disabled).rcode() == dns.rcode.NXDOMAIN


def test_parse_dashed_ip_follows_coredns() -> None:
    assert str(parse_dashed_ip("10-244-1-5")) == "10.244.1.5"
    assert str(parse_dashed_ip("fd00--5")) == "fd00::5"
    assert parse_dashed_ip("1-2-3") is None
    assert parse_dashed_ip("300-1-1-1") is None


def test_custom_cluster_domain() -> None:
    zone = build_zone([KUBERNETES], [], config=ZoneConfig(domain="corp.example"))
    assert answers(ask("kubernetes.default.svc.corp.example", zone=zone)) == ["10.96.0.1"]
    assert ask("kubernetes.default.svc.cluster.local", zone=zone).rcode() == dns.rcode.REFUSED


def test_bad_config_is_refused_with_the_option_named() -> None:
    with pytest.raises(ValueError, match="ttl"):
        ZoneConfig(ttl=-1)
    with pytest.raises(ValueError, match="pods"):
        ZoneConfig(pods="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["example.com", "www.google.com", "local", "."])
def test_names_outside_the_cluster_are_refused(name: str) -> None:
    response = ask(name)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.RA


def test_unusable_objects_are_left_out_not_fatal() -> None:
    bad = [service("x" * 70), service("odd", cluster_ip=None, type="ExternalName", externalName="a..b", ports=[]),
           service("noport", ports=[{"name": "y" * 70, "port": 1}])]
    zone = build_zone([*bad, KUBERNETES], [endpoint_slice("db", [endpoint("not-an-ip")])])
    assert answers(ask("kubernetes.default.svc.cluster.local", zone=zone)) == ["10.96.0.1"]
    assert ask("odd.default.svc.cluster.local", zone=zone).rcode() == dns.rcode.NOERROR


def test_an_external_name_loop_inside_the_zone_is_servfail_not_a_hang() -> None:
    one = service("one", cluster_ip=None, type="ExternalName", externalName="two.default.svc.cluster.local", ports=[])
    two = service("two", cluster_ip=None, type="ExternalName", externalName="one.default.svc.cluster.local", ports=[])
    assert ask("one.default.svc.cluster.local", zone=build_zone([one, two], [])).rcode() == dns.rcode.SERVFAIL


# -- the wire ----------------------------------------------------------------------------------------------


def wire_ask(name: str, rdtype: str = "A", transport: str = "udp", **kwargs: Any) -> dns.message.Message:
    reply = answer_wire(ZONE, dns.message.make_query(name, rdtype, **kwargs).to_wire(), transport)  # type: ignore[arg-type]
    assert reply.wire is not None
    return dns.message.from_wire(reply.wire)


def many_endpoints_zone(count: int) -> Any:
    svc = service("big", cluster_ip="None")
    return build_zone([svc], [endpoint_slice("big", [endpoint(f"10.244.{i // 250}.{i % 250 + 1}")
                                                     for i in range(count)])])


def test_udp_answer_over_512_bytes_without_edns_is_truncated_and_tcp_is_whole() -> None:
    zone = many_endpoints_zone(60)  # 60 A records: ~1 KB
    query = dns.message.make_query("big.default.svc.cluster.local", "A").to_wire()
    udp = answer_wire(zone, query, "udp")
    assert udp.wire is not None and len(udp.wire) <= 512 and udp.truncated
    parsed = dns.message.from_wire(udp.wire)
    assert parsed.flags & dns.flags.TC and parsed.answer == []
    tcp = answer_wire(zone, query, "tcp")
    assert tcp.wire is not None and not tcp.truncated
    assert len(dns.message.from_wire(tcp.wire).answer[0]) == 60


def test_edns_buffer_size_raises_the_udp_limit() -> None:
    zone = many_endpoints_zone(60)
    query = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=0, payload=4096).to_wire()
    reply = answer_wire(zone, query, "udp")
    assert reply.wire is not None and not reply.truncated and 512 < len(reply.wire) <= 1232
    assert dns.message.from_wire(reply.wire).edns == 0


def test_edns_version_above_zero_is_badvers() -> None:
    response = wire_ask("kubernetes.default.svc.cluster.local", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS


def test_a_packet_shorter_than_a_header_or_a_response_is_dropped() -> None:
    assert answer_wire(ZONE, b"\x12\x34\x01", "udp").wire is None
    response = dns.message.make_response(dns.message.make_query("kubernetes.default.svc.cluster.local", "A"))
    assert answer_wire(ZONE, response.to_wire(), "udp").wire is None


def raw_query(labels: list[bytes], qtype: int = 1, qdcount: int = 1, query_id: int = 0xBEEF) -> bytes:
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    return struct.pack("!HHHHHH", query_id, 0x0100, qdcount, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)


def test_a_300_character_name_is_formerr_with_the_query_id() -> None:
    data = raw_query([b"a" * 60] * 5)  # 305 octets: over RFC 1035's 255
    reply = answer_wire(ZONE, data, "udp")
    assert reply.wire is not None
    assert reply.wire[:2] == b"\xbe\xef"
    assert reply.rcode == dns.rcode.FORMERR
    assert dns.message.from_wire(reply.wire).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("data", [
    raw_query([b"a" * 64]),                                        # a label over 63 octets
    raw_query([b"kubernetes"])[:-3],                               # cut inside the question
    raw_query([b"kubernetes"]) + b"junk",                          # trailing bytes
    struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # a pointer to itself
    b"\x00\x07\x01\x00" + b"\xff" * 40,                            # noise after a query header
])
def test_malformed_packets_are_formerr_never_an_exception(data: bytes) -> None:
    reply = answer_wire(ZONE, data, "udp")
    assert reply.rcode == dns.rcode.FORMERR
    assert reply.wire is not None and reply.wire[:2] == data[:2]


def test_random_bytes_never_raise() -> None:
    rng = random.Random(13)
    seed = dns.message.make_query("_pg._tcp.db.default.svc.cluster.local", "SRV", use_edns=0).to_wire()
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        reply = answer_wire(ZONE, bytes(data[:rng.randint(0, len(data))]), rng.choice(["udp", "tcp"]))
        assert reply.wire is None or len(reply.wire) >= 12


def test_two_questions_are_formerr() -> None:
    data = raw_query([b"kubernetes", b"default", b"svc", b"cluster", b"local"], qdcount=2)
    data += data[12:]
    assert answer_wire(ZONE, data, "udp").rcode == dns.rcode.FORMERR


def test_other_opcodes_are_notimp() -> None:
    query = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = answer_wire(ZONE, query.to_wire(), "udp")
    assert reply.rcode == dns.rcode.NOTIMP


def test_any_is_notimp_and_transfers_are_refused() -> None:
    assert wire_ask("kubernetes.default.svc.cluster.local", "ANY").rcode() == dns.rcode.NOTIMP
    assert wire_ask("cluster.local", "AXFR", "tcp").rcode() == dns.rcode.REFUSED


def test_unknown_types_are_nodata_for_existing_names_and_nxdomain_for_missing() -> None:
    data = raw_query([b"kubernetes", b"default", b"svc", b"cluster", b"local"], qtype=65280)
    assert dns.message.from_wire(answer_wire(ZONE, data, "udp").wire or b"").rcode() == dns.rcode.NOERROR
    data = raw_query([b"nope", b"default", b"svc", b"cluster", b"local"], qtype=65280)
    assert answer_wire(ZONE, data, "udp").rcode == dns.rcode.NXDOMAIN


def test_other_classes_are_refused() -> None:
    response = wire_ask("version.bind", "TXT", rdclass="CH")
    assert response.rcode() == dns.rcode.REFUSED


def test_reply_carries_what_the_query_log_needs() -> None:
    reply = answer_wire(ZONE, dns.message.make_query("kubernetes.default.svc.cluster.local", "A").to_wire(), "udp")
    assert (reply.qname, reply.qtype, reply.qclass, reply.rcode) == (
        "kubernetes.default.svc.cluster.local.", "A", "IN", dns.rcode.NOERROR)
    assert "aa" in reply.flags.split(",") and "qr" in reply.flags.split(",")
