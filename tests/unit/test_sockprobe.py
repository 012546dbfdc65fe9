"""Kernel-socket probes on loopback: open, refused, and ICMP errors read from
the socket's error queue (no root, no lab)."""
from __future__ import annotations

import socket
import threading

from probes.reach import Probe, run_probes


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tcp_open_and_refused():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    closed = free_port()
    try:
        open_, refused = run_probes([Probe("127.0.0.1", listener.getsockname()[1]),
                                     Probe("127.0.0.1", closed)], timeout=2)
    finally:
        listener.close()
    assert (open_.outcome, open_.responder, open_.source) == ("open", "127.0.0.1", "127.0.0.1")
    assert open_.rtt_ms is not None and open_.rtt_ms >= 0
    assert (refused.outcome, refused.icmp_type) == ("refused", None)


def test_udp_reply_is_open_and_closed_port_is_an_icmp_rejection():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(3)

    def echo():
        data, peer = server.recvfrom(100)
        server.sendto(b"svclab echo " + data, peer)
    thread = threading.Thread(target=echo)
    thread.start()
    closed = free_port(socket.SOCK_DGRAM)
    try:
        answered, rejected = run_probes([Probe("127.0.0.1", server.getsockname()[1], "udp"),
                                         Probe("127.0.0.1", closed, "udp")], timeout=2)
    finally:
        thread.join(5)
        server.close()
    assert answered.outcome == "open" and answered.reply.startswith("svclab echo svclab-probe")
    assert (rejected.outcome, rejected.icmp_type, rejected.icmp_code, rejected.responder) == (
        "rejected", 3, 3, "127.0.0.1")
