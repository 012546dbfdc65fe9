"""The pod runtime interface: what a kubelet asks of the machine.

Kubernetes keeps this contract apart from both sides (the CRI); svclab does
the same, so the kubelet (controlplane/kubelet) and the lab's kernel-side
implementation (topo/pod_runtime.py) never import each other.

`PodRuntime` is the kubelet's only way to touch the world: create a pod's
sandbox (its host, IP, hostname, /etc files and volumes) on a node, start container
processes in it with the environment the kubelet computed, tell whether one
runs (and its exit code), signal it, remove the pod, and run probes —
tcpSocket/httpGet from the node's network namespace to the pod IP (as a
kubelet does), exec inside the pod.  As in the CRI, the kubelet decides
*what* (hostname, domain, environment, console, volume files and mount
paths) and the runtime decides *how*; the runtime adds only what a container
runtime adds (PATH, HOSTNAME, HOME, TERM for a terminal).
`topo.pod_runtime.LabPodRuntime` implements it over a running lab;
`support.fake_runtime` does it in memory for unit tests.
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


@dataclass(frozen=True)
class HostAlias:
    """One spec.hostAliases entry: an extra /etc/hosts line."""

    ip: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True)
class ProjectedFiles:
    """A read-only folder of files the kubelet puts into the pod (a projected volume,
    e.g. the service-account token, the cluster's CA and the pod's namespace)."""

    path: str                                  # where the pod's containers see it
    files: tuple[tuple[str, str], ...]         # (file name, content)


@dataclass(frozen=True)
class VolumeFile:
    """One file of a volume the kubelet fills (a ConfigMap key, a Secret key, a
    downward API item, a token): its path inside the volume, content and mode."""

    path: str                                  # relative, may contain '/'
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class PodVolume:
    """A volume of the pod's spec, as the kubelet has set it up.

    `kind` "files": a folder of `files` the kubelet keeps up to date (configMap,
    secret, downwardAPI, projected), written as Kubernetes' atomic writer does
    (the files are links into `..data`, which points to a timestamped folder);
    "emptyDir": an empty folder shared by the pod's containers (a tmpfs of
    `size_limit` bytes, or of the runtime's default size when None).  `plugin`
    names the volume plugin's folder, e.g. `kubernetes.io~configmap`."""

    name: str
    kind: str = "files"
    plugin: str = "kubernetes.io~configmap"
    files: tuple[VolumeFile, ...] = ()
    size_limit: int | None = None

    @property
    def folder(self) -> str:
        """Where the volume lives among the pod's volumes: `<plugin>/<name>`."""
        return f"{self.plugin}/{self.name}"


@dataclass(frozen=True)
class VolumeMount:
    """A volume (or a sub path of it) at a path of the pod's mount namespace.

    Every container of a svclab pod shares the pod's mount namespace, so the
    kubelet gives the runtime the union of its containers' volumeMounts."""

    volume: str
    path: str                                  # absolute, inside the pod
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class DnsConfig:
    """A pod's resolver (the CRI's DNSConfig), which the runtime writes as
    /etc/resolv.conf: `search`, then one `nameserver` line each, then `options`."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()              # "ndots:5", "edns0"

    def resolv_conf(self) -> str:
        lines = [f"search {' '.join(self.searches)}"] if self.searches else []
        lines += [f"nameserver {server}" for server in self.servers]
        if self.options:
            lines.append(f"options {' '.join(self.options)}")
        return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class PodSandboxConfig:
    """What the kubelet decided about a pod's sandbox (the CRI's PodSandboxConfig).

    `hostname` is the pod's short host name (its name, or spec.hostname);
    `domain` the domain spec.subdomain puts it in (`<subdomain>.<namespace>.svc.
    <cluster domain>`, or ""); `kernel_hostname` what `hostname` prints when
    it differs from `hostname` (spec.setHostnameAsFQDN).  `volumes` are folders the
    kubelet projects under the pod's /run (the service-account token);
    `pod_volumes` the spec's volumes and `mounts` where the pod sees them;
    `dns` its resolver (None: the cluster's, ClusterFirst without the node's
    search paths, for pods no kubelet made).
    """

    hostname: str
    domain: str = ""
    kernel_hostname: str = ""
    uid: str = ""
    host_aliases: tuple[HostAlias, ...] = ()
    volumes: tuple[ProjectedFiles, ...] = ()
    pod_volumes: tuple[PodVolume, ...] = ()    # the spec's volumes the runtime mounts
    mounts: tuple[VolumeMount, ...] = ()
    dns: DnsConfig | None = None

    @property
    def uts_hostname(self) -> str:
        return self.kernel_hostname or self.hostname


@dataclass(frozen=True)
class ConsoleConfig:
    """A container's console (spec stdin, stdinOnce, tty), as `kubectl run -it` sets it.

    With stdin the runtime holds the container's input open until an attach
    writes to it (stdin_once: until the first attach ends); with tty the
    container's stdin, stdout and stderr are one pseudo-terminal."""

    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False


