"""proxy/nftables/netlink.py: element messages byte for byte as nft 1.0.6 sends them.

The expected bytes are the NFTA_SET_ELEM_LIST_ELEMENTS attributes of `nft -f` adding one element to
each of three sets of the layout's shapes, as `strace -e sendmsg -xx` showed them (kernel 6.x, x86-64):

    add element ip x m { 10.96.0.1 . udp . 53 . 1 : 10.244.0.5 . 5353 }   typeof 4-part key : addr . port
    add element ip x v { 10.96.0.1 . tcp . 80 : goto lb-1 }                type 3-part key : verdict
    add element ip x s { 10.96.0.1 }                                       type ipv4_addr
"""

from __future__ import annotations

import socket
import struct

import pytest

from proxy.nftables import netlink
from proxy.nftables.layout import IP_BACKENDS, NODEPORT_BACKENDS, SETS
from proxy.nftables.netlink import ElementCodec

BACKENDS = "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport ;"
VMAP = "type ipv4_addr . inet_proto . inet_service : verdict ;"

# numgen's register is in host order: the capture's 01000000 on x86-64.
NFT_BACKEND = (bytes.fromhex("2c000180" "18000180" "14000100" "0a600001" "11000000" "00350000")
               + struct.pack("=I", 1) + bytes.fromhex("10000280" "0c000100" "0af40005" "14e90000"))
NFT_VERDICT = bytes.fromhex(
    "34000180" "14000180" "10000100" "0a600001" "06000000" "00500000"
    "1c000280" "18000280" "08000100" "fffffffc" "09000200" "6c622d31" "00000000")
NFT_ADDRESS = bytes.fromhex("10000180" "0c000180" "08000100" "0a600001")

def test_backends_map_element_is_nfts() -> None:
    codec = ElementCodec.for_spec(BACKENDS)
    assert codec is not None
    assert codec.encode("10.96.0.1 . udp . 53 . 1", "10.244.0.5 . 5353") == NFT_BACKEND


def test_verdict_map_element_is_nfts() -> None:
    codec = ElementCodec.for_spec(VMAP)
    assert codec is not None
    assert codec.encode("10.96.0.1 . tcp . 80", "goto lb-1") == NFT_VERDICT


def test_set_element_is_nfts() -> None:
    codec = ElementCodec.for_spec("type ipv4_addr ;")
    assert codec is not None
    assert codec.encode("10.96.0.1", None) == NFT_ADDRESS


def test_message_framing_is_nfts() -> None:
    # nft's message: table "x", set "m", (its set id, which we leave out), then the element list.
    codec = ElementCodec.for_spec("type ipv4_addr ;")
    assert codec is not None
    (msg,) = netlink.element_messages("ip", "x", "s", codec, {"10.96.0.1": None}, first_seq=7)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq, pid) == (len(msg), (10 << 8) | 12, 7, 0)
    assert flags == netlink.NLM_F_REQUEST | netlink.NLM_F_CREATE | netlink.NLM_F_ACK
    assert msg[16:20] == bytes((socket.AF_INET, 0, 0, 0))
    assert msg[20:] == bytes.fromhex("06000100" "78000000" "06000200" "73000000" "14000380") + NFT_ADDRESS


def test_batch_wraps_messages_in_begin_and_end() -> None:
    data = netlink.batch([b"m" * 20], first_seq=5)
    begin, end = data[:20], data[40:]
    assert struct.unpack_from("=IHHII", begin) == (20, 0x10, 1, 4, 0)
    assert struct.unpack_from("=IHHII", end) == (20, 0x11, 1, 6, 0)
    assert begin[16:] == end[16:] == bytes((0, 0, 0, 10))  # AF_UNSPEC, version 0, res_id nftables (be16)


def test_big_maps_are_split_below_the_attribute_length_limit() -> None:
    codec = ElementCodec.for_spec(BACKENDS)
    assert codec is not None
    elements = {f"10.96.{i // 256}.{i % 256} . tcp . 80 . {j}": f"10.244.{i // 256}.{i % 256} . 8080"
                for i in range(2000) for j in range(5)}
    msgs = netlink.element_messages("ip", "t", "m", codec, elements, first_seq=1)
    assert len(msgs) > 1
    assert [struct.unpack_from("=I", m)[0] for m in msgs] == [len(m) for m in msgs]
    assert all(len(m) < 65535 for m in msgs)
    assert sum(m.count(NFT_BACKEND[:8]) for m in msgs) == len(elements)  # every element, once


def test_codecs_of_the_layout() -> None:
    # Every static set of the layout without flags, and the backends maps, can go over netlink.
    assert ElementCodec.for_spec(f"{IP_BACKENDS} ;") is not None
    assert ElementCodec.for_spec(f"{NODEPORT_BACKENDS} ;") is not None
    for name, (_, spec) in SETS.items():
        codec = ElementCodec.for_spec(spec)
        assert (codec is None) == ("flags" in spec), name
    assert ElementCodec.for_spec("type ipv4_addr ; flags dynamic,timeout ; timeout 30s ;") is None
    assert ElementCodec.for_spec("type ether_addr ;") is None


def test_bad_elements_are_named() -> None:
    codec = ElementCodec.for_spec(VMAP)
    assert codec is not None
    with pytest.raises(ValueError, match=r"10\.96\.0\.1 \. tcp"):
        codec.encode("10.96.0.1 . tcp", "goto lb-1")
    with pytest.raises(ValueError, match=r"10\.96\.0\.1 \. tcp \. 80 \. 1"):
        codec.encode("10.96.0.1 . tcp . 80 . 1", "goto lb-1")
    with pytest.raises(ValueError, match=r"'10\.96\.0\.1 \. 80'"):
        ElementCodec.for_spec("type ipv4_addr ;").encode("10.96.0.1 . 80", None)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="verdict 'return'"):
        codec.encode("10.96.0.1 . tcp . 80", "return")


def test_acks_and_errors_are_parsed() -> None:
    def ack(seq: int, error: int, text: str = "") -> bytes:
        tlv = b""
        if text:
            raw = text.encode() + b"\0"
            tlv = struct.pack("=HH", 4 + len(raw), 1) + raw + b"\0" * (-len(raw) % 4)
        body = struct.pack("=i", error) + struct.pack("=IHHII", 16, 0, 0, seq, 0) + tlv
        return struct.pack("=IHHII", 16 + len(body), 2, 0x200 if text else 0, seq, 0) + body

    data = ack(3, 0) + ack(4, -17, "Could not process rule")
    assert list(netlink.parse_acks(data)) == [(3, 0, ""), (4, 17, "Could not process rule")]
