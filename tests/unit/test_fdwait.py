"""Waiting on one descriptor works for numbers select(2) cannot take (above 1023),
which a daemon serving a thousand pods has."""
from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from base.fdwait import readable, writable


def test_a_pipe_is_readable_once_written_and_writable_while_it_has_room():
    read_end, write_end = os.pipe()
    try:
        started = time.monotonic()
        assert not readable(read_end, 0.05)
        assert time.monotonic() - started >= 0.04        # it waited, it did not spin
        assert writable(write_end, 0)
        os.write(write_end, b"x")
        assert readable(read_end, 1)
        os.close(write_end)
        os.read(read_end, 1)
        assert readable(read_end, 0)                       # EOF counts as readable
    finally:
        os.close(read_end)


def test_a_descriptor_above_1023_is_waited_on():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2100:
        pytest.skip(f"the open-files limit ({hard}) has no room above 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    read_end, write_end = os.pipe()
    high = os.dup2(read_end, 2048)
    try:
        os.write(write_end, b"x")
        assert readable(high, 1)
        assert not readable(os.dup2(write_end, 2049), 0)   # nothing to read on a write end
    finally:
        for fd in (read_end, write_end, high, 2049):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_closed_socket_raises_value_error_as_select_did():
    sock = socket.socket()
    sock.close()
    with pytest.raises(ValueError):
        readable(sock, 0)
