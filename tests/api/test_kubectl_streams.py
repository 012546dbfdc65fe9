"""The real kubectl 1.37's exec, cp, attach and port-forward against the API server.

The node side is tests/support/fake_streams: commands are local processes
run in a per-pod directory, pod ports are local listeners.  Every command
in a pod uses relative paths only (the "pod" is a directory of this host).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time

import pytest

from base.waiting import wait_until
from support.fake_streams import EchoServer, make_pod


@pytest.fixture
def pod(client, fake) -> dict:
    return make_pod(client, fake, "p")


@pytest.fixture(params=["websocket", "spdy"])
def transport(request, monkeypatch) -> str:
    """kubectl's transport: WebSocket (its default), or plain SPDY (its fallback)."""
    if request.param == "spdy":
        monkeypatch.setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        monkeypatch.setenv("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
    return request.param


def run_bytes(kubectl, *args: str, data: bytes = b"", timeout: float = 60):
    return subprocess.run(kubectl.argv(*args), input=data, capture_output=True,
                          timeout=timeout, cwd=kubectl.cwd, env=kubectl.env())


# ---- exec -------------------------------------------------------------------------------

def test_exec_round_trips_10_mb_through_stdin_and_stdout(kubectl, pod, transport):
    payload = os.urandom(10 * 1024 * 1024)
    proc = run_bytes(kubectl, "exec", "-i", "p", "--", "cat", data=payload)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) == len(payload)
    assert proc.stdout == payload


def test_exec_separates_stdout_and_stderr(kubectl, pod, transport):
    proc = kubectl.run("exec", "p", "--", "sh", "-c", "echo out; echo err >&2")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "out\n", "err\n")


@pytest.mark.parametrize("code", [0, 1, 42, 127])
def test_exec_exits_with_the_commands_exit_code(kubectl, pod, transport, code):
    argv = ["no-such-program"] if code == 127 else ["sh", "-c", f"exit {code}"]
    proc = kubectl.run("exec", "p", "--", *argv)
    assert proc.returncode == code
    if code:
        assert proc.stderr.endswith(f"command terminated with exit code {code}\n")
    else:
        assert proc.stderr == ""


def test_exec_names_the_container_with_c(kubectl, client, fake):
    make_pod(client, fake, "two", ("web", "side"))
    proc = kubectl.run("exec", "two", "-c", "side", "--", "sh", "-c", "exit 3")
    assert proc.returncode == 3
    assert fake.sessions[-1].argv == ["sh", "-c", "exit 3"]


