"""TCP and UDP probes through the kernel's own sockets, as an application sees them.

A raw-socket (scapy) receiver sees packets before netfilter undoes the
translation of traffic that was NATed on the sending host itself — a node
probing a ClusterIP gets its reply from the pod's address, and strict
matching rightly refuses it.  Kernel sockets see the reply after conntrack
has translated it back, exactly as a client program would.  IP_RECVERR puts
every ICMP error in the socket's error queue with its type, code and sender,
so a REJECT (ICMP) is told apart from a RST, and both from silence.
"""
from __future__ import annotations

import errno
import selectors
import socket
import struct
import time

SO_EE_ORIGIN_ICMP = 2
IP_RECVERR = 11
MSG_ERRQUEUE = 0x2000
# struct sock_extended_err: errno, origin, type, code, pad, info, data
_EXT_ERR = struct.Struct("=IBBBBII")


def read_icmp_error(sock: socket.socket) -> dict | None:
    """The ICMP error queued on the socket, if any: type, code, offender."""
    try:
        _, ancdata, _, _ = sock.recvmsg(1024, 1024, MSG_ERRQUEUE)
    except (BlockingIOError, OSError):
        return None
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_RECVERR and len(data) >= _EXT_ERR.size:
            _, origin, icmp_type, code, _, _, _ = _EXT_ERR.unpack_from(data)
            if origin != SO_EE_ORIGIN_ICMP:
                continue
            offender = None
            rest = data[_EXT_ERR.size:]
            if len(rest) >= 8:   # struct sockaddr_in
                offender = socket.inet_ntoa(rest[4:8])
            return {"icmp_type": icmp_type, "icmp_code": code, "responder": offender}
    return None


class _Pending:
    def __init__(self, index: int, probe, sock: socket.socket, started: float):
        self.index, self.probe, self.sock, self.started = index, probe, sock, started


def run_socket_probes(probes: list, timeout: float, payload: bytes) -> list[dict]:
    """Probe every (tcp|udp) target at once; one result dict per probe."""
    results: list[dict | None] = [None] * len(probes)
    selector = selectors.DefaultSelector()
    for index, probe in enumerate(probes):
        kind = socket.SOCK_STREAM if probe.proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.setblocking(False)
        pending = _Pending(index, probe, sock, time.monotonic())
        if probe.proto == "tcp":
            code = sock.connect_ex((probe.dst, probe.port))
            if code not in (0, errno.EINPROGRESS):
                results[index] = _failure(sock, code, pending)
                sock.close()
                continue
            selector.register(sock, selectors.EVENT_WRITE, pending)
        else:
            sock.connect((probe.dst, probe.port))
            sock.send(payload)
            selector.register(sock, selectors.EVENT_READ, pending)
    deadline = time.monotonic() + timeout
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for key, _ in selector.select(remaining):
            pending = key.data
            results[pending.index] = _finish(pending)
            selector.unregister(pending.sock)
            pending.sock.close()
    for key in list(selector.get_map().values()):
        results[key.data.index] = {"outcome": "dropped", "source": _source(key.fileobj)}
        key.fileobj.close()
    selector.close()
    return results


def _source(sock: socket.socket) -> str | None:
    try:
        address = sock.getsockname()[0]
    except OSError:
        return None
    return None if address == "0.0.0.0" else address


def _finish(pending: _Pending) -> dict:
    sock, probe = pending.sock, pending.probe
    rtt = round((time.monotonic() - pending.started) * 1000, 3)
    if probe.proto == "tcp":
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            peer = sock.getpeername()[0]
            # Close with a RST, like the scapy probe: no TIME_WAIT left behind.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return {"outcome": "open", "responder": peer, "rtt_ms": rtt, "source": _source(sock)}
        result = _failure(sock, code, pending)
        result["rtt_ms"] = rtt
        return result
    try:
        data = sock.recv(65535)
    except OSError as err:
        result = _failure(sock, err.errno, pending)
        result["rtt_ms"] = rtt
        return result
    return {"outcome": "open", "responder": sock.getpeername()[0], "rtt_ms": rtt,
            "source": _source(sock), "reply": data.decode(errors="replace")}


def _failure(sock: socket.socket, code: int, pending: _Pending) -> dict:
    source = _source(sock)
    icmp = read_icmp_error(sock)
    if icmp is not None:
        return {"outcome": "rejected", "source": source, **icmp}
    if code == errno.ECONNREFUSED:
        return {"outcome": "refused", "responder": pending.probe.dst, "source": source}
    if code == errno.ETIMEDOUT:
        return {"outcome": "dropped", "source": source}
    return {"outcome": "rejected", "responder": None, "source": source}  # local stack
