"""The lab's pod runtime: pods as sandboxes of the lab, containers as processes in them.

`LabPodRuntime` implements the kubelet's runtime interface and the API
server's streaming interface (base/cri.py: PodRuntime, PodStreams) over
topo.network.LabNetwork's public methods (root, a running lab).

A pod is a sandbox: network, mount and UTS namespaces held by a thread of
the daemon (topo/pod_sandbox.py), with the hostname, /etc files and private
/tmp the kubelet's PodSandboxConfig asks for (topo/plan.py), and its volumes
mounted in its own mount namespace only (topo/pod_volumes.py).  A container
is a process entered into those namespaces (nsenter, working directory /)
with exactly the environment the kubelet computed plus what a container
runtime adds (PATH, HOSTNAME, HOME; TERM with a terminal), leading a session
and process group of its own, so a signal to the group reaches all it
started.  The runtime is its parent and reaps it through a pidfd, so exit
codes are exact (topo/sessions.py); its output goes through one pump thread
into a CRI log file per run, the previous run's kept (topo/consoles.py,
topo/crilog.py).  A container of the built-in workload server is served by
its node's one server instead and has no process (topo/workload_host.py).
`exec` enters the same namespaces with the container's environment; `dial`
makes its socket inside the pod's network namespace and connects to
localhost there, as a kubelet's port-forward does; probes still run from
the node (tcpSocket, httpGet).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from base.cri import (
    ConsoleConfig,
    ContainerHandle,
    ContainerState,
    PodRuntimeError,
    PodSandboxConfig,
    PodVolume,
    StreamTargetError,
)
from base.errors import SvclabError
from topo.consoles import Console, OutputPump
from topo.crilog import CriLogFile
from topo.netns import socket_in_netns
from topo.node_probes import NodeProbes, socket_listening
from topo.pidwait import wait_for_child
from topo.pod_volumes import VolumeError, encode_plan, set_up_in_pod, update_volume
from topo.sessions import KILL_WAIT, Child, ExecProcess, FailedExec, Stdio, find_program, open_stdio
from topo.state import HostRecord, ProcessRecord
from topo.workload_host import (
    ServedChild,
    WorkloadHosts,
    builtin_server_args,
    raise_open_files_limit,
)

SANE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How long an exited container's last output may take to reach its log.
OUTPUT_DRAIN_SECONDS = 1.0
KEEP_RUNS = 2                # a container's current run and the one before (--previous)
LOGS_FOLDER = "pods"         # under the lab's state folder, as /var/log/pods


def container_environment(env: dict[str, str], hostname: str, tty: bool) -> dict[str, str]:
    """What a container runtime starts a container with: PATH and HOSTNAME first,
    then the kubelet's variables (which win), HOME if none, TERM with a terminal."""
    full = {"PATH": SANE_PATH, "HOSTNAME": hostname, **env}
    full.setdefault("HOME", "/root")
    if tty:
        full.setdefault("TERM", "xterm")
    return full


def dial_error(family: str, address: str, err: OSError) -> str:
    """Go's words for a failed dial: `dial tcp4 127.0.0.1:80: connect: connection refused`."""
    if isinstance(err, TimeoutError) or err.errno is None:
        return f"dial {family} {address}: i/o timeout"
    text = os.strerror(err.errno)
    return f"dial {family} {address}: connect: {text[:1].lower()}{text[1:]}"


@dataclass
class _Run:
    """One start of a container: its process, console, log and environment."""

    handle: ContainerHandle
    child: Child
    console: Console
    env: dict[str, str]
    log_path: Path
    record: ProcessRecord | None
    reaped: bool = False


@dataclass
class _Pod:
    namespace: str
    name: str
    host: HostRecord
    sandbox: PodSandboxConfig
    log_dir: Path
    runs: dict[str, list[_Run]] = field(default_factory=dict)   # container -> last runs
    starts: dict[str, int] = field(default_factory=dict)        # container -> runs so far
    sessions: list = field(default_factory=list)                # exec and attach sessions
    default_container: str = ""

    @property
    def root(self) -> str:
        """The pod's file system as its mount namespace shows it."""
        return f"/proc/{self.host.pid}/root"

    @property
    def sandbox_id(self) -> str:
        key = f"{self.namespace}/{self.name}/{self.host.host}/{self.host.pid}"
        return hashlib.sha256(key.encode()).hexdigest()

    def current(self, container: str) -> _Run | None:
        runs = self.runs.get(container or self.default_container) or []
        return runs[-1] if runs else None


