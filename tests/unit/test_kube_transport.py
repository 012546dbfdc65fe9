"""base/kube/transport.py: HTTP/1.1 responses as the API server sends them, and
the pool of kept-alive connections a client's threads share."""

from __future__ import annotations

import socket
import threading

import pytest

from base.kube.transport import Connection, Pool, ProtocolError


def answered(*responses: bytes) -> tuple[Connection, list[bytes]]:
    """A Connection whose server side sends `responses`, one per request read."""
    ours, theirs = socket.socketpair()
    requests: list[bytes] = []

    def serve() -> None:
        with theirs, theirs.makefile("rb") as reader:
            for response in responses:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    byte = reader.read(1)
                    if not byte:
                        return
                    head += byte
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                requests.append(head + reader.read(length))
                theirs.sendall(response)
    threading.Thread(target=serve, daemon=True).start()
    return Connection(ours, "10.0.0.1:6443"), requests


def test_a_sized_body_then_the_next_response_on_the_same_connection():
    conn, requests = answered(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
        b"Content-Length: 11\r\n\r\n{\"a\": true}",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}")
    first = conn.request("POST", "/api/v1/namespaces/default/pods",
                         {"Authorization": "Bearer t"}, b'{"kind":"Pod"}')
    assert (first.status, first.reason, first.body) == (201, "Created", b'{"a": true}')
    assert first.headers["content-type"] == "application/json"
    second = conn.request("GET", "/api/v1/nodes/x", {})
    assert (second.status, second.body) == (404, b"{}")
    assert conn.reusable
    head = requests[0].decode()
    assert head.startswith("POST /api/v1/namespaces/default/pods HTTP/1.1\r\n")
    assert "Host: 10.0.0.1:6443\r\n" in head and "Content-Length: 14\r\n" in head
    assert head.endswith('\r\n\r\n{"kind":"Pod"}')
    conn.close()


def test_a_chunked_body_with_its_trailer_and_repeated_headers():
    conn, _ = answered(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nWarning: one\r\nWarning: two\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n")
    response = conn.request("GET", "/x", {})
    assert response.body == b"hello world"
    assert response.headers["warning"] == "one, two"
    assert conn.reusable


def test_a_body_the_close_of_the_connection_ends_is_read_and_not_kept():
    conn, _ = answered(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"x\": 1}")
    response = conn.request("GET", "/x", {})
    assert response.body == b'{"x": 1}'
    assert not conn.reusable


@pytest.mark.parametrize("answer, message", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.1 status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "ended after 5 of 10 bytes"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"", "closed the connection"),
])
def test_a_malformed_or_cut_answer_is_a_protocol_error(answer, message):
    conn, _ = answered(answer)
    with pytest.raises(ProtocolError, match=message):
        conn.request("GET", "/x", {})
    assert isinstance(ProtocolError(""), ConnectionError)   # what callers retry on
    conn.close()


class Opened:
    def __init__(self):
        self.connections: list[Connection] = []

    def __call__(self) -> Connection:
        ours, theirs = socket.socketpair()
        theirs.close()
        conn = Connection(ours, "h:1")
        self.connections.append(conn)
        return conn


def test_the_pool_hands_back_the_newest_idle_connection_before_opening_one():
    opened = Opened()
    pool = Pool(opened)
    a, reused_a = pool.take()
    b, reused_b = pool.take()
    assert (reused_a, reused_b) == (False, False) and len(opened.connections) == 2
    pool.give(a)
    pool.give(b)
    again, reused = pool.take()
    assert again is b and reused
    assert len(opened.connections) == 2


def test_the_pool_keeps_at_most_max_idle_and_closes_the_oldest():
    opened = Opened()
    pool = Pool(opened, max_idle=2)
    taken = [pool.take()[0] for _ in range(4)]
    for conn in taken:
        pool.give(conn)
    assert pool.idle_count() == 2
    assert [c.sock.fileno() == -1 for c in taken] == [True, True, False, False]


def test_idle_connections_close_after_the_idle_time_and_unusable_ones_at_once():
    opened = Opened()
    pool = Pool(opened, idle_seconds=10.0)
    old, new, broken = (pool.take()[0] for _ in range(3))
    pool.give(old)
    old.idle_since -= 11.0          # given back 11 s ago
    pool.give(new)
    broken.reusable = False
    pool.give(broken)
    assert broken.sock.fileno() == -1
    pool.reap()
    assert old.sock.fileno() == -1 and new.sock.fileno() != -1
    assert pool.idle_count() == 1
    pool.close()
    assert new.sock.fileno() == -1 and pool.idle_count() == 0
