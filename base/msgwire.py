"""JSON messages with file descriptors beside them, over a SOCK_SEQPACKET socket.

A message is one datagram, whole or not at all, so there is no framing to
get wrong; the descriptors travel with it (SCM_RIGHTS) and arrive as new
descriptors of the receiving process.  The lab daemon and the API server's
process talk this way (labd/apiproc.py, labd/podstreams.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterable

MAX_MESSAGE = 1 << 16
MAX_FDS = 4


def send_message(sock: socket.socket, message: dict, fds: Iterable[int] = ()) -> None:
    body = json.dumps(message).encode()
    if len(body) > MAX_MESSAGE:
        raise ValueError(f"a message of {len(body)} bytes (at most {MAX_MESSAGE})")
    fds = list(fds)
    if fds:
        socket.send_fds(sock, [body], fds)
    else:
        sock.send(body)


def recv_message(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """The next message and the descriptors that came with it; (None, []) once
    the other end has closed."""
    body, fds, _flags, _address = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not body:
        close_fds(fds)
        return None, []
    try:
        message = json.loads(body)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
    except ValueError:
        close_fds(fds)
        raise
    return message, fds


def close_fds(fds: Iterable[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
