"""The lab's pod runtime: pods as Mininet hosts, containers as processes in them.

`LabPodRuntime` implements the kubelet's runtime interface (base/cri.py) over
topo.network.LabNetwork's public methods (root, a running lab).

Each container runs under a tiny `sh` shim that waits for it and writes its
exit code to a file (the lab's spawn keeps no handle to wait on); the shim
and the container share a process group, so a signal to the group reaches
both, and the shim survives SIGTERM to keep waiting.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import os
import shutil
import socket
import ssl
import tempfile
import threading

from base.cri import ContainerHandle, ContainerState, PodRuntimeError
from base.errors import CommandError, SvclabError
from topo.netns import ProcRef, enter_netns, run_in

PROBE_THREADS_PER_NODE = 4
# "$1": exit-code file; the rest: the container's argv.
CONTAINER_SHIM = ('f=$1; shift; "$@" & c=$!; trap : TERM INT HUP; '
                  'while :; do wait "$c"; rc=$?; kill -0 "$c" 2>/dev/null || break; done; '
                  'echo "$rc" > "$f"; exit "$rc"')


def tcp_connect(ip: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get_status(scheme: str, host: str, port: int, path: str, headers: dict,
                    timeout: float) -> int:
    cls = http.client.HTTPSConnection if scheme.upper() == "HTTPS" else http.client.HTTPConnection
    kwargs = {}
    if cls is http.client.HTTPSConnection:
        kwargs["context"] = ssl._create_unverified_context()   # kubelet skips verification too
    conn = cls(host, port, timeout=timeout, **kwargs)
    try:
        conn.request("GET", path or "/", headers={"User-Agent": "kube-probe/1.33", **headers})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def socket_listening(pid: int, port: int, protocol: str) -> bool:
    """Read /proc/PID/net/{tcp,udp}: the tables of the netns PID lives in."""
    table, state = ("udp", None) if protocol.upper() == "UDP" else ("tcp", "0A")
    try:
        with open(f"/proc/{pid}/net/{table}") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and int(fields[1].split(":")[1], 16) == port and (
                state is None or fields[3] == state):
            return True
    return False


class LabPodRuntime:
    """The kubelet's PodRuntime over a running lab's hosts."""

    def __init__(self, lab):
        self.lab = lab
        self._exit_dir = tempfile.mkdtemp(prefix="svclab-exit-")
        self._lock = threading.Lock()
        self._probers: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._exit_files: dict[ContainerHandle, str] = {}
        self._seq = 0

    # --- pods ------------------------------------------------------------------

    def _record(self, namespace: str, name: str):
        # Other kubelets add and remove hosts from their threads: iterate a snapshot.
        for record in list(self.lab.state.hosts.values()):
            if record.kind == "pod" and record.name == name and record.namespace == namespace:
                return record
        return None

    def create_pod(self, namespace: str, name: str, node: str) -> str:
        if self._record(namespace, name) is not None:   # left over from an earlier life
            self.lab.remove_pod(name, namespace)
        try:
            return self.lab.add_pod(name, namespace, node).addresses[0]
        except SvclabError as err:
            raise PodRuntimeError(f"pod {namespace}/{name} on {node}: {err}") from err

    def remove_pod(self, namespace: str, name: str) -> None:
        if self._record(namespace, name) is not None:
            self.lab.remove_pod(name, namespace)
        with self._lock:
            gone = [h for h in self._exit_files if (h.namespace, h.pod) == (namespace, name)]
            files = [self._exit_files.pop(h) for h in gone]
        for path in files:
            if os.path.exists(path):
                os.unlink(path)

    # --- containers ----------------------------------------------------------

    def start_container(self, namespace: str, name: str, container: str,
                        argv: list[str]) -> ContainerHandle:
        record = self._record(namespace, name)
        if record is None:
            raise PodRuntimeError(f"pod {namespace}/{name} has no host")
        with self._lock:
            self._seq += 1
            exit_file = os.path.join(self._exit_dir, f"{self._seq}.exit")
        process = self.lab.spawn(record.host, ["sh", "-c", CONTAINER_SHIM, "svclab-container",
                                               exit_file, *argv], role=f"container:{container}")
        handle = ContainerHandle(namespace, name, container, process.pid, process.start)
        with self._lock:
            self._exit_files[handle] = exit_file
        return handle

    def container_state(self, handle: ContainerHandle) -> ContainerState:
        if ProcRef(handle.pid, handle.start).alive():
            return ContainerState(True)
        with self._lock:
            exit_file = self._exit_files.get(handle)
        try:
            with open(exit_file) as f:
                return ContainerState(False, int(f.read().strip() or "0"))
        except (OSError, TypeError, ValueError):
            return ContainerState(False, None)

    def signal_container(self, handle: ContainerHandle, signum: int) -> None:
        if ProcRef(handle.pid, handle.start).alive():
            try:
                os.killpg(handle.pid, signum)   # the shim is the group leader (setsid)
            except ProcessLookupError:
                pass

    def listening(self, handle: ContainerHandle, port: int, protocol: str) -> bool:
        return socket_listening(handle.pid, port, protocol)

    # --- probes --------------------------------------------------------------

    def exec_in_pod(self, namespace: str, name: str, argv: list[str], timeout: float) -> int:
        record = self._record(namespace, name)
        if record is None:
            raise PodRuntimeError(f"pod {namespace}/{name} has no host")
        try:
            run_in(record.pid, argv, timeout=timeout, where=f"{namespace}/{name}")
            return 0
        except CommandError as err:
            return err.returncode if err.returncode > 0 else 1

    def _prober(self, node: str) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            pool = self._probers.get(node)
            if pool is None:
                host = next(r for r in list(self.lab.state.hosts.values())
                            if r.kind == "node" and r.name == node)
                pool = concurrent.futures.ThreadPoolExecutor(
                    PROBE_THREADS_PER_NODE, thread_name_prefix=f"probe-{node}",
                    initializer=enter_netns, initargs=(host.pid,))
                self._probers[node] = pool
            return pool

    def _in_node(self, node: str, func, *args, timeout: float):
        future = self._prober(node).submit(func, *args)
        try:
            return future.result(timeout=timeout + 1.0)
        except concurrent.futures.TimeoutError as err:
            raise PodRuntimeError(f"probe from {node} did not finish in {timeout} s") from err

    def tcp_probe(self, node: str, ip: str, port: int, timeout: float) -> bool:
        return self._in_node(node, tcp_connect, ip, port, timeout, timeout=timeout)

    def http_probe(self, node: str, scheme: str, host: str, port: int, path: str,
                   headers: dict, timeout: float) -> int:
        return self._in_node(node, http_get_status, scheme, host, port, path, headers, timeout,
                             timeout=timeout)

    def close(self) -> None:
        with self._lock:
            pools, self._probers = list(self._probers.values()), {}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._exit_dir, ignore_errors=True)
