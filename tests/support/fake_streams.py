"""A PodStreams for tests without root: pods are temp dirs, commands local processes.

`FakePodStreams` stands in for the lab's node side behind the API server's
exec, attach, port-forward and logs, the way `fake_runtime` stands in for
the kubelet's runtime:

* exec runs argv as a local process in the pod's directory (through
  ``sh -c 'exec "$@"'``, so a missing program fails with 127 as in a
  container), with pipes, or with a real pseudo-terminal for a tty (a new
  session with it as controlling terminal; `resize` sets its size);
* attach starts the container's console command (``console``) the same way;
* dial connects to the local listener a test registered for (pod, port),
  and fails like containerd when there is none;
* log_path returns the CRI log files a test wrote with `write_log`.

Every session it started is kept in `sessions`, so a test can check that a
process was killed when its client went away.
"""
from __future__ import annotations

import fcntl
import os
import pty
import signal
import socket
import struct
import subprocess
import termios
import threading
from dataclasses import dataclass, field
from pathlib import Path

from base.cri import StreamTargetError

EXEC_SHIM = ["/bin/sh", "-c", 'exec "$@"', "sh"]   # a missing program: exit 127
EOF_CHAR = b"\x04"


def portforward_refused(namespace: str, pod: str, port: int) -> str:
    """containerd's text for a port nothing listens on."""
    return (f'failed to execute portforward in network namespace "/var/run/netns/{namespace}-{pod}"'
            f': failed to connect to localhost:{port} inside namespace "{pod}", IPv4: dial tcp4 '
            f"127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: "
            "connect: connection refused ")


