"""A lab's state folder: what it owns, recorded so it can always be cleaned up.

/run/svclab/NAME/ holds the spec the lab runs, state.json (the daemon's
process, every host's shell PID and namespace inode, every process started in
a host), the control socket and the log.  `svclab clean` trusts only what is
written here.  Writes are atomic (write, then rename).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import LabError, UsageError
from topo.netns import ProcRef

DEFAULT_RUN_DIR = "/run/svclab"
LAB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$")


def run_dir() -> Path:
    return Path(os.environ.get("SVCLAB_RUN_DIR", DEFAULT_RUN_DIR))


def check_lab_name(name: str) -> str:
    if not LAB_NAME.match(name or ""):
        raise UsageError(f"--name: invalid lab name {name!r}; allowed: 1-20 lowercase "
                         "letters, digits or '-', starting and ending with a letter or digit")
    return name


@dataclass(frozen=True)
class LabPaths:
    name: str

    @property
    def root(self) -> Path:
        return run_dir() / self.name

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def spec(self) -> Path:
        return self.root / "cluster.yaml"

    @property
    def log(self) -> Path:
        return self.root / "lab.log"

    @property
    def control(self) -> Path:
        return self.root / "control.sock"

    @property
    def api(self) -> Path:
        """The API server's PKI (root-only)."""
        return self.root / "api"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def outside_dns(self) -> Path:
        """Records of the emulated public DNS (name -> addresses)."""
        return self.root / "outside-dns.json"

    @property
    def files(self) -> Path:
        """Per-host files (resolv.conf, rendered rules)."""
        return self.root / "hosts"


@dataclass(frozen=True)
class HostRecord:
    """A host of the lab as the state file keeps it; replaced, never changed (the
    state file's writer keeps each record's JSON once encoded)."""
    host: str
    kind: str
    name: str
    pid: int
    start: int
    netns: int
    namespace: str | None = None
    node: str | None = None
    addresses: list[str] = field(default_factory=list)

    @property
    def proc(self) -> ProcRef:
        return ProcRef(self.pid, self.start)

    def to_json(self) -> dict:
        return {**vars(self), "addresses": list(self.addresses)}


@dataclass
class ProcessRecord:
    host: str
    pid: int
    start: int
    argv: list[str]
    role: str = ""

    @property
    def proc(self) -> ProcRef:
        return ProcRef(self.pid, self.start)


