"""Malformed and hostile traffic never takes the DNS server down; others keep getting answers."""
import random
import socket
import struct
import threading
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from agents.dns import DnsServer, ZoneHolder

SERVICES = [{"metadata": {"name": "web", "namespace": "default"},
             "spec": {"clusterIP": "10.96.5.5", "ports": [{"name": "http", "port": 80}]}}]
WEB = "web.default.svc.cluster.local."
FORMERR, NOTIMP = 1, 4


@pytest.fixture(scope="module")
def server():
    with DnsServer("127.0.0.1", 0, ZoneHolder(services=SERVICES), tcp_idle_timeout=0.5,
                   tcp_read_timeout=0.5) as running:
        yield running
        assert running.metrics.internal_errors == 0


def header(ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def question(name=b"\x03web\x07default\x03svc\x07cluster\x05local\x00", qtype=1):
    return name + struct.pack("!HH", qtype, 1)


def udp_exchange(server, data, timeout=0.5):
    """The reply to `data`, or None when the server sends nothing back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", server.port))
        sock.send(data)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def assert_still_answers(server):
    for send in (dns.query.udp, dns.query.tcp):
        response = send(dns.message.make_query(WEB, "A"), "127.0.0.1", port=server.port, timeout=5)
        assert [item.to_text() for rrset in response.answer for item in rrset] == ["10.96.5.5"]


def rcode_and_id(reply):
    ident, flags = struct.unpack("!HH", reply[:4])
    return flags & 0xF, ident, bool(flags & 0x8000)


@pytest.mark.parametrize("packet", [
    pytest.param(b"", id="zero-length"),
    pytest.param(b"\x12\x34\x01", id="shorter-than-header"),
    pytest.param(header(flags=0x8180) + question(), id="a-response-not-a-query"),
])
def test_packets_without_a_usable_header_are_dropped(server, packet):
    assert udp_exchange(server, packet) is None
    assert_still_answers(server)


@pytest.mark.parametrize("packet, expected", [
    pytest.param(header(), FORMERR, id="header-without-question"),
    pytest.param(header() + b"\x03web", FORMERR, id="name-cut-short"),
    pytest.param(header() + question()[:-2], FORMERR, id="no-qclass"),
    pytest.param(header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", FORMERR, id="label-64"),
    pytest.param(header() + b"\xff" + b"a" * 200, FORMERR, id="label-255"),
    pytest.param(header() + b"\xc0\x0c\x00\x01\x00\x01", FORMERR, id="pointer-loop-in-question"),
    pytest.param(header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01", FORMERR,
                 id="name-over-255"),
    pytest.param(header(ar=1) + question() + b"\xc0\x21\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04",
                 FORMERR, id="pointer-loop-in-additional"),
    pytest.param(header(an=3) + question(), FORMERR, id="claims-answers-it-lacks"),
    pytest.param(header(qd=2) + question() + question(), FORMERR, id="two-questions"),
    pytest.param(header(flags=0x2800) + question(), NOTIMP, id="opcode-update"),
    pytest.param(header() + bytes(range(5, 256)) * 4, FORMERR, id="garbage-after-header"),
])
def test_malformed_queries_get_an_error_reply_with_their_id(server, packet, expected):
    reply = udp_exchange(server, packet)
    assert reply is not None
    assert rcode_and_id(reply) == (expected, 0x1234, True)
    assert_still_answers(server)


def test_random_garbage_never_breaks_the_server(server):
    rng = random.Random(7)
    valid = dns.message.make_query(WEB, "A").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3000):
            random_bytes = rng.randbytes(rng.randrange(1, 120))
            packet = bytearray(valid if rng.random() < 0.7 else random_bytes)
            for _ in range(rng.randint(1, 5)):
                if packet:
                    packet[rng.randrange(len(packet))] = rng.randrange(256)
            sock.sendto(bytes(packet), ("127.0.0.1", server.port))
    time.sleep(0.2)
    assert_still_answers(server)
    assert server.metrics.internal_errors == 0


def tcp_closed_by_server(sock, timeout=5.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(65535) == b""
    except ConnectionResetError:
        return True


def test_tcp_huge_length_prefix_with_short_body_is_cut_off(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\xff\xff" + b"\x00" * 100)
        assert tcp_closed_by_server(sock)
    assert_still_answers(server)


def test_tcp_zero_length_and_garbage_frames(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x00\x00")
        sock.settimeout(5)
        framed = sock.recv(65535)   # zero-length message: FORMERR impossible, connection closes
        assert framed == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        body = header() + b"\xc0\x0c\x00\x01\x00\x01"
        sock.sendall(len(body).to_bytes(2, "big") + body)
        sock.settimeout(5)
        length = int.from_bytes(sock.recv(2), "big")
        reply = sock.recv(length)
        assert rcode_and_id(reply) == (FORMERR, 0x1234, True)
    assert_still_answers(server)


def test_idle_tcp_connections_are_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert tcp_closed_by_server(sock)        # tcp_idle_timeout is 0.5 s in this fixture


def test_tcp_connection_limit_does_not_block_udp():
    with DnsServer("127.0.0.1", 0, ZoneHolder(services=SERVICES), max_tcp_connections=4,
                   tcp_idle_timeout=30) as limited:
        hogs = [socket.create_connection(("127.0.0.1", limited.port), timeout=5) for _ in range(10)]
        try:
            response = dns.query.udp(dns.message.make_query(WEB, "A"), "127.0.0.1",
                                     port=limited.port, timeout=5)
            assert response.answer
            refused = [hog for hog in hogs[4:] if tcp_closed_by_server(hog)]
            assert len(refused) == 6
        finally:
            for hog in hogs:
                hog.close()
        assert limited.metrics.dropped.get("tcp_limit") == 6


def _storm(port, count, stop, sent):
    """Send `count` queries in ~2 s: repeats, unique unknown names and garbage, mixed."""
    rng = random.Random(3)
    repeat = dns.message.make_query(WEB, "A").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for batch_start in range(0, count, 100):
            if stop.is_set():
                return
            for i in range(batch_start, batch_start + 100):
                kind = i % 4
                if kind == 0:
                    unknown = f"n{i}.default.svc.cluster.local."
                    packet = dns.message.make_query(unknown, "A").to_wire()
                elif kind == 1:
                    packet = rng.randbytes(40)
                else:
                    packet = repeat
                try:
                    sock.sendto(packet, ("127.0.0.1", port))
                    sent[0] += 1
                except BlockingIOError:
                    pass
                try:
                    while sock.recv(65535):
                        sent[1] += 1
                except BlockingIOError:
                    pass
            time.sleep(0.01)


def test_other_clients_get_answers_during_a_query_storm(server):
    stop, sent = threading.Event(), [0, 0]
    storm = threading.Thread(target=_storm, args=(server.port, 20000, stop, sent), daemon=True)
    storm.start()
    answered = []
    try:
        while storm.is_alive() or len(answered) < 20:
            answered.append(_ask_with_retries(server, WEB))
            time.sleep(0.01)
    finally:
        stop.set()
        storm.join(30)
    assert not storm.is_alive()
    print(f"storm sent {sent[0]} packets, read {sent[1]} replies; "
          f"other client asked {len(answered)}")
    assert sent[0] >= 10000
    assert answered and all(result == ["10.96.5.5"] for result in answered)
    assert_still_answers(server)


def _ask_with_retries(server, name, attempts=5):
    """A stub resolver's behaviour: retry a lost UDP query, then fall back to TCP."""
    query = dns.message.make_query(name, "A")
    for _ in range(attempts):
        try:
            response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=1)
            break
        except dns.exception.Timeout:
            continue
    else:
        response = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
    return [item.to_text() for rrset in response.answer for item in rrset]
