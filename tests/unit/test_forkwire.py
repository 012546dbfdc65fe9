"""base/forkwire.py: a request carries its module, arguments and descriptors whole;
a malformed one is refused with its descriptors closed; an error answer raises."""
from __future__ import annotations

import os
import socket

import pytest

from base.forkwire import ForkWireError, recv_answer, recv_request, send_answer, send_request


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield a, b
    a.close()
    b.close()


def test_a_request_arrives_with_its_descriptors(pair, tmp_path):
    daemon, server = pair
    log = tmp_path / "log"
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT)
    net_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        send_request(daemon, "agents.proxy", ["--node", "n1"], log_fd, {"net": net_fd})
    finally:
        os.close(log_fd)
        os.close(net_fd)
    request = recv_request(server)
    try:
        assert (request.module, request.args) == ("agents.proxy", ["--node", "n1"])
        assert set(request.namespace_fds) == {"net"}
        assert os.fstat(request.namespace_fds["net"]).st_ino == \
            os.stat("/proc/self/ns/net").st_ino
        os.write(request.log_fd, b"written through the passed descriptor\n")
        assert log.read_text() == "written through the passed descriptor\n"
    finally:
        for fd in (request.log_fd, *request.namespace_fds.values()):
            os.close(fd)


def test_a_malformed_request_is_refused_and_its_descriptors_closed(pair, tmp_path):
    daemon, server = pair
    marker = tmp_path / "passed-descriptor"
    marker.touch()

    def open_on_marker() -> int:
        # Only descriptors on this file: other threads of the test process
        # may open and close descriptors of their own meanwhile.
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}") == str(marker)
            except OSError:
                continue
        return count
    with open(marker) as handle:
        socket.send_fds(daemon, [b'{"module": "x"}'], [handle.fileno()])
        with pytest.raises(ForkWireError, match="malformed request"):
            recv_request(server)
        assert open_on_marker() == 1       # ours; the one received was closed


def test_the_end_of_the_daemon_reads_as_none(pair):
    daemon, server = pair
    daemon.close()
    assert recv_request(server) is None


def test_answers(pair):
    daemon, server = pair
    send_answer(server, 4242, 99)
    assert recv_answer(daemon) == (4242, 99)
    send_answer(server, error="module 'x' is not preloaded")
    with pytest.raises(ForkWireError, match="not preloaded"):
        recv_answer(daemon)
    server.close()
    with pytest.raises(ForkWireError, match="has gone"):
        recv_answer(daemon)
