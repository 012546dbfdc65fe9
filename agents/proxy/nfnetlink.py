"""A small nf_tables netlink client: batches of our own messages, and genid.

nft 1.0.6 lists every chain of the table before any `delete` (~100 ms at
10k services), though the kernel needs only a name to delete a chain, a
set or a map element.  This module writes those few messages itself, as
one nfnetlink batch (NFNL_MSG_BATCH_BEGIN, the messages, BATCH_END), so a
partial sync that removes things costs a round trip to the kernel; and it
asks the ruleset generation (NFT_MSG_GETGEN), which tells whether anybody
committed to nf_tables since a given moment.  Any ``Operation`` (an
object that encodes one message) goes in a batch: the deletes here, the
additions of agents.proxy.nft_wire.

Encoding is pure (``encode_batch``, ``encode_key``, ``decode_messages``;
unit-tested over their bytes); ``NfNetlink`` owns one NETLINK_NETFILTER
socket, optionally opened inside a named network namespace, and checks the
kernel's answer to every message (NLM_F_ACK, or errors and one last ack
for big batches): the first refusal raises NetlinkError naming the
message.  Every message names the table given to
the batch: nothing else can be touched.
"""

from __future__ import annotations

import bisect
import socket
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from agents.proxy.errors import NetlinkError
from base.netlink import (
    ATTR,
    HDR,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOL_NETLINK,
    Received,
    attr,
    decode_messages,
    error_of,
    nested,
    parse_attrs,
    strz,
)
from base.setns import setns

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_DELCHAIN, NFT_MSG_DELSET = 5, 11
NFT_MSG_GETCHAIN, NFT_MSG_GETSET = 4, 10
NLM_F_DUMP, NLM_F_DUMP_INTR = 0x300, 0x10
NFT_SET_ANONYMOUS, NFT_SET_MAP = 0x1, 0x8
NFT_MSG_DELSETELEM, NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 14, 15, 16
NFTA_GEN_ID = 1
NFPROTO_IPV4 = 2
_NFGEN = struct.Struct("=BBH")          # nfgenmsg: family version res_id(BE)
_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}


# ------------------------------------------------------------ operations ---

class Operation(Protocol):
    """``count`` messages of a batch, from ``seq`` on: their bytes (the
    batch decides the flags: ``last_flags`` for the last of them) and what
    each does in nft's words (for errors)."""

    count: int

    def encode(self, table: str, seq: int, family: int, flags: int,
               last_flags: int) -> bytes: ...

    def nft_command(self, table: str, index: int = 0) -> str: ...


_NFT = NFNL_SUBSYS_NFTABLES << 8


@dataclass(frozen=True)
class DeleteElements:
    """Delete these keys (nft's text form, "10.96.0.1 . tcp . 80") from a
    set or map whose key type is ``types`` ("ipv4_addr", "inet_proto",
    "inet_service" joined by " . ")."""

    container: str
    keys: tuple[str, ...]
    types: str

    count: ClassVar[int] = 1

    def encode(self, table: str, seq: int, family: int, flags: int,
               last_flags: int) -> bytes:
        elements = b"".join(    # LIST_ELEM { KEY { DATA_VALUE } }
            nested(1, nested(1, attr(1, encode_key(k, self.types))))
            for k in self.keys)
        body = strz(1, table) + strz(2, self.container) + nested(3, elements)
        return message(_NFT | NFT_MSG_DELSETELEM, last_flags, seq, family,
                       body)

    def nft_command(self, table: str, index: int = 0) -> str:
        return f"delete element {table} {self.container} {{ " \
               f"{' , '.join(self.keys)} }}"


@dataclass(frozen=True)
class DeleteChain:
    """Delete a chain with its rules: sent without NLM_F_NONREC the kernel
    deletes the rules too; nothing else may refer to the chain after the
    messages before it in the batch."""

    name: str
    count: ClassVar[int] = 1

    def encode(self, table: str, seq: int, family: int, flags: int,
               last_flags: int) -> bytes:
        return message(_NFT | NFT_MSG_DELCHAIN, last_flags, seq, family,
                       strz(1, table) + strz(3, self.name))  # TABLE, NAME

    def nft_command(self, table: str, index: int = 0) -> str:
        return f"delete chain {table} {self.name}"