@dataclass
class LabState:
    name: str
    daemon_pid: int
    daemon_start: int
    proxy_mode: str = "iptables"
    ready: bool = False
    api_url: str = ""
    kubeconfig: str = ""
    # The API server's own process (labd/apiproc.py); 0 until it runs.
    apiserver_pid: int = 0
    apiserver_start: int = 0
    # Supervised agents: key (e.g. proxy/NODE) -> {"pid": ..., "restarts": ...}
    agents: dict = field(default_factory=dict)
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    processes: list[ProcessRecord] = field(default_factory=list)
    # Namespace inodes ever used by the lab (hosts removed since included), so
    # cleanup finds processes left inside them.
    netns_seen: list[int] = field(default_factory=list)
    # Their cookies (str(inode) -> cookie): an inode number is reused once its
    # namespace is gone, a cookie never; cleanup checks both.
    netns_cookies: dict[str, int] = field(default_factory=dict)

    def to_json(self, hosts: bool = True) -> dict:
        """As dataclasses.asdict would, by hand: asdict deep-copies every value
        recursively, which at a thousand pods cost most of a state write."""
        data = dict(vars(self))
        data["agents"] = {k: dict(v) if isinstance(v, dict) else v
                          for k, v in self.agents.items()}
        if hosts:
            data["hosts"] = {k: h.to_json() for k, h in self.hosts.items()}
        else:
            del data["hosts"]
        data["processes"] = [{**vars(p), "argv": list(p.argv)} for p in self.processes]
        data["netns_seen"] = list(self.netns_seen)
        data["netns_cookies"] = dict(self.netns_cookies)
        return data

    def snapshot(self) -> LabState:
        """A copy to write while the lab goes on changing: its containers are
        copied, the records in them shared (hosts are frozen, processes are
        never changed once recorded); `agents` is shared, as it is only ever
        replaced whole."""
        return dataclasses.replace(
            self, hosts=dict(self.hosts), processes=list(self.processes),
            netns_seen=list(self.netns_seen), netns_cookies=dict(self.netns_cookies))

    def cookies(self) -> dict[int, int]:
        """inode -> cookie of the namespaces whose cookie is known."""
        return {int(inode): cookie for inode, cookie in self.netns_cookies.items()}

    @classmethod
    def from_json(cls, data: dict) -> LabState:
        hosts = {k: HostRecord(**v) for k, v in data.get("hosts", {}).items()}
        procs = [ProcessRecord(**p) for p in data.get("processes", [])]
        rest = {k: v for k, v in data.items() if k not in ("hosts", "processes")}
        return cls(hosts=hosts, processes=procs, **rest)

    @property
    def daemon(self) -> ProcRef:
        return ProcRef(self.daemon_pid, self.daemon_start)

    @property
    def apiserver(self) -> ProcRef | None:
        return ProcRef(self.apiserver_pid, self.apiserver_start) if self.apiserver_pid else None

    def find_host(self, name: str, namespace: str | None = None) -> HostRecord:
        """Resolve a user-facing host name: node, pod (with namespace), client, igw...
        A pod may share its name with a lab host (a pod called `client`): an
        explicit namespace means the pod, no namespace means the lab host."""
        pods, others = [], []
        for record in self.hosts.values():
            if record.kind == "pod":
                if record.name == name and record.namespace == (namespace or "default"):
                    pods.append(record)
            elif record.name == name or record.host == name:
                others.append(record)
        matches = pods + others if namespace is not None else others + pods
        if not matches:
            known = sorted({r.name for r in self.hosts.values() if r.kind != "pod"})
            raise UsageError(f"HOST: no host {name!r} in lab {self.name!r}"
                             + (f" (namespace {namespace})" if namespace else "")
                             + f"; nodes and others: {', '.join(known)}; "
                             "pods by name with -n NAMESPACE")
        return matches[0]


_WRITE_LOCK = threading.Lock()


def write_state(paths: LabPaths, state: LabState) -> None:
    """Replace the state file atomically.  The daemon's threads (pods added
    by the kubelet, the supervisor's agent summary, readiness) write the same
    state at once: one writer at a time, each through a temporary file of its
    own, so a reader never sees two writes interleaved."""
    with _WRITE_LOCK:
        # Compact: json's C encoder does not indent (indent=1 took the pure
        # Python encoder, ~10x slower at a thousand pods).
        text = _encode(state)
        tmp = paths.state.with_suffix(f".tmp.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(text)
        os.replace(tmp, paths.state)


# id(record) -> (record, its JSON): a pod's record is encoded once, not at every
# write of the file while it lives (a thousand pods, hundreds of writes).
_ENCODED_HOSTS: dict[int, tuple[HostRecord, str]] = {}


def _encode(state: LabState) -> str:
    """state.to_json() as compact JSON, each host from _ENCODED_HOSTS (under _WRITE_LOCK)."""
    parts, encoded = [], {}
    for key, record in state.hosts.items():
        cached = _ENCODED_HOSTS.get(id(record))
        if cached is None or cached[0] is not record:
            cached = (record, _compact(record.to_json()))
        encoded[id(record)] = cached
        parts.append(f"{_compact(key)}:{cached[1]}")
    _ENCODED_HOSTS.clear()
    _ENCODED_HOSTS.update(encoded)
    rest = _compact(state.to_json(hosts=False))     # never empty: name, daemon_pid, ...
    return rest[:-1] + ',"hosts":{' + ",".join(parts) + "}}"


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def read_state(paths: LabPaths) -> LabState:
    try:
        return LabState.from_json(json.loads(paths.state.read_text()))
    except FileNotFoundError as err:
        raise LabError(f"lab {paths.name!r} is not running "
                       f"(no {paths.state}); start it with `svclab up`") from err
    except (ValueError, TypeError) as err:
        raise LabError(f"lab {paths.name!r} has an unreadable state file "
                       f"{paths.state}: {err}; `svclab clean --name {paths.name}` "
                       "removes what it left") from err


def list_labs() -> list[str]:
    root = run_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())
