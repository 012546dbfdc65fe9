"""An in-memory PodRuntime for unit tests: no root, no namespaces, no processes.

Tests drive it like the world would: `exit_container` makes a container die
with a code, `set_listening`, `set_tcp`, `set_http`, `set_exec` decide what
probes see.  Everything the kubelet did is recorded for assertions.
"""
from __future__ import annotations

import ipaddress
import itertools
import signal
import threading

from base.cri import (
    ConsoleConfig,
    ContainerHandle,
    ContainerState,
    PodRuntimeError,
    PodSandboxConfig,
    PodVolume,
)


class FakePodRuntime:
    def __init__(self, pod_blocks: dict[str, str] | None = None, *, exit_on_term: bool = True):
        self._lock = threading.Lock()
        self._pids = itertools.count(1000)
        self._blocks = {node: ipaddress.ip_network(cidr) for node, cidr in
                        (pod_blocks or {}).items()}
        self.pods: dict[tuple[str, str], dict] = {}          # (ns, name) -> {node, ip, sandbox}
        self.containers: dict[ContainerHandle, dict] = {}    # -> {argv, env, console, running,
        #                                                        exit_code}
        self.signals: list[tuple[str, str, int]] = []        # (pod, container, signum)
        self.exit_on_term = exit_on_term
        self.tcp_open: set[tuple[str, int]] = set()
        self.http_status: dict[tuple[str, int, str], int] = {}
        self.exec_codes: dict[tuple[str, str], int] = {}     # (pod "ns/name", argv[0]) -> rc
        self.listening_ports: set[tuple[str, int, str]] | None = None   # None: all listen
        self.removed: list[tuple[str, str]] = []
        self.volume_updates: list[tuple[str, str, PodVolume]] = []   # (ns, pod, volume)

    # --- pods ------------------------------------------------------------------

    def create_pod(self, namespace: str, name: str, node: str,
                   sandbox: PodSandboxConfig | None = None) -> str:
        with self._lock:
            used = {p["ip"] for p in self.pods.values()}
            block = self._blocks.get(node, ipaddress.ip_network("192.168.99.0/24"))
            ip = next(str(a) for a in block.hosts() if str(a) not in used)
            self.pods[(namespace, name)] = {"node": node, "ip": ip,
                                            "sandbox": sandbox or PodSandboxConfig(name)}
            return ip

    def remove_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            if self.pods.pop((namespace, name), None) is not None:
                self.removed.append((namespace, name))
            self.volume_updates = [u for u in self.volume_updates if u[:2] != (namespace, name)]
            for handle, info in self.containers.items():
                if (handle.namespace, handle.pod) == (namespace, name):
                    info["running"] = False

    def update_volume(self, namespace: str, name: str, volume: PodVolume) -> None:
        with self._lock:
            if (namespace, name) not in self.pods:
                raise PodRuntimeError(f"pod {namespace}/{name} has no host")
            self.volume_updates.append((namespace, name, volume))

    def volume(self, namespace: str, name: str, volume: str) -> PodVolume | None:
        """The volume's content now: as the pod was created, or its last update."""
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return None
            found = next((v for v in pod["sandbox"].pod_volumes if v.name == volume), None)
            for ns, pod_name, update in self.volume_updates:
                if (ns, pod_name, update.name) == (namespace, name, volume):
                    found = update
            return found

    # --- containers ----------------------------------------------------------

    def start_container(self, namespace: str, name: str, container: str,
                        argv: list[str], env: dict[str, str],
                        console: ConsoleConfig | None = None) -> ContainerHandle:
        with self._lock:
            if (namespace, name) not in self.pods:
                raise PodRuntimeError(f"pod {namespace}/{name} has no host")
            handle = ContainerHandle(namespace, name, container, next(self._pids), 1)
            self.containers[handle] = {"argv": list(argv), "env": dict(env),
                                       "console": console or ConsoleConfig(),
                                       "running": True, "exit_code": None}
            return handle

    def container_state(self, handle: ContainerHandle) -> ContainerState:
        with self._lock:
            info = self.containers[handle]
            return ContainerState(info["running"], info["exit_code"])

    def signal_container(self, handle: ContainerHandle, signum: int) -> None:
        with self._lock:
            self.signals.append((f"{handle.namespace}/{handle.pod}", handle.container, signum))
            info = self.containers[handle]
            if signum == signal.SIGKILL or (signum == signal.SIGTERM and self.exit_on_term):
                if info["running"]:
                    info["running"], info["exit_code"] = False, 128 + signum

    def exit_container(self, namespace: str, name: str, container: str, code: int) -> None:
        with self._lock:
            for handle, info in self.containers.items():
                if (handle.namespace, handle.pod, handle.container) == (namespace, name,
                                                                        container):
                    if info["running"]:
                        info["running"], info["exit_code"] = False, code

    def running(self, namespace: str, name: str) -> list[ContainerHandle]:
        with self._lock:
            return [h for h, i in self.containers.items()
                    if (h.namespace, h.pod) == (namespace, name) and i["running"]]

    def listening(self, handle: ContainerHandle, port: int, protocol: str) -> bool:
        with self._lock:
            return self.listening_ports is None or (
                f"{handle.namespace}/{handle.pod}", port, protocol) in self.listening_ports

    # --- probes --------------------------------------------------------------

    def exec_in_pod(self, namespace: str, name: str, argv: list[str], timeout: float,
                    container: str = "") -> int:
        with self._lock:
            return self.exec_codes.get((f"{namespace}/{name}", argv[0]), 0)

    def tcp_probe(self, node: str, ip: str, port: int, timeout: float) -> bool:
        with self._lock:
            return (ip, port) in self.tcp_open

    def http_probe(self, node: str, scheme: str, host: str, port: int, path: str,
                   headers: dict, timeout: float) -> int:
        with self._lock:
            return self.http_status.get((host, port, path), 0)

    def close(self) -> None:
        pass
