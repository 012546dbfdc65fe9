"""The pod verbs end to end: the real kubectl's exec, run -it, cp, logs,
port-forward and events against a real lab, and the sandbox a pod is.

One lab for the module: a 2-replica `web` deployment (the built-in workload
server, as `--image=nginx` gives), its Service, and a `shell` pod.  Every
command is the real kubectl with the lab's kubeconfig, as a user types it.
"""
from __future__ import annotations

import concurrent.futures
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
import sys
import termios
import time
import urllib.request
from pathlib import Path

import pytest

from labtools import running_lab, wait_for
from topo.netns import netns_inode
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]
KUBECTL = Path(sys.executable).parent / "kubectl"
PAYLOAD = 10 * 1024 * 1024


class Kubectl:
    def __init__(self, lab_name: str, home: Path):
        self.lab_name = lab_name
        self.kubeconfig = str(LabPaths(lab_name).kubeconfig)
        self.env = {**os.environ, "HOME": str(home)}

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", self.kubeconfig, *args]

    def run(self, *args: str, input: bytes | str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        proc = subprocess.run(self.argv(*args), input=input, capture_output=True, text=text,
                              env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr!r}")
        return proc

    def out(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout

    def pod_names(self, selector: str) -> list[str]:
        return self.out("get", "pods", "-l", selector, "-o",
                        "jsonpath={.items[*].metadata.name}").split()

    def running(self, pod: str) -> bool:
        return self.out("get", "pod", pod, "-o", "jsonpath={.status.phase}",
                        check=False) == "Running"


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    with running_lab(prefix="verbs") as lab:
        kubectl = Kubectl(lab.name, tmp_path_factory.mktemp("home"))
        kubectl.run("create", "deployment", "web", "--image=nginx", "--replicas=2")
        kubectl.run("expose", "deployment", "web", "--port", "80")
        kubectl.run("run", "shell", "--image=busybox", "--", "sleep", "3600")
        wait_for("2 web pods and the shell running", lambda: len(
            [p for p in kubectl.pod_names("app=web") if kubectl.running(p)]) == 2
            and kubectl.running("shell"), timeout=60)
        yield kubectl


@pytest.fixture(scope="module")
def web(k) -> str:
    return k.pod_names("app=web")[0]


# --- exec ----------------------------------------------------------------------

def test_exec_pipes_10_mb_through_the_pod_byte_for_byte(k, web):
    payload = os.urandom(PAYLOAD)
    proc = k.run("exec", "-i", web, "--", "cat", input=payload, timeout=120)
    assert len(proc.stdout) == PAYLOAD and proc.stdout == payload


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exec_returns_the_commands_exit_code(k, web, code):
    proc = k.run("exec", web, "--", "sh", "-c", f"echo out; echo err >&2; exit {code}",
                 check=False)
    assert proc.returncode == code
    assert proc.stdout == "out\n" and "err\n" in proc.stderr
    if code:
        assert f"command terminated with exit code {code}" in proc.stderr


def test_exec_of_a_missing_program_says_so(k, web):
    proc = k.run("exec", web, "--", "sh", "-c", "no-such-program", check=False)
    assert proc.returncode == 127 and "not found" in proc.stderr
    proc = k.run("exec", web, "--", "no-such-program", check=False)
    assert proc.returncode in (126, 127, 1) and "no-such-program" in proc.stderr


def _pty_session(argv: list[str], env: dict, rows: int, cols: int):
    pid, master = pty.fork()
    if pid == 0:                                      # the child: kubectl on the pty
        os.execve(argv[0], argv, env)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return pid, master


def _read_until(master: int, pattern: str, timeout: float = 20.0) -> str:
    seen, deadline = b"", time.monotonic() + timeout
    while not re.search(pattern, seen.decode(errors="replace")):
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} on the terminal; saw {seen[-400:]!r}"
        ready, _, _ = select.select([master], [], [], min(left, 0.5))
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    return seen.decode(errors="replace")


def _finish(pid: int, master: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            os.close(master)
            return os.waitstatus_to_exitcode(status)
        assert time.monotonic() < deadline, "kubectl did not exit"
        try:
            os.read(master, 65536)                    # keep the pty drained
        except OSError:
            time.sleep(0.05)


def test_exec_it_gives_a_terminal_that_follows_resize(k, web):
    pid, master = _pty_session(k.argv("exec", "-it", web, "--", "sh"), k.env, 24, 80)
    _read_until(master, r"[#$] $")
    os.write(master, b"stty size\n")
    _read_until(master, r"24 80")
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    time.sleep(0.3)                                   # kubectl forwards the new size
    os.write(master, b"stty size\n")
    _read_until(master, r"40 132")
    os.write(master, b"exit 3\n")
    assert _finish(pid, master) == 3


def test_run_it_rm_gives_a_shell_in_a_fresh_pod_and_removes_it(k):
    argv = k.argv("run", "-it", "--rm", "--restart=Never", "--image=busybox", "tmp-shell",
                  "--", "sh")
    pid, master = _pty_session(argv, k.env, 24, 80)
    _read_until(master, r"try pressing enter", timeout=40)
    os.write(master, b"\n")                          # as kubectl asks: dash draws no prompt
    _read_until(master, r"[#$] $")
    os.write(master, b"echo inside-$((6*7)) $(hostname)\n")
    _read_until(master, r"inside-42 tmp-shell")
    os.write(master, b"exit\n")
    _finish(pid, master, timeout=60)
    wait_for("tmp-shell deleted", lambda: "NotFound" in k.run(
        "get", "pod", "tmp-shell", check=False).stderr, timeout=30)


def test_cp_copies_both_ways_into_the_pods_own_tmp(k, web, tmp_path):
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(300_000))
    name = f"svclab-cp-{os.getpid()}.bin"
    k.run("cp", str(local), f"{web}:/tmp/{name}")
    assert not Path("/tmp", name).exists()            # the pod's /tmp is its own
    back = tmp_path / "down.bin"
    k.run("cp", f"{web}:/tmp/{name}", str(back))
    assert back.read_bytes() == local.read_bytes()


# --- the sandbox -----------------------------------------------------------------

def test_a_pod_has_its_own_hostname_hosts_file_and_container_environment(k, web):
    host_name, host_hosts = socket.gethostname(), Path("/etc/hosts").read_text()
    ip = k.out("get", "pod", web, "-o", "jsonpath={.status.podIP}")
    assert k.out("exec", web, "--", "hostname").strip() == web
    hosts = k.out("exec", web, "--", "cat", "/etc/hosts")
    assert hosts.startswith("# Kubernetes-managed hosts file")
    assert re.search(rf"^{re.escape(ip)}\s+{web}$", hosts, re.M), hosts
    env = dict(line.split("=", 1) for line in k.out("exec", web, "--", "env").splitlines()
               if "=" in line)
    assert env["HOSTNAME"] == web
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    # Service links are those of the services that existed when a pod started:
    # the web pods may predate their Service, a pod started now does not.
    k.run("run", "envcheck", "--image=busybox", "--", "sleep", "600")
    wait_for("envcheck running", lambda: k.running("envcheck"), timeout=30)
    env = dict(line.split("=", 1) for line in k.out("exec", "envcheck", "--", "env")
               .splitlines() if "=" in line)
    web_ip = k.out("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
    assert env["WEB_SERVICE_HOST"] == web_ip and env["WEB_SERVICE_PORT"] == "80"
    assert env["WEB_PORT"] == f"tcp://{web_ip}:80"
    k.run("delete", "pod", "envcheck", "--wait=false")
    assert socket.gethostname() == host_name          # nothing leaked to the machine
    assert Path("/etc/hosts").read_text() == host_hosts
    assert "KUBERNETES_SERVICE_HOST" not in os.environ


# --- logs ------------------------------------------------------------------------

def _get_from_shell(k, url: str) -> str:
    code = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
    return k.out("exec", "shell", "--", sys.executable, "-c", code, url)


def test_logs_show_each_request_with_the_client_address_and_follow_new_lines(k, web):
    ip = k.out("get", "pod", web, "-o", "jsonpath={.status.podIP}")
    shell_ip = k.out("get", "pod", "shell", "-o", "jsonpath={.status.podIP}")
    _get_from_shell(k, f"http://{ip}/hostname?first-request")
    wait_for("the access-log line",
             lambda: "GET /hostname?first-request HTTP/1.1" in k.out("logs", web))
    line = next(x for x in k.out("logs", web).splitlines() if "first-request" in x)
    assert line.startswith(shell_ip)
    stamped = k.out("logs", web, "--timestamps", "--tail=1")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ", stamped), stamped
    follow = subprocess.Popen(k.argv("logs", "-f", "--tail=0", web), stdout=subprocess.PIPE,
                              env=k.env)
    try:
        time.sleep(1.0)
        _get_from_shell(k, f"http://{ip}/hostname?followed")
        ready, _, _ = select.select([follow.stdout], [], [], 10)
        assert ready and b"?followed" in follow.stdout.readline()
    finally:
        follow.kill()
        follow.wait(timeout=10)


def test_logs_previous_shows_the_run_before_a_restart(k):
    k.run("run", "flaky", "--image=busybox", "--restart=Always", "--",
          "sh", "-c", "echo run-$(date +%s%N); sleep 1; exit 1")
    wait_for("a restart", lambda: int(k.out(
        "get", "pod", "flaky", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
        or 0) >= 1, timeout=60)
    previous = k.out("logs", "flaky", "--previous")
    assert re.fullmatch(r"run-\d+\n", previous), previous
    assert "previous terminated container" in k.run("logs", "shell", "--previous",
                                                    check=False).stderr
    k.run("delete", "pod", "flaky", "--wait=false")


# --- port-forward ------------------------------------------------------------------

def _forward(k, *args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(k.argv("port-forward", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=k.env, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    assert ready, "port-forward printed nothing"
    line = proc.stdout.readline()
    match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
    assert match, line
    return proc, int(match.group(1))


@pytest.mark.parametrize("target", ["pod", "svc/web", "deploy/web"])
def test_port_forward_serves_20_concurrent_connections(k, web, target):
    proc, port = _forward(k, web if target == "pod" else target, ":80")
    try:
        def get(i: int) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname?{i}",
                                        timeout=15) as answer:
                return answer.read().decode().strip()
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(get, range(20)))
        assert len(answers) == 20 and all(a.startswith("web-") for a in answers)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_port_forward_to_a_port_nothing_listens_on_errors_instead_of_hanging(k, web):
    proc, port = _forward(k, web, ":9")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.settimeout(10)
            assert conn.recv(1) == b""                 # closed, not a hang
        time.sleep(0.5)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "error forwarding port 9" in err or "connection refused" in err, err


# --- events ----------------------------------------------------------------------

def test_events_tell_the_story_of_a_deployment_and_a_deleted_pod(k, web):
    victim = next(p for p in k.pod_names("app=web") if p != web)
    k.run("delete", "pod", victim)
    wait_for("the pod's Killing event", lambda: "Killing" in k.out("get", "events"))
    events = k.out("get", "events")
    for reason in ("ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Started", "Killing"):
        assert reason in events, events
    described = k.out("describe", "pod", web)
    assert re.search(r"^Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message", described, re.M)
    assert "Scheduled" in described and "default-scheduler" in described


# --- bad input -------------------------------------------------------------------

def test_exec_into_what_is_not_there_gets_kubectls_errors(k, web):
    missing = k.run("exec", "no-such-pod", "--", "true", check=False)
    assert missing.returncode == 1
    assert 'pods "no-such-pod" not found' in missing.stderr
    container = k.run("exec", web, "-c", "nope", "--", "true", check=False)
    assert container.returncode == 1 and "nope" in container.stderr
    k.run("run", "nowhere", "--image=busybox", "--overrides",
          json.dumps({"spec": {"nodeSelector": {"no-such-label": "x"}}}), "--", "sleep", "60")
    pending = k.run("exec", "nowhere", "--", "true", check=False)
    assert pending.returncode == 1
    assert "pod nowhere does not have a host assigned" in pending.stderr, pending.stderr
    k.run("run", "done", "--image=busybox", "--restart=Never", "--", "true")
    wait_for("done Succeeded", lambda: k.out("get", "pod", "done", "-o",
                                             "jsonpath={.status.phase}") == "Succeeded")
    completed = k.run("exec", "done", "--", "true", check=False)
    assert completed.returncode == 1
    assert "current phase is Succeeded" in completed.stderr, completed.stderr
    k.run("delete", "pod", "nowhere", "done", "--wait=false")


def test_an_unauthenticated_upgrade_is_refused(k, web):
    state = read_state(LabPaths(k.lab_name))
    host, port = state.api_url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw) as conn:
        conn.sendall((f"GET /api/v1/namespaces/default/pods/{web}/exec?command=true"
                      "&stdout=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n").encode())
        assert conn.recv(100).startswith(b"HTTP/1.1 401")


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


def _pod_processes(k, pod: str, needle: str) -> list[int]:
    ip = k.out("get", "pod", pod, "-o", "jsonpath={.status.podIP}")
    state = read_state(LabPaths(k.lab_name))
    host = next(r for r in state.hosts.values() if r.kind == "pod" and ip in r.addresses)
    inode, found = netns_inode(host.pid), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if needle in cmdline and netns_inode(int(entry.name)) == inode:
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def test_a_client_that_disconnects_mid_exec_leaves_nothing_behind(k, web):
    daemon = read_state(LabPaths(k.lab_name)).daemon_pid
    k.run("exec", web, "--", "true")                  # warm: pools and caches exist
    before = _threads(daemon)
    proc = subprocess.Popen(k.argv("exec", web, "--", "sleep", "4321"), env=k.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("sleep running in the pod", lambda: _pod_processes(k, web, "sleep 4321"))
    proc.kill()
    proc.wait(timeout=10)
    wait_for("the exec'd process gone", lambda: not _pod_processes(k, web, "sleep 4321"),
             timeout=15)
    wait_for("the daemon's threads back", lambda: _threads(daemon) <= before, timeout=15)
