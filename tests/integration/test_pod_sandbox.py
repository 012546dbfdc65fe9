"""A pod is a sandbox, and the runtime streams into it as a kubelet would (root).

A small lab is built in this process (one worker, no control plane), the
way labd/daemon.py builds one, and LabPodRuntime drives pods in it directly:
hostname and /etc files, environment, a private /tmp, exec with pipes and a
terminal, exit codes, a missing program, attach, dial, CRI logs across a
restart; and afterwards no process is left and the machine's own hostname,
/etc/hosts and environment are what they were.
"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import pytest
from mininet.log import setLogLevel

from base.cri import ConsoleConfig, PodSandboxConfig, StreamTargetError
from base.errors import UsageError
from base.waiting import wait_until
from controlplane.kubelet.serviceaccount import MOUNT_PATH, projected_files
from topo.cleanup import processes_in_netns
from topo.crilog import parse_line
from topo.netns import ProcRef, call_in_netns, netns_cookie
from topo.network import LabNetwork, host_exec_argv
from topo.node_probes import socket_listening
from topo.plan import cali_name, etc_hosts_for_pod
from topo.pod_runtime import LabPodRuntime
from topo.pod_sandbox import kept_under_tmp
from topo.spec import parse_spec
from topo.state import LabPaths, LabState, write_state

pytestmark = pytest.mark.root
NODE = "ip-172-31-0-11"
SPEC = {"nodes": [{"name": "ip-172-31-0-10", "role": "control-plane"}, {"name": NODE}],
        "clients": []}
KUBE_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_PORT": "tcp://10.96.0.1:443"}
SLEEP = ["sleep", "3600"]


@dataclass
class Lab:
    network: LabNetwork
    runtime: LabPodRuntime

    def pod(self, name: str, *, argv=SLEEP, env=None, console=None, **sandbox) -> str:
        ip = self.runtime.create_pod("default", name, NODE,
                                     PodSandboxConfig(hostname=sandbox.pop("hostname", name),
                                                      uid=f"uid-{name}", **sandbox))
        self.runtime.start_container("default", name, "main", list(argv),
                                     {**KUBE_ENV, **(env or {})}, console)
        return ip


@contextlib.contextmanager
def lab_in_process(tmp_path_factory, tag: str):
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces)")
    setLogLevel("error")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SVCLAB_RUN_DIR", str(tmp_path_factory.mktemp("run")))
        paths = LabPaths(f"{tag}{os.getpid() % 100000}")
        paths.root.mkdir(parents=True)
        me = ProcRef.of(os.getpid())
        state = LabState(name=paths.name, daemon_pid=me.pid, daemon_start=me.start)
        write_state(paths, state)
        with LabNetwork(parse_spec(SPEC), paths, state) as network:
            runtime = LabPodRuntime(network)
            try:
                yield Lab(network, runtime)
            finally:
                runtime.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_in_process(tmp_path_factory, "sbx") as running:
        yield running


def drain(fd: int | None, deadline: float) -> bytes:
    """Everything fd gives until EOF (an ended terminal: EIO), within the deadline."""
    data = b""
    while fd is not None:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no end of output by the deadline; got {data!r}"
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def read_until(fd: int, wanted: bytes, timeout: float = 10.0) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while wanted not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"{wanted!r} did not come in {timeout} s; got {data!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"output ended before {wanted!r}; got {data!r}"
        data += chunk
    return data


def run(lab: Lab, pod: str, *argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    session = lab.runtime.exec("default", pod, "main", list(argv), stdin=stdin is not None,
                               tty=False)
    try:
        if stdin is not None:
            os.write(session.stdin, stdin)
            session.close_stdin()
        deadline = time.monotonic() + 15
        out, err = drain(session.stdout, deadline), drain(session.stderr, deadline)
        return session.wait(15), out.decode(), err.decode()
    finally:
        session.kill()


def log_lines(lab: Lab, pod: str, previous: bool = False) -> list:
    path = lab.runtime.log_path("default", pod, "main", previous=previous)
    with open(path, "rb") as handle:
        return [parse_line(line) for line in handle.read().splitlines()]


# --- the sandbox ------------------------------------------------------------------------

def test_hostname_hosts_and_hostname_files_are_the_pods(lab):
    ip = lab.pod("web-1")
    assert run(lab, "web-1", "hostname") == (0, "web-1\n", "")
    assert run(lab, "web-1", "cat", "/etc/hostname") == (0, "web-1\n", "")
    assert run(lab, "web-1", "cat", "/etc/hosts")[1] == etc_hosts_for_pod([ip], "web-1")
    db = lab.pod("db-0", hostname="db-0", domain="db.default.svc.cluster.local")
    assert run(lab, "db-0", "cat", "/etc/hosts")[1].endswith(
        f"{db}\tdb-0.db.default.svc.cluster.local\tdb-0\n")
    assert run(lab, "db-0", "getent", "hosts", "db-0")[1].split() == [
        db, "db-0.db.default.svc.cluster.local", "db-0"]
    assert "nameserver 10.96.0.10" in run(lab, "web-1", "cat", "/etc/resolv.conf")[1]


def test_the_pods_wire_is_ipv4_only_and_its_veth_answers_arp_for_the_gateway(lab):
    """Nothing of IPv6 on the wire (no link-local address, so no DAD or router
    solicitation in a capture); the loopback keeps ::1, as a real pod's."""
    lab.pod("v4-1")
    assert run(lab, "v4-1", "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6",
               "/proc/sys/net/ipv6/conf/lo/disable_ipv6")[1].split() == ["1", "0"]
    code, out, _ = run(lab, "v4-1", "ip", "-6", "-o", "addr", "show")
    assert code == 0 and [line.split()[1:4] for line in out.splitlines()] == [
        ["lo", "inet6", "::1/128"]]
    node = next(r for r in lab.network.state.hosts.values() if r.kind == "node"
                and r.name == NODE)
    veth = cali_name("default", "v4-1")

    def settings() -> list[str]:
        paths = (f"/proc/sys/net/ipv4/conf/{veth}/forwarding",
                 f"/proc/sys/net/ipv4/conf/{veth}/proxy_arp",
                 f"/proc/sys/net/ipv4/neigh/{veth}/proxy_delay",
                 f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6")
        return [open(path).read().strip() for path in paths]
    assert call_in_netns(node.pid, settings, timeout=10) == ["1", "1", "0", "1"]


def test_the_environment_is_the_containers_and_nothing_of_the_host(lab, monkeypatch):
    monkeypatch.setenv("SVCLAB_HOST_ONLY", "leak")
    lab.pod("env-1", env={"GREETING": "hello"})
    code, out, _ = run(lab, "env-1", "env")
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert code == 0 and env.pop("PWD", "/") == "/"
    assert env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOSTNAME": "env-1", "HOME": "/root", "GREETING": "hello", **KUBE_ENV}
    assert run(lab, "env-1", "pwd") == (0, "/\n", "")
    assert lab.runtime.exec_in_pod("default", "env-1", ["sh", "-c", 'test "$GREETING" = hello'],
                                   5) == 0


def test_tmp_is_private_to_each_pod(lab):
    lab.pod("tmp-a")
    lab.pod("tmp-b")
    name = f"svclab-{uuid.uuid4().hex}"
    assert run(lab, "tmp-a", "sh", "-c", f"echo secret > /tmp/{name} && cat /tmp/{name}") == (
        0, "secret\n", "")
    assert not os.path.exists(f"/tmp/{name}")
    # Empty, but for the folders svclab itself runs from when its checkout is under /tmp.
    kept = "".join(f"{path.removeprefix('/tmp/')}\n" for path in kept_under_tmp())
    assert run(lab, "tmp-b", "ls", "-A", "/tmp") == (0, kept, "")
    assert run(lab, "tmp-a", "sh", "-c", "mount | grep ' /tmp '")[1].startswith("svclab-pod-tmp")



def test_run_is_the_pods_own_tmpfs_with_its_token_read_only(lab):
    lab.pod("run-a", volumes=(projected_files("eyJtoken", "ca", "default"),))
    lab.pod("run-b")
    assert run(lab, "run-a", "sh", "-c", "mount | grep ' /run '")[1].startswith("svclab-pod-run")
    assert run(lab, "run-a", "stat", "-c", "%a", "/run/lock") == (0, "1777\n", "")
    assert run(lab, "run-a", "readlink", "/run/shm") == (0, "/dev/shm\n", "")
    assert run(lab, "run-a", "cat", f"{MOUNT_PATH}/token") == (0, "eyJtoken", "")
    code, _, err = run(lab, "run-a", "sh", "-c", f"echo x > {MOUNT_PATH}/token")
    assert code != 0 and "Read-only file system" in err
    # The other pod's /run is its own: no token there, and a file made in one
    # pod's /run is not in the other's.
    assert run(lab, "run-b", "ls", "/run/secrets")[0] != 0
    assert run(lab, "run-a", "touch", "/run/only-a") == (0, "", "")
    assert run(lab, "run-b", "ls", "/run/only-a")[0] != 0


# --- exec -------------------------------------------------------------------------------

def test_exec_with_pipes_keeps_the_streams_apart_and_gives_the_exit_code(lab):
    lab.pod("exec-1")
    assert run(lab, "exec-1", "cat", stdin=b"one\ntwo\n") == (0, "one\ntwo\n", "")
    assert run(lab, "exec-1", "sh", "-c", "echo out; echo err >&2; exit 3") == (3, "out\n",
                                                                                  "err\n")
    assert run(lab, "exec-1", "sh", "-c", "kill -TERM $$")[0] == 143


def test_exec_with_a_terminal_follows_its_size(lab):
    lab.pod("tty-1")
    session = lab.runtime.exec("default", "tty-1", "main", ["sh"], stdin=True, tty=True)
    try:
        assert session.stderr is None
        session.resize(100, 40)
        os.write(session.stdin, b"stty size; tty; exit 7\n")
        out = drain(session.stdout, time.monotonic() + 15)
        assert session.wait(15) == 7
    finally:
        session.kill()
    assert b"40 100\r\n" in out and b"/dev/pts/" in out


def test_a_missing_program_fails_as_runc_does(lab):
    lab.pod("missing-1")
    assert run(lab, "missing-1", "no-such-program") == (127, "", (
        "OCI runtime exec failed: exec failed: unable to start container process: exec: "
        '"no-such-program": executable file not found in $PATH: unknown\n'))
    code, _, err = run(lab, "missing-1", "/etc/hosts")
    assert (code, err) == (126, "OCI runtime exec failed: exec failed: unable to start "
                                'container process: exec: "/etc/hosts": permission denied: '
                                "unknown\n")
    assert lab.runtime.exec_in_pod("default", "missing-1", ["no-such-program"], 5) == 127
    with pytest.raises(StreamTargetError, match=r'container not found \("nope"\)'):
        lab.runtime.exec("default", "missing-1", "nope", ["true"], stdin=False, tty=False)
    with pytest.raises(StreamTargetError, match="pod does not exist"):
        lab.runtime.exec("default", "no-pod", "main", ["true"], stdin=False, tty=False)


# --- attach -----------------------------------------------------------------------------

def test_attach_joins_the_console_of_a_stdin_container(lab):
    lab.pod("cat-1", argv=["cat"], console=ConsoleConfig(stdin=True, stdin_once=True))
    first = lab.runtime.attach("default", "cat-1", "main", stdin=True, tty=False)
    try:
        os.write(first.stdin, b"ping\n")
        assert read_until(first.stdout, b"ping\n") == b"ping\n"
        assert first.wait(0.2) is None                 # cat still reads
        first.close_stdin()                            # stdinOnce: its input ends now
        assert first.wait(15) == 0
        assert drain(first.stdout, time.monotonic() + 15) == b""
    finally:
        first.kill()
    assert [(l.stream, l.content) for l in log_lines(lab, "cat-1")] == [("stdout", b"ping")]


def test_kubectl_run_it_shell_waits_for_its_terminal(lab):
    lab.pod("shell-1", argv=["sh"], console=ConsoleConfig(stdin=True, stdin_once=True, tty=True))
    session = lab.runtime.attach("default", "shell-1", "main", stdin=True, tty=True)
    try:
        session.resize(90, 30)
        os.write(session.stdin, b"echo $HOSTNAME; stty size\n")
        read_until(session.stdout, b"shell-1\r\n30 90\r\n")
        os.write(session.stdin, b"exit 4\n")
        assert session.wait(15) == 4
    finally:
        session.kill()


# --- dial -------------------------------------------------------------------------------

def test_dial_reaches_localhost_inside_the_pod_and_names_a_closed_port(lab):
    server = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 8080)); s.listen(); "
              "c, _ = s.accept(); c.sendall(b'hello from ' + socket.gethostname().encode())")
    lab.pod("local-1", argv=["python3", "-c", server])
    sock = wait_until("the pod's localhost listener", lambda: _dial(lab, "local-1", 8080))
    with sock:
        sock.settimeout(10)
        assert sock.recv(100) == b"hello from local-1"
    with pytest.raises(StreamTargetError) as closed:
        lab.runtime.dial("default", "local-1", 8081, 5)
    assert closed.value.reason == "InternalError"
    assert "failed to connect to localhost:8081 inside namespace" in closed.value.message
    assert ("IPv4: dial tcp4 127.0.0.1:8081: connect: connection refused IPv6 dial tcp6 "
            "[::1]:8081: connect: ") in closed.value.message


