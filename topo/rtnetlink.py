"""A pod's `ip` lines as rtnetlink requests of our own, without an `ip` process.

Every pod runs two short `ip -batch` scripts: its veth, loopback, address
and routes inside the pod, and the veth's up and /32 route on the node.
Spawning `ip` from the lab daemon (a big, many-threaded process) cost more
of the daemon's interpreter than anything else a pod does.  This module
recognises exactly the lines topo/plan.py writes for pods --

    link add dev A type veth peer name B netns PID
    link set dev X up
    addr add A.B.C.D/N dev X
    route add D[/N] dev X [scope link]
    route add default via G dev X

-- and sends each as one request on a NETLINK_ROUTE socket made in the
calling thread (so in that thread's network namespace), waiting for the
kernel's acknowledgement before the next, as `ip -batch` does.  The
messages carry what iproute2 puts in them for the same line (a route's
table main, protocol boot, scope link without a gateway).  `requests`
returns None for any other line: the caller then runs the whole script
through `ip -batch`, so the plan's lines stay the one description (dry
runs print them) and the kernel side stays what `ip` would make.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from base.errors import CommandError
from base.netlink import (
    HDR,
    NETLINK_EXT_ACK,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    SOL_NETLINK,
    attr,
    decode_messages,
    error_of,
    strz,
)

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_PID = 3, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
IFF_UP = 0x1
TIMEOUT = 15.0
_IFINFO = struct.Struct("=BxHiII")     # ifinfomsg: family type index flags change
_IFADDR = struct.Struct("=BBBBI")      # ifaddrmsg: family prefixlen flags scope index
_RTMSG = struct.Struct("=BBBBBBBBI")   # rtmsg: family dst/src len tos table proto scope type flags
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return HDR.pack(HDR.size + len(body), kind, flags, seq, 0) + body


def _index(name: str) -> int:
    """The interface's index in the calling thread's network namespace."""
    try:
        return socket.if_nametoindex(name)
    except OSError as err:
        raise OSError(err.errno or 19, f'Cannot find device "{name}"') from err


@dataclass(frozen=True)
class VethAdd:
    name: str
    peer: str
    peer_netns_pid: int
    line: str

    def encode(self, seq: int) -> bytes:
        peer = _IFINFO.pack(0, 0, 0, 0, 0) + strz(IFLA_IFNAME, self.peer) + \
            attr(IFLA_NET_NS_PID, struct.pack("=I", self.peer_netns_pid))
        info = strz(IFLA_INFO_KIND, "veth") + \
            attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
        return _message(RTM_NEWLINK, _CREATE, seq, _IFINFO.pack(0, 0, 0, 0, 0)
                        + strz(IFLA_IFNAME, self.name) + attr(IFLA_LINKINFO, info))


@dataclass(frozen=True)
class LinkUp:
    name: str
    line: str

    def encode(self, seq: int) -> bytes:
        return _message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq,
                        _IFINFO.pack(0, 0, _index(self.name), IFF_UP, IFF_UP))


@dataclass(frozen=True)
class AddrAdd:
    device: str
    address: ipaddress.IPv4Interface
    line: str

    def encode(self, seq: int) -> bytes:
        packed = self.address.ip.packed
        return _message(RTM_NEWADDR, _CREATE, seq,
                        _IFADDR.pack(socket.AF_INET, self.address.network.prefixlen, 0,
                                     RT_SCOPE_UNIVERSE, _index(self.device))
                        + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed))


@dataclass(frozen=True)
class RouteAdd:
    destination: ipaddress.IPv4Network
    device: str
    gateway: ipaddress.IPv4Address | None
    line: str

    def encode(self, seq: int) -> bytes:
        scope = RT_SCOPE_UNIVERSE if self.gateway else RT_SCOPE_LINK
        body = _RTMSG.pack(socket.AF_INET, self.destination.prefixlen, 0, 0, RT_TABLE_MAIN,
                           RTPROT_BOOT, scope, RTN_UNICAST, 0)
        if self.destination.prefixlen:
            body += attr(RTA_DST, self.destination.network_address.packed)
        if self.gateway:
            body += attr(RTA_GATEWAY, self.gateway.packed)
        return _message(RTM_NEWROUTE, _CREATE, seq, body + attr(RTA_OIF, struct.pack(
            "=I", _index(self.device))))


Request = VethAdd | LinkUp | AddrAdd | RouteAdd


def request(line: str) -> Request | None:
    """The request for one `ip` line of the forms above, or None."""
    words = line.split()
    try:
        match words:
            case ["link", "add", "dev", name, "type", "veth", "peer", "name", peer,
                  "netns", pid] if pid.isdigit():
                return VethAdd(name, peer, int(pid), line)
            case ["link", "set", "dev", name, "up"]:
                return LinkUp(name, line)
            case ["addr", "add", address, "dev", name] if "/" in address:
                return AddrAdd(name, ipaddress.IPv4Interface(address), line)
            case ["route", "add", "default", "via", gateway, "dev", name]:
                return RouteAdd(ipaddress.IPv4Network("0.0.0.0/0"), name,
                                ipaddress.IPv4Address(gateway), line)
            case ["route", "add", destination, "dev", name, *rest] \
                    if rest in ([], ["scope", "link"]) and destination != "default":
                return RouteAdd(ipaddress.IPv4Network(destination), name, None, line)
    except ValueError:
        return None
    return None


def requests(lines: list[str]) -> list[Request] | None:
    """Every line's request, or None if any line is not one of the forms above."""
    out = [request(line) for line in lines]
    return None if any(r is None for r in out) else out


def apply(batch: list[Request], where: str) -> None:
    """Send the requests in order from the calling thread's network namespace;
    the first refusal raises CommandError naming its `ip` line and the errno,
    as `ip -batch` would, and nothing after it is sent."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.bind((0, 0))
        sock.settimeout(TIMEOUT)
        for seq, req in enumerate(batch, start=1):
            try:
                sock.sendall(req.encode(seq))
                code, text = _answer(sock, seq)
            except OSError as err:
                raise CommandError(["ip", *req.line.split()], err.errno or 1, "",
                                   str(err), where) from err
            if code:
                detail = f"RTNETLINK answers: {os.strerror(code)}" + (f" ({text})" if text else "")
                raise CommandError(["ip", *req.line.split()], code, "", detail, where)


def _answer(sock: socket.socket, seq: int) -> tuple[int, str]:
    while True:
        for msg in decode_messages(sock.recv(1 << 16)):
            if msg.type == NLMSG_ERROR:
                code, answered, text = error_of(msg)
                if answered == seq:
                    return code, text
