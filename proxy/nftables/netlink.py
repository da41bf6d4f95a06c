"""Set and map elements straight into nf_tables over NETLINK_NETFILTER: batches of NEWSETELEM messages.

Why not `nft -f`: at 10k Services x 5 endpoints, nft 1.0.6 spends ~0.45 s of a full sync parsing and
evaluating the 50k elements of the backends map in userspace; the kernel takes a fraction of that. The
elements are fixed-size records, so this module packs them with a few precomputed byte strings per set
and hands them to the kernel in one batch (all or nothing, like one `nft -f`), or, for
sets nothing refers to yet, in several batches sent while the next is encoded. Tables, chains, rules and
set declarations stay with nft: only elements go this way. pyroute2's generic message classes build every
attribute as an object; 80k fixed-size records are simpler as precomputed bytes (pyroute2 was not
measured at this scale), hence this small raw-socket module.

The layout is what nft sends (checked byte for byte against `strace` of nft 1.0.6 in tests/unit): every
component of a concatenated key sits in its own 32-bit register, so `meta l4proto` is one byte plus
three of padding and `th dport` two bytes (network order) plus two; `numgen` is a host-order u32. Only
what kernel 6.1 already had is used: NFT_MSG_NEWSETELEM, an NFT_MSG_GETSET dump, batch begin/end,
NETLINK_CAP_ACK / EXT_ACK.

    ElementCodec.for_spec(spec)      the codec of a set declaration ("type ..." / "typeof ..."), or None
    NetlinkElements(netns=...)       the seam: load(family, table, {set: (codec, elements)}),
                                     list_sets(family, table) -> {name: "set" | "map"} (a GETSET dump:
                                     milliseconds, where `nft list sets` fetches every element, 0.5 s)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import queue
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from firewall.errors import NftError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWSET = (NFNL_SUBSYS_NFTABLES << 8) | 9
NFT_MSG_GETSET = (NFNL_SUBSYS_NFTABLES << 8) | 10
NFT_MSG_NEWSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | 12
NLM_F_DUMP = 0x300
NFTA_SET_TABLE = 1
NFTA_SET_NAME = 2
NFTA_SET_FLAGS = 3
NFT_SET_MAP = 0x8
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLMSGERR_ATTR_MSG = 1
NLM_F_ACK_TLVS = 0x200
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000

NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_DATA_VALUE = 1
NFTA_DATA_VERDICT = 2
NFTA_VERDICT_CODE = 1
NFTA_VERDICT_CHAIN = 2

FAMILIES = {"ip": socket.AF_INET, "ip6": socket.AF_INET6, "inet": 1}  # NFPROTO_INET = 1
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}
# Verdict codes (linux/netfilter/nf_tables.h, netfilter.h): NFT_JUMP -3, NFT_GOTO -4, NF_DROP 0, NF_ACCEPT 1.
VERDICTS = {"drop": 0, "accept": 1, "jump": -3, "goto": -4}

# What one element batch message may hold: a nested attribute's length is 16 bits (64 KiB), so the
# element list of one message stays well below that.
MESSAGE_BYTES = 60_000
# Messages per batch when a load need not be atomic (about 11k backends each).
BATCH_MESSAGES = 8

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLA = struct.Struct("=HH")


def _nla(kind: int, payload: bytes, *, nested: bool = False) -> bytes:
    pad = -len(payload) % 4
    return _NLA.pack(4 + len(payload), kind | (NLA_F_NESTED if nested else 0)) + payload + b"\0" * pad


def _strz(text: str) -> bytes:
    return text.encode() + b"\0"


# -- components ------------------------------------------------------------------------------------

def _ipv4(text: str) -> bytes:
    return socket.inet_aton(text)


def _proto(text: str) -> bytes:
    number = PROTOCOLS.get(text)
    return bytes((number if number is not None else int(text), 0, 0, 0))


def _service(text: str) -> bytes:
    return struct.pack("!H2x", int(text))


def _u32_host(text: str) -> bytes:
    return struct.pack("=I", int(text))


Component = Callable[[str], bytes]  # text of one part of an element -> its register's bytes

# A declaration's component -> (bytes in its register, encoder). `type` names and `typeof` expressions.
_TYPES: dict[str, Component] = {"ipv4_addr": _ipv4, "inet_proto": _proto, "inet_service": _service}
_TYPEOF: dict[str, Component] = {"ip daddr": _ipv4, "ip saddr": _ipv4, "meta l4proto": _proto, "th dport": _service,
           "th sport": _service, "tcp dport": _service, "udp dport": _service}


def _component(word: str, typeof: bool) -> Component | None:
    if not typeof:
        return _TYPES.get(word)
    if word.startswith("numgen ") or word.startswith("jhash "):
        return _u32_host
    return _TYPEOF.get(word)


def _components(text: str, typeof: bool) -> tuple[Component, ...] | None:
    found = [_component(w.strip(), typeof) for w in text.split(" . ")]
    return None if not found or None in found else tuple(c for c in found if c is not None)


@dataclass(frozen=True)
class ElementCodec:
    """How the elements of one set or map are written: key components, and data components or verdicts."""

    key: tuple[Component, ...]
    data: tuple[Component, ...] | None  # None: a set; () : a verdict map

    @classmethod
    def for_spec(cls, spec: str) -> ElementCodec | None:
        """The codec of a declaration as the layout writes it ("type a . b : verdict ;", "typeof x . y : z ;"),
        or None when it holds something this module does not encode (intervals, timeouts, other types)."""
        clauses = [c.strip() for c in spec.split(";") if c.strip()]
        if len(clauses) != 1:  # flags (interval, timeout, dynamic) or more: not ours to write
            return None
        head, _, rest = clauses[0].partition(" ")
        if head not in ("type", "typeof"):
            return None
        key_text, colon, data_text = rest.partition(":")
        typeof = head == "typeof"
        key = _components(key_text, typeof)
        if key is None:
            return None
        if not colon:
            return cls(key, None)
        if data_text.strip() == "verdict":
            return cls(key, ())
        data = _components(data_text, typeof)
        if data is None:
            return None
        return cls(key, data)

    def encode(self, key: str, value: str | None) -> bytes:
        """One NFTA_LIST_ELEM attribute: the element KEY (with its VALUE, for a map) as nft writes it."""
        return _Encoder(self).element(key, value)

    @staticmethod
    def _pack(components: tuple[Component, ...], text: str) -> bytes:
        parts = text.split(" . ")
        if len(parts) != len(components):
            raise ValueError(f"element {text!r} has {len(parts)} parts, its set {len(components)}")
        return b"".join(enc(p) for enc, p in zip(components, parts, strict=True))

    def data_attr(self, value: str) -> bytes:
        """The NFTA_SET_ELEM_DATA payload of VALUE: data components, or a verdict."""
        if self.data:
            return _nla(NFTA_DATA_VALUE, self._pack(self.data, value))
        verb, _, chain = value.partition(" ")
        code = VERDICTS.get(verb)
        if code is None or bool(chain) != (verb in ("jump", "goto")):
            raise ValueError(f"verdict {value!r} is not one this module writes")
        body = _nla(NFTA_VERDICT_CODE, struct.pack("!i", code))
        if chain:
            body += _nla(NFTA_VERDICT_CHAIN, _strz(chain))
        return _nla(NFTA_DATA_VERDICT, body, nested=True)


class _Encoder:
    """Element attributes from precomputed pieces. Every component fills one 32-bit register, so a
    set's key (and a map's data) has one length and the attribute headers around them are constant;
    of 50k backends only the addresses and ports differ, and their encodings repeat."""

    def __init__(self, codec: ElementCodec) -> None:
        self.codec = codec
        self._key: list[tuple[Component, dict[str, bytes]]] = [(enc, {}) for enc in codec.key]
        self._data: list[tuple[Component, dict[str, bytes]]] = [(enc, {}) for enc in codec.data or ()]
        key_len = 4 * len(codec.key)
        key_attr = 4 + 4 + key_len
        self._data_head = b""
        self._verdicts: dict[str, bytes] = {}
        if codec.data:
            data_len = 4 * len(codec.data)
            self._data_head = (_NLA.pack(4 + 4 + data_len, NFTA_SET_ELEM_DATA | NLA_F_NESTED)
                               + _NLA.pack(4 + data_len, NFTA_DATA_VALUE))
            total = key_attr + 8 + data_len
        else:
            total = key_attr
        self._key_head = (_NLA.pack(key_attr, NFTA_SET_ELEM_KEY | NLA_F_NESTED)
                          + _NLA.pack(4 + key_len, NFTA_DATA_VALUE))
        self._head = _NLA.pack(4 + total, NFTA_LIST_ELEM | NLA_F_NESTED) + self._key_head

    @staticmethod
    def _raw(components: list[tuple[Component, dict[str, bytes]]], text: str) -> bytes:
        pieces = text.split(" . ")
        if len(pieces) != len(components):
            raise ValueError(f"element {text!r} has {len(pieces)} parts, its set {len(components)}")
        raw = b""
        for (enc, cache), piece in zip(components, pieces):  # noqa: B905 (lengths checked above)
            hit = cache.get(piece)
            if hit is None:
                hit = cache[piece] = enc(piece)
            raw += hit
        return raw

    def element(self, key: str, value: str | None) -> bytes:
        raw = self._raw(self._key, key)
        if self.codec.data is None:
            return self._head + raw
        if value is None:
            raise ValueError(f"map element {key!r} has no value")
        if self._data:
            return self._head + raw + self._data_head + self._raw(self._data, value)
        verdict = self._verdicts.get(value)
        if verdict is None:
            verdict = self._verdicts[value] = _nla(NFTA_SET_ELEM_DATA, self.codec.data_attr(value), nested=True)
        head = _NLA.pack(4 + len(self._key_head) + len(raw) + len(verdict), NFTA_LIST_ELEM | NLA_F_NESTED)
        return head + self._key_head + raw + verdict


# -- messages --------------------------------------------------------------------------------------

def _message(kind: int, seq: int, family: int, payload: bytes, *, flags: int = 0, res_id: int = 0) -> bytes:
    header = _NLMSGHDR.pack(16 + 4 + len(payload), kind, NLM_F_REQUEST | flags, seq, 0)
    return header + _NFGENMSG.pack(family, 0, res_id) + payload


def element_messages(family: str, table: str, set_name: str, codec: ElementCodec,
                     elements: Mapping[str, str | None], *, first_seq: int) -> list[bytes]:
    """NEWSETELEM messages adding ELEMENTS to SET_NAME, each holding as many as fit (MESSAGE_BYTES)."""
    return list(iter_element_messages(family, table, set_name, codec, elements, first_seq=first_seq))


def iter_element_messages(family: str, table: str, set_name: str, codec: ElementCodec,
                          elements: Mapping[str, str | None], *, first_seq: int) -> Iterator[bytes]:
    """element_messages(), one message at a time (so that sending can start before encoding ends)."""
    fam = FAMILIES[family]
    head = _nla(NFTA_SET_ELEM_LIST_TABLE, _strz(table)) + _nla(NFTA_SET_ELEM_LIST_SET, _strz(set_name))
    encoder = _Encoder(codec)
    chunk: list[bytes] = []
    size = 0
    seq = first_seq

    def message() -> bytes:
        body = head + _NLA.pack(4 + size, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED) + b"".join(chunk)
        return _message(NFT_MSG_NEWSETELEM, seq, fam, body, flags=NLM_F_CREATE | NLM_F_ACK)

    for key, value in elements.items():
        attr = encoder.element(key, value)
        if size + len(attr) > MESSAGE_BYTES:
            yield message()
            seq += 1
            chunk.clear()
            size = 0
        chunk.append(attr)
        size += len(attr)
    if chunk:
        yield message()


def batch(messages: list[bytes], *, first_seq: int) -> bytes:
    """MESSAGES between batch begin and end: the kernel applies all of them or none."""
    res = NFNL_SUBSYS_NFTABLES
    begin = _message(NFNL_MSG_BATCH_BEGIN, first_seq - 1, socket.AF_UNSPEC, b"", res_id=res)
    end = _message(NFNL_MSG_BATCH_END, first_seq + len(messages), socket.AF_UNSPEC, b"", res_id=res)
    return b"".join([begin, *messages, end])


def parse_acks(data: bytes) -> Iterator[tuple[int, int, str]]:
    """(sequence number, errno or 0, the kernel's extended-ack message) of each NLMSG_ERROR in DATA."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < 16:
            break
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, offset + 16)
            text = ""
            if flags & NLM_F_ACK_TLVS:
                # After the error code and the echoed header (NETLINK_CAP_ACK: header only) come TLVs.
                tlv = offset + 16 + 4 + 16
                while tlv + 4 <= offset + length:
                    tlen, ttype = _NLA.unpack_from(data, tlv)
                    if tlen < 4:
                        break
                    if ttype == NLMSGERR_ATTR_MSG:
                        text = data[tlv + 4:tlv + tlen].rstrip(b"\0").decode(errors="replace")
                    tlv += (tlen + 3) & ~3
            yield seq, -error, text
        offset += (length + 3) & ~3


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def parse_sets(data: bytes, table: str) -> tuple[dict[str, str], bool, int]:
    """From GETSET dump replies: TABLE's sets (name -> "set" | "map"), whether the dump is done, and the
    error the kernel answered with (0: none)."""
    sets: dict[str, str] = {}
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < 16:
            break
        if kind == NLMSG_DONE:
            return sets, True, 0
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, offset + 16)
            if error:
                return sets, True, -error
        elif kind == NFT_MSG_NEWSET:
            attrs = _attrs(data, offset + 20, offset + length)
            if attrs.get(NFTA_SET_TABLE, b"").rstrip(b"\0").decode() == table:
                flags = struct.unpack("!I", attrs[NFTA_SET_FLAGS])[0] if NFTA_SET_FLAGS in attrs else 0
                sets[attrs[NFTA_SET_NAME].rstrip(b"\0").decode()] = "map" if flags & NFT_SET_MAP else "set"
        offset += (length + 3) & ~3
    return sets, False, 0


