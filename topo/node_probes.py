"""Probes a kubelet runs from its node: tcpSocket and httpGet to the pod IP.

A kubelet probes from the node's network namespace, not from inside the pod,
so a pod that only answers on localhost fails them, as in a real cluster.
`NodeProbes` keeps a few threads per node that entered the node's namespace
once (setns is per thread); the checks themselves are plain socket code.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import socket
import ssl
import threading

from base.cri import PodRuntimeError
from topo.netns import enter_netns

THREADS_PER_NODE = 4


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


class NodeProbes:
    """tcpSocket and httpGet probes from each node's namespace (lab: LabNetwork)."""

    def __init__(self, lab):
        self.lab = lab
        self._lock = threading.Lock()
        self._pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}

    def tcp(self, node: str, ip: str, port: int, timeout: float) -> bool:
        return self._in_node(node, tcp_connect, ip, port, timeout, timeout=timeout)

    def http(self, node: str, scheme: str, host: str, port: int, path: str, headers: dict,
             timeout: float) -> int:
        return self._in_node(node, http_get_status, scheme, host, port, path, headers, timeout,
                             timeout=timeout)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pool(self, node: str) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            pool = self._pools.get(node)
            if pool is None:
                host = next(r for r in list(self.lab.state.hosts.values())
                            if r.kind == "node" and r.name == node)
                pool = concurrent.futures.ThreadPoolExecutor(
                    THREADS_PER_NODE, thread_name_prefix=f"probe-{node}",
                    initializer=enter_netns, initargs=(host.pid,))
                self._pools[node] = pool
            return pool

    def _in_node(self, node: str, func, *args, timeout: float):
        future = self._pool(node).submit(func, *args)
        try:
            return future.result(timeout=timeout + 1.0)
        except concurrent.futures.TimeoutError as err:
            raise PodRuntimeError(f"probe from {node} did not finish in {timeout} s") from err