class PodRuntime(Protocol):
    def create_pod(self, namespace: str, name: str, node: str,
                   sandbox: PodSandboxConfig | None = None) -> str:
        """Create the pod's sandbox on node (default hostname: the pod's name); return its IP."""

    def remove_pod(self, namespace: str, name: str) -> None:
        """Stop every process of the pod and remove its host (no error if gone)."""

    def start_container(self, namespace: str, name: str, container: str,
                        argv: list[str], env: dict[str, str],
                        console: ConsoleConfig | None = None) -> ContainerHandle:
        """Start argv in the pod with exactly env (plus what a runtime adds),
        working directory /, its output kept as the container's log; console
        None: no stdin, no terminal."""

    def update_volume(self, namespace: str, name: str, volume: PodVolume) -> None:
        """Replace a "files" volume's content in one step, as the atomic writer
        does: readers see the old files or the new ones, never a mix."""

    def container_state(self, handle: ContainerHandle) -> ContainerState: ...

    def signal_container(self, handle: ContainerHandle, signum: int) -> None: ...

    def listening(self, handle: ContainerHandle, port: int, protocol: str) -> bool:
        """Whether the container's network namespace has a socket bound to port."""

    def exec_in_pod(self, namespace: str, name: str, argv: list[str],
                    timeout: float, container: str = "") -> int:
        """Run argv inside the pod, with the container's environment (default:
        the first started); its exit code (non-zero on timeout)."""

    def tcp_probe(self, node: str, ip: str, port: int, timeout: float) -> bool: ...

    def http_probe(self, node: str, scheme: str, host: str, port: int, path: str,
                   headers: dict, timeout: float) -> int:
        """HTTP status code of GET from the node's namespace; 0 when it cannot connect."""

    def close(self) -> None: ...


# --- streaming: what a kubelet's streaming server does for exec, attach, port-forward, logs ---

class StreamTargetError(PodRuntimeError):
    """The pod, container or port a streaming request names cannot be served now.

    `reason` is the Kubernetes Status reason the API server answers with
    (NotFound, BadRequest, InternalError) and `message` kubectl's text for it.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class ExecSession(Protocol):
    """A process started for `exec` (or a container console joined by `attach`).

    Its standard streams are file descriptors the caller reads and writes;
    with a terminal, `stdout` is the pseudo-terminal's master (stdout and
    stderr merged, as in a real container) and `stderr` is None.
    """

    stdin: int | None       # write end of the process's stdin; None without stdin
    stdout: int | None      # read end of its stdout (the pty master with a tty)
    stderr: int | None      # read end of its stderr; None with a tty

    def resize(self, width: int, height: int) -> None:
        """Set the terminal's size (no-op without a tty)."""

    def close_stdin(self) -> None:
        """End of input: the process reads EOF."""

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the process ended; None while it still runs."""

    def kill(self) -> None:
        """Stop the process and release its descriptors (the client went away)."""


class PodStreams(Protocol):
    """The node side of streaming requests; the API server calls it as it would
    proxy to the pod's kubelet.  Every method raises StreamTargetError for a
    pod, container or port it cannot serve."""

    def exec(self, namespace: str, pod: str, container: str, argv: list[str], *,
             stdin: bool, tty: bool) -> ExecSession:
        """Start argv inside the pod's sandbox (network, mount, UTS namespaces)."""

    def attach(self, namespace: str, pod: str, container: str, *,
               stdin: bool, tty: bool) -> ExecSession:
        """Join the running container's console; wait() ends when it exits."""

    def dial(self, namespace: str, pod: str, port: int, timeout: float):
        """A TCP socket connected to port from inside the pod's network namespace."""

    def log_path(self, namespace: str, pod: str, container: str,
                 previous: bool = False) -> str | None:
        """The container's log file (CRI format lines: `<RFC3339Nano> <stream> <F|P> <text>`),
        of its current run or, with previous, of the run before; None if there is none."""
