"""The fork server's wire (agents/forkserver.py): one request, one answer.

The lab daemon and its fork server share a SOCK_SEQPACKET socket pair, so a
message is one datagram, whole or not at all.  A request names the module to
run as ``python -m MODULE`` with its arguments, and carries file descriptors
(SCM_RIGHTS): the program's log, then the namespaces to enter, as opened by
the daemon from ``/proc/PID/ns/*``.  The answer is the new process's PID and
kernel start time (read before the server can reap it, so a recycled PID is
never mistaken for it), or an error.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

MAX_MESSAGE = 1 << 16
MAX_FDS = 8
NAMESPACES = ("net", "mnt", "uts")      # entered in this order


class ForkWireError(Exception):
    """A message that is not the fork server's, or an answer that reports a failure."""


@dataclass(frozen=True)
class SpawnRequest:
    module: str
    args: list[str]
    log_fd: int
    namespace_fds: dict[str, int]       # "net" | "mnt" | "uts" -> fd


def send_request(sock: socket.socket, module: str, args: list[str], log_fd: int,
                 namespace_fds: dict[str, int]) -> None:
    kinds = [k for k in NAMESPACES if k in namespace_fds]
    body = json.dumps({"module": module, "args": args, "namespaces": kinds}).encode()
    socket.send_fds(sock, [body], [log_fd, *(namespace_fds[k] for k in kinds)])


def recv_request(sock: socket.socket) -> SpawnRequest | None:
    """The next request; None once the other end has closed."""
    body, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not body and not fds:
        return None
    try:
        data = json.loads(body)
        kinds = list(data["namespaces"])
        if len(fds) != 1 + len(kinds) or not set(kinds) <= set(NAMESPACES):
            raise ValueError(f"{len(fds)} descriptors for namespaces {kinds}")
        return SpawnRequest(str(data["module"]), [str(a) for a in data["args"]], fds[0],
                            dict(zip(kinds, fds[1:])))
    except (ValueError, KeyError, TypeError) as err:
        for fd in fds:
            os.close(fd)
        raise ForkWireError(f"malformed request: {err}") from err


def send_answer(sock: socket.socket, pid: int = 0, start: int = 0, error: str = "") -> None:
    sock.send(json.dumps({"pid": pid, "start": start, "error": error}).encode())


def recv_answer(sock: socket.socket) -> tuple[int, int]:
    """(pid, start time); ForkWireError with the server's reason if it failed."""
    body = sock.recv(MAX_MESSAGE)
    if not body:
        raise ForkWireError("the fork server has gone")
    data = json.loads(body)
    if data.get("error") or not data.get("pid"):
        raise ForkWireError(data.get("error") or "no process started")
    return int(data["pid"]), int(data["start"])
