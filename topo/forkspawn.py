"""The daemon's side of the fork server (agents/forkserver.py).

`ForkServer.argv` is the command that starts the server in a lab host with
one end of a socket pair; `spawn` then asks it for a `python -m MODULE ARGS`
process in another host's namespaces and returns (pid, start time).  Only
programs whose module the server preloaded go this way (`serves`); a server
that fails or has gone raises ForkServerError, and the caller starts the
program the usual way instead.
"""
from __future__ import annotations

import os
import select
import socket
import sys
import threading

from base.errors import LabError
from base.forkwire import NAMESPACES, ForkWireError, recv_answer, send_request
from topo.netns import ensure_lab_namespace, own_netns_inode

ANSWER_TIMEOUT = 10.0
ROOM = 1024      # bytes of command line each child may show (its argv fits easily)


class ForkServerError(LabError):
    """The fork server could not start a program."""


class ForkServer:
    """One lab's fork server, reached over `sock`; requests go one at a time."""

    def __init__(self, modules: list[str]):
        self.modules = frozenset(modules)
        self._sock, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self.broken = False         # after a failure: not asked again

    def argv(self) -> list[str]:
        """The server's command; its socket's fd must be passed to it (`pass_fd`)."""
        return [sys.executable, "-m", "agents.forkserver", "--socket-fd", str(self.pass_fd),
                "--machine-netns-inode", str(own_netns_inode()),
                *(f"--preload={m}" for m in sorted(self.modules)), "_" * ROOM]

    @property
    def pass_fd(self) -> int:
        return self._theirs.fileno()

    def started(self) -> None:
        """The server has its end: close ours of it (its exit then closes the pair)."""
        self._theirs.close()

    def serves(self, argv: list[str]) -> bool:
        return (not self.broken and len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m"
                and argv[2] in self.modules)

    def spawn(self, pid: int, argv: list[str], log_path: str) -> tuple[int, int]:
        """Start argv (`python -m MODULE ...`) in the network, mount and UTS namespaces
        of lab process `pid`, its output appended to log_path."""
        ensure_lab_namespace(pid)
        fds: dict[str, int] = {}
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for kind in NAMESPACES:
                fds[kind] = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
            if os.fstat(fds["net"]).st_ino == own_netns_inode():    # pid recycled meanwhile
                raise ForkServerError(f"process {pid} is not in a lab namespace")
            with self._lock:
                send_request(self._sock, argv[2], argv[3:], log_fd, fds)
                if not select.select([self._sock], [], [], ANSWER_TIMEOUT)[0]:
                    self.broken = True      # a late answer would be taken for the next one
                    raise ForkServerError(f"no answer from the fork server in "
                                          f"{ANSWER_TIMEOUT:.0f} s")
                return recv_answer(self._sock)
        except (OSError, ForkWireError) as err:
            self.broken = True
            raise ForkServerError(f"fork server: {err}") from err
        finally:
            for fd in (log_fd, *fds.values()):
                os.close(fd)

    def close(self) -> None:
        """Our end closes: the server ends by itself."""
        self._sock.close()
        if self._theirs.fileno() >= 0:
            self._theirs.close()