@dataclass(frozen=True)
class DeleteSet:
    name: str
    count: ClassVar[int] = 1

    def encode(self, table: str, seq: int, family: int, flags: int,
               last_flags: int) -> bytes:
        return message(_NFT | NFT_MSG_DELSET, last_flags, seq, family,
                       strz(1, table) + strz(2, self.name))  # TABLE, NAME

    def nft_command(self, table: str, index: int = 0) -> str:
        return f"delete set {table} {self.name}"


# -------------------------------------------------------------- encoding ---

def message(kind: int, flags: int, seq: int, family: int, body: bytes,
            res_id: int = 0) -> bytes:
    """nlmsghdr + nfgenmsg (version 0, res_id big-endian) + attributes."""
    head = _NFGEN.pack(family, 0, socket.htons(res_id)) if res_id \
        else _NFGEN_PLAIN[family]
    return HDR.pack(20 + len(body), kind, flags, seq, 0) + head + body


_NFGEN_PLAIN = [_NFGEN.pack(family, 0, 0) for family in range(256)]  # res_id 0


def _field(kind: str, value: str) -> bytes:
    if kind == "ipv4_addr":
        return socket.inet_aton(value)
    if kind == "inet_proto":
        return bytes([_PROTOCOLS[value]]) if value in _PROTOCOLS \
            else bytes([int(value)])
    if kind == "inet_service":
        return struct.pack("!H", int(value))
    raise ValueError(f"no encoding for key type {kind!r}")


def encode_key(key: str, types: str) -> bytes:
    """A set key as the kernel holds it: a single field as is, a
    concatenation with every field padded to 4 bytes (NFT_REG32 slots)."""
    kinds = [t.strip() for t in types.split(".")]
    values = [v.strip() for v in key.split(" . ")]
    if len(kinds) != len(values):
        raise ValueError(f"key {key!r} does not match type {types!r}")
    fields = [_field(k, v) for k, v in zip(kinds, values)]
    if len(fields) == 1:
        return fields[0]
    return b"".join(f + b"\0" * (-len(f) % 4) for f in fields)


class Described(Mapping):
    """seq -> what that message of a batch does, in nft's words; the
    begin message's seq stands for the commit.  Worded only when asked
    (a full sync's batch holds a hundred thousand messages)."""

    def __init__(self, ops: Sequence[Operation], name: str,
                 first_seq: int, starts: Sequence[int], end: int) -> None:
        self._ops, self._name, self._first = ops, name, first_seq
        self._starts, self._end = starts, end

    def __getitem__(self, seq: int) -> str:
        if seq == self._first:
            return "commit"
        if not self._first < seq < self._end:
            raise KeyError(seq)
        at = bisect.bisect_right(self._starts, seq) - 1
        return self._ops[at].nft_command(self._name, seq - self._starts[at])

    def __iter__(self):
        return iter(range(self._first, self._end))

    def __len__(self) -> int:
        return self._end - self._first


def message_count(ops: Sequence[Operation]) -> int:
    return sum(op.count for op in ops)


def encode_batch(ops: Sequence[Operation], table: str, first_seq: int,
                 family: int = NFPROTO_IPV4, ack_every: bool = True
                 ) -> tuple[bytes, Described]:
    """One transaction: (bytes, seq -> what that message does).  Every
    message asks for an ack (NLM_F_ACK), or only the last one when not
    ``ack_every``: the kernel reports refusals in any case, so one ack
    after the others' errors says the batch is through."""
    parts = [message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq, 0, b"",
                     NFNL_SUBSYS_NFTABLES)]
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack_every else 0)
    seq, starts, last = first_seq + 1, [], len(ops) - 1
    for i, op in enumerate(ops):        # the last message asks for the ack
        starts.append(seq)
        parts.append(op.encode(table, seq, family, flags,
                               flags | NLM_F_ACK if i == last else flags))
        seq += op.count
    parts.append(message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, b"",
                         NFNL_SUBSYS_NFTABLES))
    name = f"{'ip' if family == NFPROTO_IPV4 else family} {table}"
    return b"".join(parts), Described(ops, name, first_seq, starts, seq)


def getgen_message(seq: int) -> bytes:
    return message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
                   NLM_F_REQUEST, seq, 0, b"")


