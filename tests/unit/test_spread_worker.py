"""The spread engine: reply parsing, and real connections to a workload server on loopback."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from probes.spread.worker import SpreadEngine, parse_http_reply, parse_udp_reply, udp_payload

REPO = Path(__file__).resolve().parents[2]
POD, POD_IP = "spread-pod", "192.168.1.7"


def test_parse_http_reply_reads_the_workload_json():
    body = json.dumps({"pod": "web-1", "podIP": "192.168.1.50",
                       "client": "192.168.0.5:41000", "port": 80, "proto": "tcp"})
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
             b"Connection: close\r\n\r\n" + body.encode())
    assert parse_http_reply(reply) == {"pod": "web-1", "pod_ip": "192.168.1.50",
                                       "client": "192.168.0.5:41000", "forwarded_for": None,
                                       "status": 200}


@pytest.mark.parametrize("reply,problem", [
    (b"", "not an HTTP response"),
    (b"SSH-2.0-OpenSSH\r\n", "not an HTTP response"),
    (b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready", "HTTP status 503"),
    (b"HTTP/1.1 200 OK\r\n\r\n<html>nginx</html>", "not a workload server reply"),
])
def test_parse_http_reply_rejects_what_is_not_a_workload_answer(reply, problem):
    with pytest.raises(ValueError, match=problem):
        parse_http_reply(reply)


def test_parse_udp_reply_and_its_payload():
    got = parse_udp_reply(b"svclab web-2 192.168.2.50 172.31.0.11:5353 " + udp_payload(4))
    assert got == {"pod": "web-2", "pod_ip": "192.168.2.50", "client": "172.31.0.11:5353",
                   "payload": udp_payload(4)}
    with pytest.raises(ValueError):
        parse_udp_reply(b"pong")


@pytest.fixture(scope="module")
def server():
    """A workload server on loopback with one TCP and one UDP port."""
    argv = [sys.executable, "-m", "agents.workload", "--pod-name", POD, "--pod-ip", POD_IP,
            "--bind", "127.0.0.1", "--port", "0/TCP", "--port", "0/UDP"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        event = json.loads(proc.stdout.readline())
        ports = {text.split("/")[1]: int(text.split("/")[0]) for text in event["ports"]}
        yield ports
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def closed_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(port, proto="tcp", count=300, concurrency=50, timeout=3.0, progress=None):
    request = {"targets": [{"ip": "127.0.0.1", "port": port}], "proto": proto,
               "count": count, "concurrency": concurrency, "timeout": timeout,
               "progress_every": 0.01 if progress is not None else 0}
    return SpreadEngine(request, progress).run()["records"]


def test_tcp_connections_are_answered_with_pod_and_client_seen(server):
    lines = []
    records = run(server["TCP"], count=400, progress=lines.append)
    assert {r["outcome"] for r in records} == {"ok"}
    assert {(r["pod"], r["pod_ip"]) for r in records} == {(POD, POD_IP)}
    # Each connection is new: its own local port, the one the server saw.
    assert all(r["client"] == r["local"] for r in records)
    assert len({r["local"] for r in records}) == 400
    assert all(line.startswith("progress ") and "/400 done" in line for line in lines)


def test_udp_datagrams_each_come_from_a_fresh_socket(server):
    records = run(server["UDP"], proto="udp", count=100, concurrency=10)
    assert {r["outcome"] for r in records} == {"ok"}
    assert len({r["local"] for r in records}) > 1
    assert all(r["client"] == r["local"] for r in records)


def test_closed_ports_are_refused_for_tcp_and_udp():
    tcp = run(closed_port(), count=20)
    assert {(r["outcome"], r["error"]) for r in tcp} == {("refused", "ECONNREFUSED")}
    udp = run(closed_port(socket.SOCK_DGRAM), proto="udp", count=20)
    assert {r["outcome"] for r in udp} == {"refused"}


def test_silent_peer_times_out():
    # A UDP socket that never answers: every datagram times out.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        records = run(silent.getsockname()[1], proto="udp", count=5, timeout=0.3)
    assert [r["outcome"] for r in records] == ["timeout"] * 5
    assert all(r["latency_ms"] >= 300 for r in records)


def test_peer_that_is_not_a_workload_server_is_a_bad_reply():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        def answer():
            for _ in range(3):
                conn, _ = listener.accept()
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        records = run(port, count=3, concurrency=1)
        thread.join(timeout=5)
    assert [r["outcome"] for r in records] == ["bad-reply"] * 3
    assert "not a workload server reply" in records[0]["error"]


def test_complete_reply_on_a_connection_left_open_counts_as_answered():
    body = json.dumps({"pod": "keepalive", "podIP": "10.0.0.9", "client": "127.0.0.1:1"})
    reply = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
    held = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        def answer_and_hold():
            for _ in range(2):
                conn, _ = listener.accept()
                conn.recv(1024)
                conn.sendall(reply)
                held.append(conn)        # never closed until the test ends
        thread = threading.Thread(target=answer_and_hold, daemon=True)
        thread.start()
        records = run(port, count=2, concurrency=2, timeout=0.3)
        thread.join(timeout=5)
    for conn in held:
        conn.close()
    assert [(r["outcome"], r["pod"]) for r in records] == [("ok", "keepalive")] * 2