def _dial(lab: Lab, pod: str, port: int) -> socket.socket | None:
    try:
        return lab.runtime.dial("default", pod, port, 2)
    except StreamTargetError:
        return None


# --- logs -------------------------------------------------------------------------------

def test_logs_are_cri_lines_and_the_previous_run_is_kept(lab):
    script = "echo run-$RUN; echo oops >&2; printf partial"
    lab.pod("log-1", argv=["sh", "-c", script], env={"RUN": "1"})
    assert lab.runtime.log_path("default", "log-1", "main", previous=True) is None
    handle = next(h for h in lab.runtime._runs if h.pod == "log-1")
    assert wait_until("first run ends", lambda: not lab.runtime.container_state(handle).running)
    assert lab.runtime.container_state(handle).exit_code == 0
    lab.runtime.start_container("default", "log-1", "main", ["sh", "-c", script],
                                {"RUN": "2"})
    first = wait_until("first run's log", lambda: len(log_lines(lab, "log-1", True)) == 3 and
                       log_lines(lab, "log-1", True))
    assert {(l.stream, l.partial, l.content) for l in first} == {
        ("stdout", False, b"run-1"), ("stderr", False, b"oops"), ("stdout", True, b"partial")}
    current = wait_until("second run's log", lambda: [l.content for l in log_lines(
        lab, "log-1") if l.stream == "stdout"] == [b"run-2", b"partial"])
    assert current
    folder = os.path.dirname(os.path.dirname(lab.runtime.log_path("default", "log-1", "main")))
    assert folder.endswith("/pods/default_log-1_uid-log-1")
    lab.runtime.remove_pod("default", "log-1")
    assert not os.path.exists(folder)