def dumped_names(data: bytes, seq: int, get: int, table: bytes,
                 into: list[str]) -> tuple[bool, bool]:
    """Add to ``into`` the names that one read of a chain or set dump
    holds for ``table`` (its name and a NUL); (dump done, interrupted).

    In both answers (NEWCHAIN, NEWSET) attribute 1 is the table's name,
    the object's name is attribute 3 (chains) or 2 (sets), and a set's
    flags attribute 3: anonymous sets and maps are not sets here, as in
    `nft list sets`.  Read in place (a 30k-service table has 120k chains).
    """
    chains = get == NFT_MSG_GETCHAIN
    at, intr = 0, False
    while at + HDR.size <= len(data):
        length, kind, flags, got, _ = HDR.unpack_from(data, at)
        if length < HDR.size or at + length > len(data):
            raise ValueError(f"truncated netlink message at byte {at}")
        end, p = at + length, at + HDR.size + _NFGEN.size
        at += (length + 3) & ~3
        if got != seq:
            continue
        if kind == NLMSG_DONE:
            return True, intr
        if kind == NLMSG_ERROR:
            code, _, text = error_of(Received(kind, flags, got,
                                              data[end - length + 16:end]))
            raise NetlinkError(f"dump of {get}", code, text)
        intr = intr or bool(flags & NLM_F_DUMP_INTR)
        name, set_flags, mine = None, 0, False
        while p + 4 <= end:
            size, attribute = ATTR.unpack_from(data, p)
            if size < 4:
                break
            attribute &= 0x3FFF
            if attribute == 1:
                mine = data[p + 4:p + size] == table
                if not mine:
                    break
            elif attribute == 3 and not chains:
                set_flags, = struct.unpack_from("!I", data, p + 4)
            if attribute == (3 if chains else 2):
                name = data[p + 4:p + size - 1].decode()
                if chains:
                    break
            p += (size + 3) & ~3
        if mine and name is not None and not set_flags & (
                NFT_SET_ANONYMOUS | NFT_SET_MAP):
            into.append(name)
    return False, intr


def generation_of(msg: Received) -> int:
    """NFTA_GEN_ID of an NFT_MSG_NEWGEN reply."""
    attrs = parse_attrs(msg.payload[_NFGEN.size:])
    return struct.unpack("!I", attrs[NFTA_GEN_ID])[0]


# ----------------------------------------------------------------- socket ---