def test_cp_copies_files_both_ways(kubectl, pod, transport, fake, tmp_path):
    local = tmp_path / "to-pod.txt"
    local.write_bytes(b"from the laptop\n" * 1000)
    kubectl("cp", str(local), "p:copied.txt")
    workdir = fake.pods[("default", "p")].workdir
    assert (workdir / "copied.txt").read_bytes() == local.read_bytes()

    (workdir / "made-in-pod.bin").write_bytes(bytes(range(256)) * 64)
    kubectl("cp", "p:made-in-pod.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == bytes(range(256)) * 64


# ---- a terminal ----------------------------------------------------------------------------

class Terminal:
    """kubectl on a pseudo-terminal of its own, as a user's shell runs it."""

    def __init__(self, argv: list[str], env: dict, cwd, width: int, height: int) -> None:
        self.master, slave = pty.openpty()
        self.resize(width, height)
        self.proc = subprocess.Popen(["setsid", "-c", *argv], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, cwd=cwd)
        os.close(slave)
        self.seen = b""

    def resize(self, width: int, height: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = 20) -> re.Match:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern.encode())
        while True:
            match = regex.search(self.seen)
            if match:
                self.seen = self.seen[match.end():]
                return match
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} on the terminal; it shows {self.seen[-500:]!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError as exc:        # EIO: kubectl closed the terminal
                    raise AssertionError(f"terminal closed before {pattern!r}: "
                                         f"{self.seen[-500:]!r}") from exc

    def size_settles_at(self, size: str, tries: int = 50) -> bool:
        """Run `stty size` in the remote shell until it shows size."""
        for _ in range(tries):
            self.type("stty size\n")
            if self.expect(r"(\d+ \d+)\r\n").group(1).decode() == size:
                return True
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def test_exec_it_gives_an_interactive_shell_that_follows_resizes(kubectl, pod, transport):
    term = Terminal(kubectl.argv("exec", "-it", "p", "--", "sh"), kubectl.env(), kubectl.cwd,
                    100, 30)
    try:
        term.type("PS1='svc''lab$ '\n")       # the prompt, not the echo of this line
        term.expect(r"svclab\$ ")
        # kubectl sends its terminal's size, and every change of it, on its own time
        assert term.size_settles_at("30 100")
        term.resize(120, 40)
        assert term.size_settles_at("40 120")
        term.type("tty; exit 7\n")
        term.expect(r"/dev/pts/\d+")
        assert term.proc.wait(20) == 7
        term.expect("command terminated with exit code 7")
    finally:
        term.close()


def test_attach_joins_the_containers_console(kubectl, transport, client, fake):
    make_pod(client, fake, "console")
    fake.pods[("default", "console")].console = ["sh", "-c", "read line; echo got:$line"]
    proc = kubectl.run("attach", "-i", "console", stdin="hello\n")
    assert proc.returncode == 0, proc.stderr
    assert "got:hello" in proc.stdout


# ---- errors, as kubectl prints them ---------------------------------------------------------

def test_exec_into_a_missing_pod_is_not_found(kubectl, fake):
    proc = kubectl.run("exec", "nope", "--", "true")
    assert proc.returncode == 1
    assert proc.stderr == 'Error from server (NotFound): pods "nope" not found\n'


def test_exec_into_a_missing_container(kubectl, pod, api_server):
    proc = kubectl.run("exec", "p", "-c", "nope", "--", "true")
    assert proc.returncode == 1
    assert proc.stderr == "error: container nope is not valid for pod p out of: main\n"
    # kubectl checks that itself; the server's own answer, for every other client:
    status = api_error(api_server, "/api/v1/namespaces/default/pods/p/exec?command=true"
                                   "&container=nope&stdout=true")
    assert (status["code"], status["reason"], status["message"]) == (
        400, "BadRequest", "container nope is not valid for pod p")


def test_exec_without_c_in_a_pod_of_two_containers_is_refused(api_server, client, fake):
    make_pod(client, fake, "two", ("web", "side"))
    status = api_error(api_server, "/api/v1/namespaces/default/pods/two/exec?command=true")
    assert status["message"] == ("a container name must be specified for pod two, "
                                 "choose one of: [web side]")


def test_exec_into_pods_that_do_not_run(kubectl, client, fake):
    make_pod(client, fake, "unscheduled", node=None, phase="Pending")
    make_pod(client, fake, "creating", phase="Pending")
    make_pod(client, fake, "done", phase="Succeeded")
    assert kubectl.run("exec", "unscheduled", "--", "true").stderr == (
        "error: unable to upgrade connection: pod unscheduled does not have a host assigned\n")
    assert kubectl.run("exec", "creating", "--", "true").stderr == (
        'error: unable to upgrade connection: container not found ("main")\n')
    assert kubectl.run("exec", "done", "--", "true").stderr == (
        "error: cannot exec into a container in a completed pod; current phase is Succeeded\n")


def test_without_a_node_side_streaming_is_unavailable(kubectl, client, api_server):
    make_pod(client, None, "p")
    proc = kubectl.run("exec", "p", "--", "true")
    assert proc.returncode == 1
    assert "pod streaming is not available" in proc.stderr


def upgrade(server, path: str, *, admin: bool = True) -> tuple[int, bytes]:
    """Send a WebSocket upgrade request for path (as the Python client would); the
    response's status code and what came with it."""
    context = ssl.create_default_context(cafile=str(server.ca_cert_path))
    if admin:
        context.load_cert_chain(server.state_dir / "admin.crt", server.state_dir / "admin.key")
    host, port = server.addresses[0].split(":")
    with socket.create_connection((host, int(port)), 10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or (b"Content-Length" in answer and not
                                              answer.rstrip().endswith(b"}")):
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def api_error(server, path: str) -> dict:
    code, body = upgrade(server, path)
    assert code >= 400, f"GET {path} was not refused"
    return json.loads(body)


def test_an_unauthenticated_upgrade_gets_401(api_server, pod):
    code, body = upgrade(api_server, "/api/v1/namespaces/default/pods/p/exec?command=sh",
                         admin=False)
    assert code == 401
    assert json.loads(body)["reason"] == "Unauthorized"


# ---- a client that goes away ----------------------------------------------------------------

def test_a_client_killed_mid_exec_leaves_no_thread_or_process(kubectl, pod, transport, fake):
    before = threading.active_count()
    proc = subprocess.Popen(kubectl.argv("exec", "-i", "p", "--", "cat"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=kubectl.env(), cwd=kubectl.cwd)
    try:
        wait_until("the exec to run", lambda: fake.sessions and fake.sessions[-1].running)
        wait_until("exec threads", lambda: threading.active_count() > before)
        proc.stdin.write(b"still here\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"still here\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        session = fake.sessions[-1]
        wait_until("the process to be killed", lambda: not session.running)
        wait_until("the server's threads to end", lambda: threading.active_count() <= before)
        assert session.killed
    finally:
        if proc.poll() is None:
            proc.kill()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()


# ---- port-forward ------------------------------------------------------------------------

@pytest.fixture
def echo():
    server = EchoServer(b"pod")
    yield server
    server.close()


class PortForward:
    """`kubectl port-forward` running; the local ports it listens on."""

    def __init__(self, kubectl, *args: str) -> None:
        self.proc = subprocess.Popen(kubectl.argv("port-forward", *args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=kubectl.env(),
                                     cwd=kubectl.cwd)
        line = self.proc.stdout.readline()
        match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        assert match, f"kubectl port-forward said {line!r}: {self.proc.stderr.read()[:500]!r}"
        self.local = int(match.group(1))

    def ask(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.local), 10) as conn:
            conn.settimeout(20)
            conn.sendall(data)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.communicate(timeout=20)


def test_port_forward_carries_20_concurrent_connections(kubectl, pod, transport, fake, echo):
    fake.listen("default", "p", 80, echo.address)
    forward = PortForward(kubectl, "pod/p", ":80")
    try:
        answers: dict[int, bytes] = {}

        def one(i: int) -> None:
            answers[i] = forward.ask(f"connection {i} ".encode() + b"x" * 50_000 + b"\n")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(answers) == list(range(20))
        for i, answer in answers.items():
            assert answer == f"pod:connection {i} ".encode() + b"x" * 50_000 + b"\n"
        assert forward.proc.poll() is None        # still forwarding
        assert forward.ask(b"one more\n") == b"pod:one more\n"
    finally:
        forward.stop()


def test_port_forward_to_a_port_nothing_listens_on(kubectl, pod, fake):
    forward = PortForward(kubectl, "p", ":81")
    assert forward.ask(b"hello?\n") == b""
    code = forward.proc.wait(30)    # kubectl 1.37 gives up after a failed connection
    err = forward.proc.stderr.read()
    assert ("error forwarding port 81 to pod " in err and ", uid : failed to execute portforward"
            " in network namespace" in err and "failed to connect to localhost:81 inside "
            "namespace" in err and "dial tcp4 127.0.0.1:81: connect: connection refused" in err)
    assert err.rstrip().endswith("error: lost connection to pod")
    assert code == 1


def test_discovery_lists_the_pod_subresources(client):
    names = {r["name"]: r for r in client.request("GET", "/api/v1")["resources"]}
    assert names["pods/exec"]["kind"] == "PodExecOptions"
    assert names["pods/exec"]["verbs"] == ["create", "get"]
    assert names["pods/attach"]["kind"] == "PodAttachOptions"
    assert names["pods/portforward"]["kind"] == "PodPortForwardOptions"
    assert (names["pods/log"]["kind"], names["pods/log"]["verbs"]) == ("Pod", ["get"])
