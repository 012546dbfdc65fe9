"""The pod runtime interface: what a kubelet asks of the machine.

Kubernetes keeps this contract apart from both sides (the CRI); svclab does
the same, so the kubelet (controlplane/kubelet) and the lab's kernel-side
implementation (topo/pod_runtime.py) never import each other.

`PodRuntime` is the kubelet's only way to touch the world: create a pod's
host with its IP on a node, start container processes in it, tell whether
one runs (and its exit code), signal it, remove the pod, and run probes —
tcpSocket/httpGet from the node's network namespace to the pod IP (as a
kubelet does), exec inside the pod.  `topo.pod_runtime.LabPodRuntime`
implements it over a running lab; `support.fake_runtime` does it
in memory for unit tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from base.errors import SvclabError


class PodRuntimeError(SvclabError):
    """The runtime could not do what the kubelet asked (pod host, process, probe)."""


@dataclass(frozen=True)
class ContainerHandle:
    namespace: str
    pod: str
    container: str
    pid: int
    start: int = 0

    @property
    def container_id(self) -> str:
        return f"svclab://{self.pid}"


@dataclass(frozen=True)
class ContainerState:
    running: bool
    exit_code: int | None = None    # None while running, or when it is unknown


class PodRuntime(Protocol):
    def create_pod(self, namespace: str, name: str, node: str) -> str:
        """Create the pod's host on node; return its IP."""

    def remove_pod(self, namespace: str, name: str) -> None:
        """Stop every process of the pod and remove its host (no error if gone)."""

    def start_container(self, namespace: str, name: str, container: str,
                        argv: list[str]) -> ContainerHandle: ...

    def container_state(self, handle: ContainerHandle) -> ContainerState: ...

    def signal_container(self, handle: ContainerHandle, signum: int) -> None: ...

    def listening(self, handle: ContainerHandle, port: int, protocol: str) -> bool:
        """Whether the container's network namespace has a socket bound to port."""

    def exec_in_pod(self, namespace: str, name: str, argv: list[str],
                    timeout: float) -> int:
        """Run argv inside the pod; its exit code (non-zero on timeout)."""

    def tcp_probe(self, node: str, ip: str, port: int, timeout: float) -> bool: ...

    def http_probe(self, node: str, scheme: str, host: str, port: int, path: str,
                   headers: dict, timeout: float) -> int:
        """HTTP status code of GET from the node's namespace; 0 when it cannot connect."""

    def close(self) -> None: ...