class LabPodRuntime:
    """The kubelet's PodRuntime and the API server's PodStreams over a running lab."""

    def __init__(self, lab):
        self.lab = lab
        self._logs = Path(lab.paths.root) / LOGS_FOLDER
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._runs: dict[ContainerHandle, _Run] = {}
        self._probes = NodeProbes(lab)
        self._pump = OutputPump()
        self._workloads = WorkloadHosts(lab)
        self._served = 0
        raise_open_files_limit()

    # --- pods ------------------------------------------------------------------

    def _pod(self, namespace: str, name: str) -> _Pod:
        with self._lock:
            pod = self._pods.get((namespace, name))
        if pod is None:
            raise PodRuntimeError(f"pod {namespace}/{name} has no host")
        return pod

    def create_pod(self, namespace: str, name: str, node: str,
                   sandbox: PodSandboxConfig | None = None) -> str:
        sandbox = sandbox or PodSandboxConfig(hostname=name)
        if self.lab.find_pod(name, namespace) is not None or (namespace, name) in self._pods:
            self.remove_pod(namespace, name)       # left over from an earlier life
        try:
            record = self.lab.add_pod(name, namespace, node, sandbox=sandbox)
        except SvclabError as err:
            raise PodRuntimeError(f"pod {namespace}/{name} on {node}: {err}") from err
        folder = f"{namespace}_{name}_{sandbox.uid}" if sandbox.uid else f"{namespace}_{name}"
        with self._lock:
            self._pods[(namespace, name)] = _Pod(namespace, name, record, sandbox,
                                                 self._logs / folder)
        if sandbox.pod_volumes or sandbox.mounts:
            try:
                set_up_in_pod(self.lab.popen_in, record.host, sys.executable,
                              encode_plan(sandbox.pod_volumes, sandbox.mounts))
            except (VolumeError, OSError, SvclabError) as err:
                self.remove_pod(namespace, name)
                raise PodRuntimeError(f"pod {namespace}/{name}: {err}") from err
        return record.addresses[0]

    def update_volume(self, namespace: str, name: str, volume: PodVolume) -> None:
        pod = self._pod(namespace, name)
        try:
            update_volume(pod.host.pid, volume.folder,
                          [(f.path, f.data, f.mode) for f in volume.files])
        except (VolumeError, OSError) as err:
            raise PodRuntimeError(f"pod {namespace}/{name} volume {volume.name}: {err}") from err

    def remove_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            pod = self._pods.pop((namespace, name), None)
        if pod is not None:
            self._stop_pod(pod)
        if self.lab.find_pod(name, namespace) is not None:
            self.lab.remove_pod(name, namespace)
        if pod is not None:
            self._release_pod(pod)
            shutil.rmtree(pod.log_dir, ignore_errors=True)

    def _stop_pod(self, pod: _Pod) -> None:
        for session in list(pod.sessions):
            session.kill()
        for runs in list(pod.runs.values()):
            for run in runs:
                run.child.kill_group(signal.SIGKILL)

    def _release_pod(self, pod: _Pod) -> None:
        for runs in list(pod.runs.values()):
            for run in runs:
                self._release_run(run)

    def _release_run(self, run: _Run) -> None:
        wait_for_child(run.child, KILL_WAIT)
        run.console.close()
        run.child.close()
        with self._lock:
            self._runs.pop(run.handle, None)

    # --- containers ----------------------------------------------------------

    def start_container(self, namespace: str, name: str, container: str,
                        argv: list[str], env: dict[str, str],
                        console: ConsoleConfig | None = None) -> ContainerHandle:
        console = console or ConsoleConfig()
        pod = self._pod(namespace, name)
        full_env = container_environment(env, pod.sandbox.uts_hostname, console.tty)
        with self._lock:
            number = pod.starts.get(container, 0)
            pod.starts[container] = number + 1
        log = CriLogFile(pod.log_dir / container / f"{number}.log")
        try:
            run = self._start(pod, container, list(argv), full_env, console, log)
        except BaseException:
            log.close()
            raise
        with self._lock:
            self._runs[run.handle] = run
            runs = pod.runs.setdefault(container, [])
            runs.append(run)
            old, runs[:] = runs[:-KEEP_RUNS], runs[-KEEP_RUNS:]
            pod.default_container = pod.default_container or container
            default = pod.default_container == container
        for stale in old:
            self._release_run(stale)
            stale.log_path.unlink(missing_ok=True)
        if default:
            self.lab.record_environ(pod.host.host, full_env)
        return run.handle

    def _start(self, pod: _Pod, container: str, argv: list[str], env: dict[str, str],
               console: ConsoleConfig, log: CriLogFile) -> _Run:
        served = builtin_server_args(argv)
        if served is not None and not console.stdin and not console.tty:
            return self._serve(pod, container, served, env, log)
        stdio = open_stdio(console.stdin, console.tty)
        popen, record = self._popen(pod, stdio, argv, env, role=f"container:{container}")
        child = Child(popen)
        outputs = {"stdout": stdio.stdout}
        if stdio.stderr is not None:
            outputs["stderr"] = stdio.stderr
        handle = ContainerHandle(pod.namespace, pod.name, container, popen.pid,
                                 record.start if record else 0)
        return _Run(handle, child, Console(self._pump, log, child, outputs=outputs,
                                           stdin_fd=stdio.stdin, terminal=stdio.terminal,
                                           stdin_once=console.stdin_once),
                    env, log.path, record)

    def _serve(self, pod: _Pod, container: str, args: list[str], env: dict[str, str],
               log: CriLogFile) -> _Run:
        """The built-in server, served by the pod's node's server: no process of its own."""
        try:
            child, output = self._workloads.serve(self.lab.node_host(pod.host.node),
                                                  pod.host.pid, args)
        except (OSError, SvclabError) as err:
            raise PodRuntimeError(f"failed to start the workload server in pod "
                                  f"{pod.namespace}/{pod.name}: {err}") from err
        with self._lock:
            self._served += 1
            serial = self._served
        handle = ContainerHandle(pod.namespace, pod.name, container, pod.host.pid, -serial)
        return _Run(handle, child, Console(self._pump, log, child, outputs={"stdout": output},
                                           stdin_fd=None, terminal=None, stdin_once=False),
                    env, log.path, None)

    def _popen(self, pod: _Pod, stdio: Stdio, argv: list[str], env: dict[str, str], *,
               role: str = "", streaming: bool = False):
        """Start argv in the pod (recorded in the state folder when it has a role)."""
        try:
            return self.lab.popen_in(pod.host.host, stdio.command(argv), role=role,
                                     record=bool(role), env=env, new_session=not stdio.tty,
                                     **stdio.popen_args)
        except (OSError, SvclabError) as err:
            stdio.abandon()
            text = f"failed to start {argv[0]!r} in pod {pod.namespace}/{pod.name}: {err}"
            if streaming:
                raise StreamTargetError("InternalError", text) from err
            raise PodRuntimeError(text) from err
        finally:
            stdio.started()

    def container_state(self, handle: ContainerHandle) -> ContainerState:
        with self._lock:
            run = self._runs.get(handle)
        if run is None:
            return ContainerState(False, None)
        if not run.child.poll():
            return ContainerState(True)
        if not run.reaped:
            # What it wrote last is in the pipe still: let the log have it
            # before anyone reads the log of a container that has exited.
            run.console.wait_ended(OUTPUT_DRAIN_SECONDS)
            run.reaped = True
            if run.record is not None:
                self.lab.forget_process(run.record)
        return ContainerState(False, run.child.code)

    def signal_container(self, handle: ContainerHandle, signum: int) -> None:
        with self._lock:
            run = self._runs.get(handle)
        if run is not None:
            run.child.kill_group(signum)

    def listening(self, handle: ContainerHandle, port: int, protocol: str) -> bool:
        with self._lock:
            run = self._runs.get(handle)
        if run is not None and isinstance(run.child, ServedChild):
            # Its node's server bound the ports before it answered; reading the
            # pod's /proc/net/tcp walks the kernel's whole connection table.
            return not run.child.ended and f"{port}/{protocol.upper()}" in run.child.ports
        return socket_listening(handle.pid, port, protocol)

    # --- exec (probes and streams) -----------------------------------------------

    def exec_in_pod(self, namespace: str, name: str, argv: list[str], timeout: float,
                    container: str = "") -> int:
        pod = self._pod(namespace, name)
        run = pod.current(container)
        env = run.env if run else container_environment({}, pod.sandbox.uts_hostname, False)
        failure = find_program(pod.root, argv[0], env.get("PATH", ""))
        if failure is not None:
            return failure.code
        try:
            popen, _ = self.lab.popen_in(pod.host.host, argv, record=False, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        except (OSError, SvclabError) as err:
            raise PodRuntimeError(f"exec {argv[0]!r} in {namespace}/{name}: {err}") from err
        child = Child(popen)
        try:
            if not wait_for_child(child, timeout):
                child.kill_group()
                wait_for_child(child, KILL_WAIT)
                return 1
            return child.code
        finally:
            child.close()

    def _running(self, namespace: str, name: str, container: str) -> tuple[_Pod, _Run]:
        with self._lock:
            pod = self._pods.get((namespace, name))
        if pod is None:
            raise StreamTargetError("NotFound", "pod does not exist")
        run = pod.current(container)
        if run is None or run.child.poll():
            raise StreamTargetError("NotFound", f'container not found ("{container}")')
        return pod, run

    def _track(self, pod: _Pod, session):
        with self._lock:
            pod.sessions[:] = [s for s in pod.sessions if s.stdout is not None]
            pod.sessions.append(session)
        return session

    def exec(self, namespace: str, pod: str, container: str, argv: list[str], *,
             stdin: bool, tty: bool):
        sandbox, run = self._running(namespace, pod, container)
        if not argv:
            raise StreamTargetError("BadRequest",
                                    "you must specify at least one command for the container")
        env = {**run.env, "TERM": "xterm"} if tty else run.env
        failure = find_program(sandbox.root, argv[0], env.get("PATH", ""))
        if failure is not None:
            return self._track(sandbox, FailedExec(failure, stdin=stdin, tty=tty))
        stdio = open_stdio(stdin, tty)
        popen, _ = self._popen(sandbox, stdio, argv, env, streaming=True)
        return self._track(sandbox, ExecProcess(Child(popen), stdin=stdio.stdin,
                                                stdout=stdio.stdout, stderr=stdio.stderr,
                                                master=stdio.terminal))

    def attach(self, namespace: str, pod: str, container: str, *, stdin: bool, tty: bool):
        sandbox, run = self._running(namespace, pod, container)
        return self._track(sandbox, run.console.attach(stdin, tty))

    def dial(self, namespace: str, pod: str, port: int, timeout: float) -> socket.socket:
        with self._lock:
            sandbox = self._pods.get((namespace, pod))
        if sandbox is None:
            raise StreamTargetError("NotFound", "pod does not exist")
        errors = []
        for family, kind, address in ((socket.AF_INET, "tcp4", "127.0.0.1"),
                                      (socket.AF_INET6, "tcp6", "::1")):
            try:
                sock = socket_in_netns(sandbox.host.pid, family)
            except (OSError, SvclabError) as err:
                raise StreamTargetError("InternalError", f"failed to enter the network "
                                        f"namespace of pod {namespace}/{pod}: {err}") from err
            sock.settimeout(timeout)
            try:
                sock.connect((address, port))
            except OSError as err:
                sock.close()
                shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                errors.append(dial_error(kind, shown, err))
                continue
            sock.settimeout(None)
            return sock
        # containerd's words; the API side puts the kubelet's "error forwarding port ..." first.
        raise StreamTargetError("InternalError", (
            f'failed to execute portforward in network namespace "/proc/{sandbox.host.pid}/ns/'
            f'net": failed to connect to localhost:{port} inside namespace '
            f'"{sandbox.sandbox_id}", IPv4: {errors[0]} IPv6 {errors[1]} '))

    def log_path(self, namespace: str, pod: str, container: str,
                 previous: bool = False) -> str | None:
        with self._lock:
            sandbox = self._pods.get((namespace, pod))
            runs = list(sandbox.runs.get(container) or []) if sandbox else []
        if sandbox is None:
            raise StreamTargetError("NotFound", "pod does not exist")
        if previous:
            return str(runs[-2].log_path) if len(runs) > 1 else None
        return str(runs[-1].log_path) if runs else None

    # --- probes from the node ----------------------------------------------------

    def tcp_probe(self, node: str, ip: str, port: int, timeout: float) -> bool:
        return self._probes.tcp(node, ip, port, timeout)

    def http_probe(self, node: str, scheme: str, host: str, port: int, path: str,
                   headers: dict, timeout: float) -> int:
        return self._probes.http(node, scheme, host, port, path, headers, timeout)

    def close(self) -> None:
        """Stop every container and session this runtime started, then its threads."""
        with self._lock:
            pods, self._pods = list(self._pods.values()), {}
        self._workloads.close()         # every served container ends with its node's server
        for pod in pods:
            self._stop_pod(pod)
        for pod in pods:
            self._release_pod(pod)
        self._pump.stop()
        self._probes.close()
