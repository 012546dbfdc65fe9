"""The lab's side of the node workload servers: containers that cost no process.

A container that would run svclab's built-in workload server (`python -m
agents.workload ARGS`, the kubelet's plan for svclab/workload, unknown images
and nginx's fallback) is served instead by its node's one workload server
(agents/workload/node.py), started in the node the first time a pod there
needs it and recorded in the state folder like any lab process.  The
container is then a `ServedChild`: it runs until the node's server reports
that the pod's server ended, signals go to that server over its control
socket, and its access log arrives through a pipe of its own, read by the
runtime's output pump into the pod's CRI log as a process's stdout would be.

Containers with stdin or a terminal keep a process of their own (an attached
client expects one).
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future

from base.errors import LabError, LabTimeout

WORKLOAD_MODULE = "agents.workload"
NODE_SERVER_MODULE = "agents.workload.node"
CONTROL_FILE = "workload.sock"
CONNECT_TIMEOUT = 15.0
REPLY_TIMEOUT = 15.0
KILLED = 128 + signal.SIGKILL
MAX_MESSAGE = 64 * 1024


def raise_open_files_limit() -> None:
    """A container's log keeps two descriptors open in the daemon (its output and its
    CRI file): a thousand pods need more than the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def builtin_server_args(argv: list[str]) -> list[str] | None:
    """The workload server's arguments when argv runs it, else None."""
    if len(argv) >= 3 and list(argv[1:3]) == ["-m", WORKLOAD_MODULE]:
        return list(argv[3:])
    return None


class ServedChild:
    """A container served by a node's workload server, shaped like topo.sessions.Child."""

    def __init__(self, server: NodeServer, ident: int, pid: int):
        self.server = server
        self.ident = ident
        self.pid = pid             # the pod's sandbox: /proc/PID/net shows its sockets
        # What the server reported bound ("80/TCP") before it answered: a kubelet
        # asking whether the port listens need not read the pod's socket table.
        self.ports: frozenset[str] = frozenset()
        self.code: int | None = None
        self.ended = False
        self._done = threading.Event()

    def poll(self) -> bool:
        return self.ended

    def wait(self, timeout: float | None) -> bool:
        self._done.wait(timeout)
        return self.ended

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        if not self.ended:
            self.server.signal(self.ident, signum)

    def close(self) -> None:
        """Nothing to release: the server closes the pod's sockets when it ends."""

    def end(self, code: int) -> None:
        if not self.ended:
            self.code, self.ended = code, True
            self._done.set()


class NodeServer:
    """One node's workload server process and our connection to it."""

    def __init__(self, lab, node_host: str):
        self.node_host = node_host
        path = lab.paths.files / node_host / CONTROL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # ident -> its answer to come: each caller waits on its own (one
        # condition for all woke every waiting kubelet at each answer).
        self._replies: dict[int, Future] = {}
        self._children: dict[int, ServedChild] = {}
        self._next = 0
        self.alive = True
        self.process = lab.spawn(node_host, [sys.executable, "-m", NODE_SERVER_MODULE,
                                             "--control", str(path)], role="workload-server")
        self._sock = _connect(str(path), CONNECT_TIMEOUT)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"workload-{node_host}")
        self._reader.start()

    def serve(self, pod_pid: int, args: list[str], log_fd: int) -> ServedChild:
        """Ask the server to serve one container; log_fd (a copy goes along) gets its log."""
        with self._lock:
            self._next += 1
            ident = self._next
            child = self._children[ident] = ServedChild(self, ident, pod_pid)
            self._replies[ident] = Future()
        message = {"op": "serve", "id": ident, "netns": f"/proc/{pod_pid}/ns/net",
                   "root": f"/proc/{pod_pid}/root", "args": args}
        try:
            self._send(message, [log_fd])
            reply = self._wait_reply(ident)
        finally:
            with self._lock:
                self._replies.pop(ident, None)
        if reply.get("ok"):
            child.ports = frozenset(str(p).upper() for p in reply.get("ports") or ())
        else:
            child.end(int(reply.get("code", 1)))
        return child

    def signal(self, ident: int, signum: int) -> None:
        """A gone server has ended its containers already (their code is 137)."""
        with contextlib.suppress(OSError, LabError):
            self._send({"op": "signal", "id": ident, "signal": int(signum)})

    def close(self) -> None:
        """Hang up: the server stops every pod it serves and exits."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(5.0)
        self._sock.close()

    def _send(self, message: dict, fds: list[int] = ()) -> None:
        data = json.dumps(message).encode()
        with self._lock:
            if not self.alive:
                raise LabError(f"the workload server of {self.node_host} is gone")
            socket.send_fds(self._sock, [data], list(fds))

    def _wait_reply(self, ident: int) -> dict:
        try:
            return self._replies[ident].result(REPLY_TIMEOUT)
        except TimeoutError:
            raise LabTimeout(f"the workload server of {self.node_host} did not "
                             f"answer in {REPLY_TIMEOUT} s") from None

    def _read(self) -> None:
        try:
            while True:
                data = self._sock.recv(MAX_MESSAGE)
                if not data:
                    break
                message = json.loads(data)
                if message.get("event") == "exited":
                    with self._lock:
                        child = self._children.pop(message.get("id"), None)
                    if child is not None:
                        child.end(int(message.get("code", 0)))
                else:
                    with self._lock:
                        answer = self._replies.get(message.get("id"))
                    if answer is not None and not answer.done():
                        answer.set_result(message)
        except (OSError, ValueError):
            pass
        with self._lock:
            self.alive = False
            children, self._children = list(self._children.values()), {}
            waiting = list(self._replies.values())
        for answer in waiting:          # this thread alone sets answers
            if not answer.done():
                answer.set_exception(LabError(f"the workload server of {self.node_host} ended"))
        for child in children:          # the server is gone: so are its pods' servers
            child.end(KILLED)


def _connect(path: str, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise LabTimeout(f"workload server at {path} not listening after "
                                 f"{timeout} s; see the lab log") from None
            time.sleep(0.02)


class WorkloadHosts:
    """The node workload servers of one lab, started on demand."""

    def __init__(self, lab):
        self.lab = lab
        self._lock = threading.Lock()
        self._servers: dict[str, NodeServer] = {}

    def serve(self, node_host: str, pod_pid: int, args: list[str]) -> tuple[ServedChild, int]:
        """Serve a container; (its child, the read end of its log)."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            return self._server(node_host).serve(pod_pid, args, write_end), read_end
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()

    def _server(self, node_host: str) -> NodeServer:
        with self._lock:
            server = self._servers.get(node_host)
            if server is None or not server.alive:
                if server is not None:
                    self.lab.forget_process(server.process)
                server = self._servers[node_host] = NodeServer(self.lab, node_host)
            return server