def test_signals_reach_the_whole_group_and_give_the_exit_code(lab):
    lab.pod("group-1", argv=["sh", "-c", "sleep 3600 & sleep 3600"])
    handle = next(h for h in lab.runtime._runs if h.pod == "group-1")
    members = wait_until("two sleeps", lambda: len(_group(handle.pid)) == 3 and
                         _group(handle.pid))
    lab.runtime.signal_container(handle, signal.SIGTERM)
    assert wait_until("stopped", lambda: not lab.runtime.container_state(handle).running)
    assert lab.runtime.container_state(handle).exit_code == 143
    assert wait_until("group gone", lambda: not any(os.path.exists(f"/proc/{pid}")
                                                    and _state(pid) != "Z" for pid in members))


def _group(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid and _state(int(entry)) != "Z":
                    found.append(int(entry))
    return found


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_removed_pods_namespace_is_forgotten(lab):
    """The kernel reuses a dead namespace's inode for the next namespace made
    anywhere (another lab's pod too): the lab must not stop, at its `down` or
    `clean`, the processes of a namespace that merely has an old pod's number."""
    lab.pod("gone-1")
    record = next(r for r in lab.network.state.hosts.values() if r.name == "gone-1")
    assert record.netns in lab.network.state.netns_seen
    cookie = lab.network.state.cookies()[record.netns]
    lab.runtime.remove_pod("default", "gone-1")
    assert record.netns not in lab.network.state.netns_seen
    assert processes_in_netns({record.netns}, cookies={record.netns: cookie}) == []


# --- pods served by the node's workload server ---------------------------------------------

def builtin(name: str, ip: str, grace: int = 30) -> list[str]:
    """The kubelet's argv for the built-in server (controlplane/kubelet/containers.py)."""
    return [sys.executable, "-m", "agents.workload", "--pod-name", name, "--pod-ip", ip,
            "--grace", str(grace), "--port", "80/TCP"]


def node_get(lab: Lab, ip: str, path: str) -> str:
    node = next(r for r in lab.network.state.hosts.values() if r.kind == "node"
                and r.name == NODE)
    return call_in_netns(node.pid, lambda: urllib.request.urlopen(
        f"http://{ip}{path}", timeout=5).read().decode(), timeout=10)


def test_a_built_in_server_pod_has_no_process_and_answers_as_itself(lab):
    ip = lab.runtime.create_pod("default", "served-1", NODE,
                                PodSandboxConfig(hostname="served-1", uid="uid-served-1"))
    handle = lab.runtime.start_container("default", "served-1", "main",
                                         builtin("served-1", ip, grace=1), {})
    record = next(r for r in lab.network.state.hosts.values() if r.name == "served-1")
    assert processes_in_netns({record.netns}) == []
    assert wait_until("listening", lambda: lab.runtime.listening(handle, 80, "TCP"))
    # What the node's server reported bound is what the pod's socket table shows.
    assert socket_listening(record.pid, 80, "TCP")
    assert not lab.runtime.listening(handle, 8080, "TCP")
    assert not lab.runtime.listening(handle, 80, "UDP")
    assert node_get(lab, ip, "/hostname") == "served-1"
    assert node_get(lab, ip, "/ready") == "ready"
    code, out, _ = run(lab, "served-1", "hostname")      # exec still enters the pod
    assert (code, out.strip()) == (0, "served-1")
    lines = wait_until("the access log", lambda: len(log_lines(lab, "served-1")) >= 3
                       and log_lines(lab, "served-1"))
    assert b'"event": "listening"' in lines[0].content
    assert b"GET /hostname" in lines[1].content
    lab.runtime.signal_container(handle, signal.SIGTERM)     # Terminating: not ready, serving
    with pytest.raises(urllib.error.HTTPError):
        node_get(lab, ip, "/ready")
    assert wait_until("ended after its grace", lambda: not lab.runtime.container_state(
        handle).running, timeout=10)
    assert lab.runtime.container_state(handle).exit_code == 0
    assert not lab.runtime.listening(handle, 80, "TCP")
    lab.runtime.remove_pod("default", "served-1")


def test_a_served_container_killed_gives_137_and_a_taken_port_fails_it(lab):
    ip = lab.pod("served-2", argv=["python3", "-m", "http.server", "80"])
    record = next(r for r in lab.network.state.hosts.values() if r.name == "served-2")
    assert wait_until("the pod's own server", lambda: socket_listening(record.pid, 80, "TCP"))
    taken = lab.runtime.start_container("default", "served-2", "second",
                                        builtin("served-2", ip), {})
    assert wait_until("failed", lambda: not lab.runtime.container_state(taken).running)
    assert lab.runtime.container_state(taken).exit_code == 1
    log = lab.runtime.log_path("default", "served-2", "second")
    assert b"cannot listen" in open(log, "rb").read()
    other = lab.runtime.start_container(
        "default", "served-2", "third", builtin("served-2", ip)[:-1] + ["8080/TCP"], {})
    assert wait_until("listening", lambda: lab.runtime.listening(other, 8080, "TCP"))
    lab.runtime.signal_container(other, signal.SIGKILL)
    assert wait_until("killed", lambda: not lab.runtime.container_state(other).running)
    assert lab.runtime.container_state(other).exit_code == 137
    lab.runtime.remove_pod("default", "served-2")


def test_containers_of_a_node_server_that_died_end_137_and_start_again_on_a_new_one(lab):
    first_ip = lab.runtime.create_pod("default", "served-3", NODE, PodSandboxConfig("served-3"))
    first = lab.runtime.start_container("default", "served-3", "main",
                                        builtin("served-3", first_ip), {})
    assert lab.runtime.listening(first, 80, "TCP")
    [server] = [p for p in lab.network.state.processes if p.role == "workload-server"]
    os.kill(server.pid, signal.SIGKILL)
    assert wait_until("ended", lambda: not lab.runtime.container_state(first).running)
    assert lab.runtime.container_state(first).exit_code == 137
    assert not lab.runtime.listening(first, 80, "TCP")
    again = lab.runtime.start_container("default", "served-3", "main",
                                        builtin("served-3", first_ip), {})
    assert lab.runtime.listening(again, 80, "TCP")
    assert node_get(lab, first_ip, "/hostname") == "served-3"
    [new] = [p for p in lab.network.state.processes if p.role == "workload-server"]
    assert new.pid != server.pid
    lab.runtime.remove_pod("default", "served-3")


def test_a_pod_gets_the_lowest_free_address_and_a_taken_one_is_refused(lab):
    first = lab.network.add_pod("addr-a", "default", NODE)
    second = lab.network.add_pod("addr-b", "default", NODE)
    assert first.addresses != second.addresses
    with pytest.raises(UsageError, match=f"ip: {first.addresses[0]} is already used"):
        lab.network.add_pod("addr-c", "default", NODE, ip=first.addresses[0])
    with pytest.raises(UsageError, match="is not a pod address"):
        lab.network.add_pod("addr-c", "default", NODE, ip="192.168.200.7")
    lab.network.remove_pod("addr-a", "default")
    third = lab.network.add_pod("addr-c", "default", NODE)
    assert third.addresses == first.addresses       # freed, and the lowest free
    for name in ("addr-b", "addr-c"):
        lab.network.remove_pod(name, "default")


def test_a_namespace_is_known_by_its_cookie_too(lab):
    """An inode alone may name another lab's namespace later: the lab keeps the
    namespace's cookie, and processes of a namespace with another cookie are
    not the lab's."""
    lab.pod("cookie-1")
    record = next(r for r in lab.network.state.hosts.values() if r.name == "cookie-1")
    cookie = lab.network.state.netns_cookies[str(record.netns)]
    assert cookie == netns_cookie(record.pid)
    [sleeper] = processes_in_netns({record.netns}, cookies={record.netns: cookie})
    assert processes_in_netns({record.netns}, cookies={record.netns: cookie + 1}) == []
    assert sleeper.alive()
    lab.runtime.remove_pod("default", "cookie-1")


# --- and afterwards ----------------------------------------------------------------------

def test_nothing_is_left_and_the_machine_is_untouched(tmp_path_factory):
    before = (os.uname().nodename, open("/etc/hosts").read(), dict(os.environ))
    with lab_in_process(tmp_path_factory, "sbxend") as small:
        mine = f"/tmp/svclab-sandbox-{uuid.uuid4().hex}"
        ip = small.pod("last-1", argv=["sh", "-c", f"echo x > {mine}; sleep 3600"])
        exec_session = small.runtime.exec("default", "last-1", "main", ["sleep", "3600"],
                                          stdin=True, tty=True)
        attached = small.runtime.attach("default", "last-1", "main", stdin=False, tty=False)
        record = next(r for r in small.network.state.hosts.values() if r.name == "last-1")
        argv = host_exec_argv(small.network.paths, record, ["hostname"])
        assert argv[-2:] == ["HOME=/root", "hostname"] and "HOSTNAME=last-1" in argv
        assert ip and os.uname().nodename == before[0]
        netns = set(small.network.state.netns_seen)
        cookies = small.network.state.cookies()
        shells = {r.pid for r in small.network.state.hosts.values()}
        small.runtime.close()
        assert exec_session.stdout is None and attached.stdout is None
        # Killed with their groups; a member not waited for (sleep under sh) may
        # take a moment to finish dying on a loaded machine.
        assert wait_until("no process left in the pod", lambda: processes_in_netns(
            netns, exclude=shells, cookies=cookies) == [], timeout=5)
    after = (os.uname().nodename, open("/etc/hosts").read(), dict(os.environ))
    assert after == before and not os.path.exists(mine)
