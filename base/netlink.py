"""Netlink's wire format, shared by our two netlink clients.

Messages are a header (nlmsghdr) and a family's own header, then
attributes (type-length-value, each padded to 4 bytes, nested ones flagged).
The kernel answers a request that asks for an acknowledgement with an
NLMSG_ERROR whose errno is 0 on success; with NETLINK_EXT_ACK it adds the
reason as text.  Pure encoding and decoding only: the sockets live with
their users (agents/proxy/nfnetlink.py for nf_tables, topo/rtnetlink.py for
links, addresses and routes).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
NLMSGERR_ATTR_MSG = 1
HDR = struct.Struct("=IHHII")          # nlmsghdr: len type flags seq pid
ATTR = struct.Struct("=HH")            # nlattr: len type
PAD = (b"", b"\0\0\0", b"\0\0", b"\0")   # after n bytes: PAD[n & 3]


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    return ATTR.pack(4 + len(payload), kind) + payload + PAD[len(payload) & 3]


def nested(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def strz(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


@dataclass(frozen=True)
class Received:
    """One netlink message as read: header fields and what follows it."""

    type: int
    flags: int
    seq: int
    payload: bytes


def decode_messages(data: bytes) -> list[Received]:
    out, at = [], 0
    while at + HDR.size <= len(data):
        length, kind, flags, seq, _ = HDR.unpack_from(data, at)
        if length < HDR.size or at + length > len(data):
            raise ValueError(f"truncated netlink message at byte {at}")
        out.append(Received(kind, flags, seq,
                            data[at + HDR.size:at + length]))
        at += (length + 3) & ~3
    return out


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type (flags masked) -> payload."""
    out, at = {}, 0
    while at + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, at)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[at + 4:at + length]
        at += (length + 3) & ~3
    return out


def error_of(msg: Received) -> tuple[int, int, str]:
    """An NLMSG_ERROR's (errno, seq it answers, the kernel's text)."""
    code, = struct.unpack_from("=i", msg.payload)
    seq = HDR.unpack_from(msg.payload, 4)[3]
    text = ""
    if msg.flags & 0x200:                         # NLM_F_ACK_TLVS
        inner_len = HDR.size if msg.flags & 0x100 else \
            HDR.unpack_from(msg.payload, 4)[0]    # NLM_F_CAPPED
        tlvs = parse_attrs(msg.payload[4 + ((inner_len + 3) & ~3):])
        text = tlvs.get(NLMSGERR_ATTR_MSG, b"").rstrip(b"\0").decode()
    return -code, seq, text
