"""labd/podstreams.py: the API server's process reaches the kubelets' runtime
through the daemon's Unix socket, and gets the streams' own descriptors."""
from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest

from base.cri import StreamTargetError
from base.fdwait import readable
from labd.podstreams import PodStreamServer, RemotePodStreams


class PipeSession:
    """A real process with pipes, as the lab's runtime hands out for exec."""

    def __init__(self, argv: list[str], stdin: bool):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdin = self.proc.stdin.fileno() if stdin else None
        self.stdout = self.proc.stdout.fileno()
        self.stderr = self.proc.stderr.fileno()
        self.resized: list[tuple[int, int]] = []
        self.killed = threading.Event()

    def resize(self, width: int, height: int) -> None:
        self.resized.append((width, height))

    def close_stdin(self) -> None:
        if self.stdin is not None:
            self.proc.stdin.close()
            self.stdin = None

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        self.killed.set()


class FakeRuntime:
    """base.cri.PodStreams for one pod, default/web, with a listener on `port`."""

    def __init__(self, port: int):
        self.port = port
        self.sessions: list[PipeSession] = []

    def _check(self, namespace: str, pod: str) -> None:
        if (namespace, pod) != ("default", "web"):
            raise StreamTargetError("NotFound", f'pods "{pod}" not found')

    def exec(self, namespace, pod, container, argv, *, stdin, tty):
        self._check(namespace, pod)
        session = PipeSession(argv, stdin)
        self.sessions.append(session)
        return session

    def attach(self, namespace, pod, container, *, stdin, tty):
        return self.exec(namespace, pod, container, ["cat"], stdin=stdin, tty=tty)

    def dial(self, namespace, pod, port, timeout):
        self._check(namespace, pod)
        return socket.create_connection(("127.0.0.1", port), timeout)

    def log_path(self, namespace, pod, container, previous=False):
        self._check(namespace, pod)
        return f"/var/log/pods/{namespace}_{pod}/{container}/{1 if previous else 0}.log"


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def relay(tmp_path, listener):
    runtime = FakeRuntime(listener.getsockname()[1])
    with PodStreamServer(runtime, tmp_path / "streams.sock"):
        yield runtime, RemotePodStreams(tmp_path / "streams.sock")


def _read_all(fd: int, timeout: float = 5.0) -> bytes:
    out = b""
    while readable(fd, timeout):
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        out += chunk
    raise TimeoutError(f"no end of stream after {out!r}")


def test_exec_hands_over_the_process_streams_and_reports_its_exit_code(relay):
    runtime, remote = relay
    script = "tr a-z A-Z; echo oops >&2; exit 3"
    session = remote.exec("default", "web", "app", ["sh", "-c", script], stdin=True, tty=False)
    os.write(session.stdin, b"hello\n")
    session.close_stdin()                 # both copies closed: the process reads EOF
    assert _read_all(session.stdout) == b"HELLO\n"
    assert _read_all(session.stderr) == b"oops\n"
    assert session.wait(5.0) == 3
    session.kill()
    assert runtime.sessions[0].killed.wait(5.0)


def test_a_session_asks_the_daemon_for_resize_and_wait(relay):
    runtime, remote = relay
    session = remote.exec("default", "web", "app", ["sleep", "30"], stdin=False, tty=False)
    assert session.stdin is None
    session.resize(120, 40)
    assert session.wait(0.2) is None      # still running
    assert runtime.sessions[0].resized == [(120, 40)]
    session.kill()
    assert runtime.sessions[0].killed.wait(5.0)
    assert runtime.sessions[0].proc.returncode is not None


def test_a_client_that_goes_away_ends_its_session_in_the_daemon(relay):
    runtime, remote = relay
    session = remote.exec("default", "web", "app", ["sleep", "30"], stdin=False, tty=False)
    session._conn.close()                 # the API server's side dies without a word
    assert runtime.sessions[0].killed.wait(5.0)


def test_a_refusal_keeps_its_reason_and_message(relay):
    _, remote = relay
    with pytest.raises(StreamTargetError) as err:
        remote.exec("default", "nope", "app", ["true"], stdin=False, tty=False)
    assert (err.value.reason, err.value.message) == ("NotFound", 'pods "nope" not found')
    with pytest.raises(StreamTargetError, match="not found"):
        remote.dial("default", "nope", 80, 1.0)


def test_dial_hands_over_a_connected_socket(relay, listener):
    _, remote = relay
    sock = remote.dial("default", "web", listener.getsockname()[1], 2.0)
    peer, _ = listener.accept()
    with sock, peer:
        sock.sendall(b"ping")
        assert peer.recv(4) == b"ping"


def test_log_path_is_answered_as_the_runtime_gives_it(relay):
    _, remote = relay
    assert remote.log_path("default", "web", "app") == "/var/log/pods/default_web/app/0.log"
    assert remote.log_path("default", "web", "app", previous=True).endswith("/1.log")


def test_no_daemon_is_an_internal_error_naming_the_socket(tmp_path):
    remote = RemotePodStreams(tmp_path / "gone.sock")
    with pytest.raises(StreamTargetError, match="gone.sock") as err:
        remote.log_path("default", "web", "app")
    assert err.value.reason == "InternalError"