def _socket_in(netns: str | None) -> socket.socket:
    """A NETLINK_NETFILTER socket in the named netns (here if None); a
    socket stays in the namespace it was made in, so a short-lived thread
    enters the namespace (setns is per thread) and makes it there."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                             NETLINK_NETFILTER)
    made: list = []

    def enter() -> None:
        try:
            with open(f"/run/netns/{netns}", "rb") as ns:
                setns(ns.fileno(), "net")
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                      NETLINK_NETFILTER))
        except OSError as exc:
            made.append(exc)

    thread = threading.Thread(target=enter, name="nfnl-setns")
    thread.start()
    thread.join(10)
    if not made or isinstance(made[0], OSError):
        raise NetlinkError(f"netlink socket in netns {netns}", 0,
                           str(made[0]) if made else "setns timed out")
    return made[0]


@dataclass(frozen=True)
class Batch:
    """An encoded transaction: its bytes, seq -> what each message does,
    and the seqs whose acks say it is through."""

    data: bytes
    what: Mapping[int, str]
    waiting: frozenset[int]


class NfNetlink:
    """One nf_tables netlink socket; ``apply`` and ``generation``."""

    def __init__(self, netns: str | None = None, timeout_s: float = 30.0,
                 family: int = NFPROTO_IPV4) -> None:
        self.netns, self.timeout_s, self.family = netns, timeout_s, family
        self._sock: socket.socket | None = None
        self._seq = 1
        self.commits = 0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            try:
                sock = _socket_in(self.netns)
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
                sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
                sock.bind((0, 0))
                sock.settimeout(self.timeout_s)
            except OSError as exc:
                raise NetlinkError("open netlink socket", exc.errno or 0,
                                   str(exc)) from exc
            self._sock = sock
        else:                           # answers left by an aborted batch
            self._sock.setblocking(False)
            try:
                while self._sock.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass
            finally:
                self._sock.settimeout(self.timeout_s)
        return self._sock

    def _next_seq(self, count: int) -> int:
        first, self._seq = self._seq, (self._seq + count) & 0x7FFFFFFF or 1
        return first

    def _buffers(self, sock: socket.socket, size: int) -> None:
        for force, plain in ((32, socket.SO_SNDBUF), (33, socket.SO_RCVBUF)):
            if sock.getsockopt(socket.SOL_SOCKET, plain) < 2 * size:
                try:                    # SO_SNDBUFFORCE / SO_RCVBUFFORCE
                    sock.setsockopt(socket.SOL_SOCKET, force, 2 * size)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, plain, 2 * size)

    def prepare(self, ops: Sequence[Operation], table: str,
                ack_every: bool = True) -> Batch:
        """Encode ops as one transaction on ``table`` (sequence numbers
        reserved now), to ``send`` later, from another thread if wanted:
        a big batch's encoding holds the GIL, the kernel's work in
        ``send`` does not."""
        count = message_count(ops)
        first = self._next_seq(count + 2)
        data, what = encode_batch(ops, table, first, self.family, ack_every)
        waiting = frozenset(what) - {first} if ack_every else \
            frozenset({first + count})
        return Batch(data, what, waiting)

    def apply(self, ops: Sequence[Operation], table: str,
              ack_every: bool = True) -> None:
        """Send ops as one transaction on ``table``; raise NetlinkError
        naming the first message the kernel refused (then nothing of the
        batch is applied).  Without ``ack_every`` only the last message
        asks for an ack (big batches: one answer, not one per message)."""
        if ops:
            self.send(self.prepare(ops, table, ack_every))

    def send(self, batch: Batch) -> None:
        """Send a prepared batch and read the kernel's answers (see apply)."""
        sock = self._socket()
        self._buffers(sock, len(batch.data) + 64 * len(batch.waiting))
        waiting = set(batch.waiting)
        try:
            sock.sendall(batch.data)
            while waiting:
                for msg in decode_messages(sock.recv(1 << 20)):
                    if msg.type != NLMSG_ERROR:
                        continue
                    code, seq, text = error_of(msg)
                    if code:
                        raise NetlinkError(
                            batch.what.get(seq, f"message {seq}"), code, text)
                    waiting.discard(seq)
        except OSError as exc:
            self.close()
            raise NetlinkError(
                f"nf_tables batch of {len(batch.what) - 1} messages",
                exc.errno or 0, str(exc)) from exc
        self.commits += 1

    def names(self, kind: str, table: str) -> frozenset[str]:
        """Names of the chains (kind "chain") or sets and maps ("set") of
        ``table`` in our family: one dump (NLM_F_DUMP), read here; a dump
        interrupted by somebody's commit is read again."""
        get = NFT_MSG_GETCHAIN if kind == "chain" else NFT_MSG_GETSET
        for _ in range(5):
            names, whole = self._dump(get, table.encode() + b"\0")
            if whole:
                return names
        raise NetlinkError(f"list {kind}s", 0, "dump interrupted 5 times "
                           "by other commits")

    def _dump(self, get: int, table: bytes) -> tuple[frozenset[str], bool]:
        """(names in ``table``, dump not interrupted)."""
        sock = self._socket()
        seq = self._next_seq(1)
        names: list[str] = []
        whole = True
        try:
            sock.sendall(message((NFNL_SUBSYS_NFTABLES << 8) | get,
                                 NLM_F_REQUEST | NLM_F_DUMP, seq,
                                 self.family, b""))
            while True:
                done, intr = dumped_names(sock.recv(1 << 20), seq, get,
                                          table, names)
                whole = whole and not intr
                if done:
                    return frozenset(names), whole
        except OSError as exc:
            self.close()
            raise NetlinkError(f"dump of {get}", exc.errno or 0,
                               str(exc)) from exc

    def generation(self) -> int:
        """The ruleset generation id (NFT_MSG_GETGEN)."""
        sock = self._socket()
        seq = self._next_seq(1)
        try:
            sock.sendall(getgen_message(seq))
            while True:
                for msg in decode_messages(sock.recv(1 << 16)):
                    if msg.seq != seq:
                        continue
                    if msg.type == NLMSG_ERROR:
                        code, _, text = error_of(msg)
                        raise NetlinkError("get ruleset generation", code,
                                           text)
                    if msg.type & 0xFF == NFT_MSG_NEWGEN:
                        return generation_of(msg)
        except OSError as exc:
            self.close()
            raise NetlinkError("get ruleset generation", exc.errno or 0,
                               str(exc)) from exc


def removals_as_text(ops: Iterable[Operation], table: str) -> str:
    """The same operations as nft -f lines.  nft's `delete chain` is not
    recursive (it sets NLM_F_NONREC), so a chain is flushed first."""
    return "".join(
        (f"flush chain {table} {op.name}\n" if isinstance(op, DeleteChain)
         else "") + op.nft_command(table) + "\n" for op in ops)
