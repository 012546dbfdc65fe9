"""port-forward on a plain SPDY/3.1 upgrade, stream by stream, as kubectl's fallback speaks it.

A failed connection (nothing listens on the port) reports the kubelet's
error on its own error stream and leaves the session and the other
connections working; many connections run at once on one session.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from controlplane.api.spdy import SpdySession
from support.fake_streams import EchoServer, make_pod


@pytest.fixture
def fake(fake, client):
    """The fake node side with a running pod `p`."""
    make_pod(client, fake, "p")
    return fake


@pytest.fixture
def echo(fake):
    server = EchoServer(b"pod")
    fake.listen("default", "p", 80, server.address)
    yield server
    server.close()


def spdy_upgrade(server, path: str, protocol: str) -> tuple[SpdySession, bytes]:
    """A client SPDY session on an upgraded connection, and the 101's head."""
    context = ssl.create_default_context(cafile=str(server.ca_cert_path))
    context.load_cert_chain(server.state_dir / "admin.crt", server.state_dir / "admin.key")
    host, port = server.addresses[0].split(":")
    tls = context.wrap_socket(socket.create_connection((host, int(port)), 10),
                              server_hostname="localhost")
    tls.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                f"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n"
                "Content-Length: 0\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"the server hung up: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    leftover = [rest] if rest else []
    tls.settimeout(None)

    def recv() -> bytes:
        if leftover:
            return leftover.pop()
        try:
            return tls.recv(65536)
        except OSError:
            return b""

    def shutdown() -> None:
        tls.shutdown(socket.SHUT_RDWR)
    session = SpdySession(recv, tls.sendall, server=False, shutdown=shutdown)
    return session.start() if head.startswith(b"HTTP/1.1 101") else session, head


def forward(session: SpdySession, request_id: int, port: int, data: bytes) -> tuple[bytes, bytes]:
    """One forwarded connection as kubectl makes it: (what came back, the error text)."""
    headers = {"port": str(port), "requestid": str(request_id)}
    error = session.open_stream({**headers, "streamtype": "error"})
    error.close()
    stream = session.open_stream({**headers, "streamtype": "data"})
    stream.write(data)
    stream.close()
    answer = b""
    while chunk := stream.read(20):
        answer += chunk
    message = b""
    while chunk := error.read(20):
        message += chunk
    return answer, message


def test_a_refused_port_fails_its_own_connection_only(api_server, fake, echo):
    session, head = spdy_upgrade(api_server, "/api/v1/namespaces/default/pods/p/portforward",
                                 "portforward.k8s.io")
    try:
        assert b"X-Stream-Protocol-Version: portforward.k8s.io" in head
        assert forward(session, 0, 80, b"before\n") == (b"pod:before\n", b"")
        answer, error = forward(session, 1, 81, b"anyone?\n")
        assert answer == b""
        assert error.decode().startswith("error forwarding port 81 to pod ")
        assert "failed to connect to localhost:81 inside namespace" in error.decode()
        assert forward(session, 2, 80, b"after\n") == (b"pod:after\n", b"")
    finally:
        session.close()


def test_connections_run_concurrently_on_one_session(api_server, fake, echo):
    session, _ = spdy_upgrade(api_server, "/api/v1/namespaces/default/pods/p/portforward",
                              "portforward.k8s.io")
    results: dict[int, tuple[bytes, bytes]] = {}

    def one(i: int) -> None:
        results[i] = forward(session, i, 80, f"conn {i} ".encode() + b"y" * 100_000 + b"\n")
    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results) == list(range(20))
        for i, (answer, error) in results.items():
            assert (answer, error) == (f"pod:conn {i} ".encode() + b"y" * 100_000 + b"\n", b"")
    finally:
        session.close()


def test_spdy_without_the_portforward_protocol_is_refused(api_server, fake):
    _, head = spdy_upgrade(api_server, "/api/v1/namespaces/default/pods/p/portforward",
                           "v4.channel.k8s.io")
    assert head.startswith(b"HTTP/1.1 403 ")