class FakeExecSession:
    """A local process with the descriptors base.cri.ExecSession promises."""

    def __init__(self, argv: list[str], cwd: Path, *, stdin: bool, tty: bool) -> None:
        self.argv = argv
        self.tty = tty
        self._lock = threading.Lock()
        self._released = False
        self.killed = False
        if tty:
            master, slave = pty.openpty()
            self._set_size(master, 80, 24)
            try:
                self.proc = subprocess.Popen(["setsid", "-c", *EXEC_SHIM, *argv], cwd=cwd,
                                             stdin=slave, stdout=slave, stderr=slave,
                                             env={**os.environ, "TERM": "xterm"})
            finally:
                os.close(slave)
            self.stdin = master if stdin else None
            self.stdout, self.stderr = master, None
            self._fds = [master]
            return
        self.proc = subprocess.Popen([*EXEC_SHIM, *argv], cwd=cwd, start_new_session=True,
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdin = os.dup(self.proc.stdin.fileno()) if stdin else None
        self.stdout = os.dup(self.proc.stdout.fileno())
        self.stderr = os.dup(self.proc.stderr.fileno())
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self._fds = [fd for fd in (self.stdin, self.stdout, self.stderr) if fd is not None]

    @staticmethod
    def _set_size(fd: int, width: int, height: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def resize(self, width: int, height: int) -> None:
        if self.tty and not self._released:
            self._set_size(self.stdout, width, height)

    def close_stdin(self) -> None:
        with self._lock:
            if self.stdin is None or self._released:
                return
            if self.tty:
                os.write(self.stdin, EOF_CHAR)
            else:
                os.close(self.stdin)
                self._fds.remove(self.stdin)
            self.stdin = None

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return 128 - code if code < 0 else code

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with self._lock:
            if self.proc.poll() is None:
                self.killed = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass       # it ended between poll and kill
            self.proc.wait(10)
            if not self._released:
                self._released = True
                for fd in self._fds:
                    os.close(fd)


@dataclass
class FakePod:
    workdir: Path
    containers: dict[str, bool]                    # name -> running
    console: list[str] = field(default_factory=lambda: ["sh"])
    listeners: dict[int, tuple[str, int]] = field(default_factory=dict)
    logs: dict[tuple[str, bool], Path] = field(default_factory=dict)


class FakePodStreams:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.sessions: list[FakeExecSession] = []
        self.dials: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()

    # --- what tests set up ---------------------------------------------------------------

    def add_pod(self, namespace: str, name: str, containers=("main",),
                console: list[str] | None = None) -> Path:
        workdir = self.root / namespace / name
        workdir.mkdir(parents=True, exist_ok=True)
        self.pods[(namespace, name)] = FakePod(workdir, dict.fromkeys(containers, True),
                                               console or ["sh"])
        return workdir

    def set_running(self, namespace: str, name: str, container: str, running: bool) -> None:
        self.pods[(namespace, name)].containers[container] = running

    def listen(self, namespace: str, name: str, port: int, address: tuple[str, int]) -> None:
        """Connections to port of the pod go to address."""
        self.pods[(namespace, name)].listeners[port] = address

    def write_log(self, namespace: str, name: str, container: str, lines: list[str], *,
                  previous: bool = False, append: bool = False) -> Path:
        """Write (or append) CRI log lines for the container's current or previous run."""
        pod = self.pods[(namespace, name)]
        path = pod.workdir / f"{container}{'.previous' if previous else ''}.log"
        with open(path, "a" if append else "w") as out:
            out.writelines(line + "\n" for line in lines)
        pod.logs[(container, previous)] = path
        return path

    # --- base.cri.PodStreams ----------------------------------------------------------------

    def _container(self, namespace: str, name: str, container: str) -> FakePod:
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise StreamTargetError("NotFound", "pod does not exist")
        if not pod.containers.get(container):
            raise StreamTargetError("InternalError", f'container not found ("{container}")')
        return pod

    def exec(self, namespace: str, pod: str, container: str, argv: list[str], *,
             stdin: bool, tty: bool) -> FakeExecSession:
        record = self._container(namespace, pod, container)
        return self._start(argv, record.workdir, stdin, tty)

    def attach(self, namespace: str, pod: str, container: str, *,
               stdin: bool, tty: bool) -> FakeExecSession:
        record = self._container(namespace, pod, container)
        return self._start(record.console, record.workdir, stdin, tty)

    def _start(self, argv: list[str], cwd: Path, stdin: bool, tty: bool) -> FakeExecSession:
        session = FakeExecSession(argv, cwd, stdin=stdin, tty=tty)
        with self._lock:
            self.sessions.append(session)
        return session

    def dial(self, namespace: str, pod: str, port: int, timeout: float) -> socket.socket:
        record = self.pods.get((namespace, pod))
        if record is None:
            raise StreamTargetError("NotFound", "pod does not exist")
        with self._lock:
            self.dials.append((namespace, pod, port))
        address = record.listeners.get(port)
        if address is None:
            raise StreamTargetError("InternalError", portforward_refused(namespace, pod, port))
        return socket.create_connection(address, timeout)

    def log_path(self, namespace: str, pod: str, container: str,
                 previous: bool = False) -> str | None:
        record = self.pods.get((namespace, pod))
        path = record.logs.get((container, previous)) if record else None
        return str(path) if path else None

    def close(self) -> None:
        """Kill whatever still runs."""
        for session in self.sessions:
            session.kill()


class EchoServer:
    """A pod's TCP server: answers "<tag>:<what it read>" and closes."""

    def __init__(self, tag: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.tag = tag
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(self.tag + b":" + data)

    def close(self) -> None:
        self.sock.close()


# --- pods in the API server, as a kubelet would have reported them ------------------------

WORKER = "ip-172-31-0-11"


def container_status(name: str, state: str = "running", *, previous: bool = False) -> dict:
    """A containerStatuses entry: state running, waiting (ContainerCreating) or
    terminated (exit 0); previous: a run before this one ended with exit 1."""
    states = {"running": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
              "waiting": {"waiting": {"reason": "ContainerCreating"}},
              "terminated": {"terminated": {"exitCode": 0, "reason": "Completed",
                                            "containerID": "svclab://1000"}}}
    status = {"name": name, "state": states[state], "ready": state == "running",
              "restartCount": int(previous), "image": "docker.io/library/busybox:latest",
              "imageID": "", "started": state == "running",
              "lastState": ({"terminated": {"exitCode": 1, "reason": "Error",
                                            "containerID": "svclab://999"}} if previous else {})}
    if state != "waiting":
        status["containerID"] = "svclab://1000"
    return status


def make_pod(client, fake: FakePodStreams | None, name: str, containers=("main",), *,
             namespace: str = "default", node: str | None = WORKER, phase: str = "Running",
             labels: dict | None = None, previous: bool = False) -> dict:
    """Create the pod in the API (scheduled to node, its status as a kubelet reports
    it for phase) and, with fake, its node-side twin."""
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]}}
    if node:
        body["spec"]["nodeName"] = node
    pod = client.create("pods", body, namespace)
    state = {"Running": "running", "Pending": "waiting", "Succeeded": "terminated"}[phase]
    pod["status"] = {"phase": phase, "containerStatuses": [
        container_status(c, state if node else "waiting", previous=previous)
        for c in containers]}
    pod = client.update("pods", pod, subresource="status")
    if fake is not None and node:
        fake.add_pod(namespace, name, containers)
        for container in containers:
            fake.set_running(namespace, name, container, state == "running")
    return pod