# -- the seam --------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def _in_netns(name: str | None) -> Iterator[None]:
    """This thread inside network namespace NAME (`ip netns` name) while the block runs; a socket made
    there stays there."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NftError(f"cannot enter netns {name}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the proxy's own netns")
    finally:
        os.close(own)


class NetlinkElements:
    """The real element loader: one NETLINK_NETFILTER socket per load, in the runner's namespace."""

    def __init__(self, *, netns: str | None = None, timeout: float = 60.0) -> None:
        self.netns = netns
        self.timeout = timeout
        self._seq = 1

    def load(self, family: str, table: str, sets: Mapping[str, tuple[ElementCodec, Mapping[str, str | None]]],
             *, atomic: bool = True, prepare: Callable[[], None] | None = None) -> int:
        """Add every element of SETS (name -> (codec, elements)) to table FAMILY TABLE. ATOMIC: in one batch,
        all or none; otherwise in batches of BATCH_MESSAGES, each sent (by a second thread: the kernel's
        work on one overlaps the encoding of the next) as soon as it is encoded, which is right for sets
        nothing refers to yet. PREPARE runs in that thread before the first batch goes out (the `nft -f`
        declaring the sets, while the first batch is encoded). Returns the bytes sent; raises NftError
        naming the set and the kernel's reason (or what PREPARE raised)."""
        sender = _Sender(self, family, table, prepare)
        sender.start()
        pending: list[bytes] = []
        owner: dict[int, str] = {}
        try:
            for name, (codec, elements) in sets.items():
                for msg in iter_element_messages(family, table, name, codec, elements, first_seq=0):
                    self._seq += 1
                    owner[self._seq] = name
                    pending.append(msg[:8] + struct.pack("=I", self._seq) + msg[12:])
                    if not atomic and len(pending) >= BATCH_MESSAGES:
                        sender.put(pending, owner)
                        pending, owner = [], {}
                        self._seq += 2  # the batch's end, and the next one's begin, have numbers too
            if pending:
                sender.put(pending, owner)
        finally:
            sender.finish()
        self._seq += 2
        return sender.sent

    def list_sets(self, family: str, table: str) -> dict[str, str] | None:
        """The sets and maps of table FAMILY TABLE (name -> "set" | "map"), or None when there is no table."""
        request = _message(NFT_MSG_GETSET, self._seq, FAMILIES[family], _nla(NFTA_SET_TABLE, _strz(table)),
                           flags=NLM_F_DUMP)
        self._seq += 1
        found: dict[str, str] = {}
        try:
            sock = self._socket()
        except OSError as err:
            raise NftError(f"netlink: listing sets of {family} {table}: {err}") from err
        with sock:
            sock.sendto(request, (0, 0))
            while True:
                try:
                    reply = sock.recv(1 << 20)
                except TimeoutError:
                    raise NftError(f"netlink: no answer within {self.timeout} s listing sets of {family} "
                                   f"{table}") from None
                sets, done, error = parse_sets(reply, table)
                found.update(sets)
                if error == errno.ENOENT:
                    return None
                if error:
                    raise NftError(f"netlink: listing sets of {family} {table}: {os.strerror(error)}")
                if done:
                    return found

    def _socket(self) -> socket.socket:
        with _in_netns(self.netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # acks carry the header, not our 60 KB back
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # and errors the kernel's reason
            sock.bind((0, 0))
            sock.settimeout(self.timeout)
        except BaseException:
            sock.close()
            raise
        return sock


class _Sender(threading.Thread):
    """Sends batches and reads their acknowledgements, on its own socket, while the caller encodes more."""

    def __init__(self, loader: NetlinkElements, family: str, table: str,
                 prepare: Callable[[], None] | None) -> None:
        super().__init__(name="nft-netlink", daemon=True)
        self.loader = loader
        self.prepare = prepare
        self.family = family
        self.table = table
        self.sent = 0
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self._queue: queue.Queue[tuple[list[bytes], dict[int, str]] | None] = queue.Queue()

    def put(self, messages: list[bytes], owner: dict[int, str]) -> None:
        self._queue.put((messages, owner))

    def finish(self) -> None:
        self._queue.put(None)
        self.join()
        if self.failure is not None:
            raise self.failure
        if self.errors:
            netns = self.loader.netns
            where = f" in netns {netns}" if netns else ""
            raise NftError(f"loading elements into {self.family} {self.table}{where} failed: "
                           f"{'; '.join(self.errors)}")

    def run(self) -> None:
        try:
            if self.prepare is not None:
                self.prepare()
            with self.loader._socket() as sock:
                while (item := self._queue.get()) is not None:
                    if self.errors:
                        continue  # one batch refused: the load fails, the rest need not be sent
                    messages, owner = item
                    first = min(owner)
                    data = batch(messages, first_seq=first)
                    # One batch is one sendmsg: the socket's send buffer must hold it all.
                    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, len(data) + 65536)
                    self._exchange(sock, data, owner)
                    self.sent += len(data)
        except OSError as err:  # no socket, no privilege, a refused send: the load fails as nft's would
            self.failure = NftError(f"netlink: loading elements into {self.family} {self.table}: {err}")
            while self._queue.get() is not None:
                pass
        except BaseException as err:  # handed to the caller by finish()
            self.failure = err
            while self._queue.get() is not None:
                pass

    def _exchange(self, sock: socket.socket, data: bytes, owner: dict[int, str]) -> None:
        timeout = self.loader.timeout
        sock.settimeout(timeout)
        sock.sendto(data, (0, 0))
        expected = set(owner)
        while expected:
            try:
                reply = sock.recv(1 << 16)
            except TimeoutError:
                if self.errors:  # the refused batch is answered; acks for the rest are not owed
                    return
                raise NftError(f"netlink: no answer within {timeout} s loading {self.family} {self.table}") from None
            for seq, code, text in parse_acks(reply):
                expected.discard(seq)
                if code:
                    what = f"set {owner[seq]}" if seq in owner else "the batch"
                    reason = f": {text}" if text else ""
                    self.errors.append(f"{what}: {os.strerror(code)}{reason}")
                    sock.settimeout(0.5)
