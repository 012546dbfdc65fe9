"""Lab lifecycle as the CLI sees it: up, down, status, exec, clean.

These functions validate, start and wait; they never build networks
themselves (the daemon in labd/daemon.py does).  They return data or raise
SvclabError subclasses; printing and exit codes belong to svclab.cli.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from base.errors import LabError, LabTimeout, UsageError
from labd.control import ControlClient
from topo.apihost import kubectl_path
from topo.cleanup import CleanReport, clean_lab, stop_processes
from topo.iptables_alt import describe as describe_iptables
from topo.labroot import make_lab_root
from topo.netns import MNEXEC, ProcRef, ensure_lab_namespace
from topo.network import host_exec_argv
from topo.plan import plan_lab, render_plan
from topo.spec import ClusterSpec, default_spec_path, load_spec
from topo.state import LabPaths, LabState, check_lab_name, list_labs, read_state

DEFAULT_NAME = os.environ.get("SVCLAB_NAME", "default")


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("svclab needs root for network namespaces; run it with sudo")
    if shutil.which(MNEXEC) is None:
        raise LabError("mnexec not found: install Debian's mininet package (make setup)")


@dataclass(frozen=True)
class UpResult:
    name: str
    seconds: float
    state: LabState


def dry_run(spec_file: str | None, proxy_mode: str | None) -> str:
    spec = load_spec(spec_file, proxy_mode=proxy_mode)
    backend = describe_iptables(spec.iptables_backend, spec.iptables_backend_given)
    return f"nodes' iptables: {backend}\n" + render_plan(plan_lab(spec))


def up(name: str, spec_file: str | None = None, proxy_mode: str | None = None,
       timeout: float = 120.0) -> UpResult:
    """Validate, start the daemon, and return once the lab is ready."""
    check_lab_name(name)
    spec = load_spec(spec_file, proxy_mode=proxy_mode)   # bad spec: exit 2, nothing started
    require_root()
    paths = LabPaths(name)
    _refuse_if_present(paths)
    started = time.monotonic()
    make_lab_root(paths)
    _write_spec(paths, spec_file, proxy_mode)
    with open(paths.log, "ab") as logfile:
        daemon = subprocess.Popen([sys.executable, "-m", "labd.daemon", name],
                                  stdin=subprocess.DEVNULL, stdout=logfile,
                                  stderr=subprocess.STDOUT, close_fds=True,
                                  start_new_session=True)
    deadline = started + timeout + 0.05 * _host_count(spec)
    seen = None
    while True:
        if daemon.poll() is not None:
            raise LabError(f"lab {name!r} failed to start:\n{_log_tail(paths)}"
                           + _cleaned(name))
        # Parsed only when it changed: at 50 nodes, reading it 50 times a second
        # took 3.7 s of CPU from the daemon starting the lab.
        stamp, seen = seen, _stamp(paths)
        state = _try_read(paths) if stamp != seen else None
        if state is not None and state.ready:
            return UpResult(name, time.monotonic() - started, state)
        if time.monotonic() > deadline:
            stop_processes([_proc_of(daemon)], timeout=10.0)
            daemon.wait(timeout=10)
            raise LabTimeout(f"lab {name!r} not ready after {timeout:.0f} s:\n"
                             f"{_log_tail(paths)}" + _cleaned(name))
        time.sleep(0.02)


@contextlib.contextmanager
def running(prefix: str = "lab", spec_file: str | None = None,
            proxy_mode: str | None = None):
    """A lab of its own for a block (experiments, benchmarks): yields its name,
    and always takes it down and cleans up what it recorded."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    up(name, spec_file, proxy_mode)
    try:
        yield name
    finally:
        try:
            down(name)
        finally:
            clean_lab(name)


def down(name: str, timeout: float = 60.0) -> float:
    """Stop a running lab; returns the seconds it took."""
    check_lab_name(name)
    require_root()
    paths = LabPaths(name)
    state = read_state(paths)
    started = time.monotonic()
    if not state.daemon.alive():
        raise LabError(f"lab {name!r} has no running daemon (it crashed?); "
                       f"`svclab clean --name {name}` removes what it left")
    os.kill(state.daemon.pid, 15)
    deadline = started + timeout
    while state.daemon.alive() or paths.root.exists():
        if not state.daemon.alive() and not _settling(paths):
            # It removes its folder as its last act: it failed while stopping.
            raise LabError(f"lab {name!r}: its daemon failed while stopping; "
                           f"`svclab clean --name {name}` removes what it left; "
                           f"its log ends:\n{_log_tail(paths, 40)}")
        if time.monotonic() > deadline:
            raise LabTimeout(f"lab {name!r} did not stop within {timeout:.0f} s; "
                             f"`svclab clean --name {name}` forces it; its log ends:\n"
                             f"{_log_tail(paths, 40)}")
        time.sleep(0.02)
    return time.monotonic() - started


def status(name: str) -> tuple[LabState, ClusterSpec]:
    check_lab_name(name)
    paths = LabPaths(name)
    state = read_state(paths)
    if not state.daemon.alive():
        raise LabError(f"lab {name!r} has no running daemon (it crashed?); "
                       f"`svclab clean --name {name}` removes what it left")
    return state, load_spec(paths.spec)


def exec_argv(name: str, host: str, namespace: str | None, command: list[str]) -> list[str]:
    """The argv that runs `command` inside a lab host (the CLI execs it)."""
    check_lab_name(name)
    require_root()
    if not command:
        raise UsageError("exec: give a command after --, e.g. "
                         "svclab exec ip-172-31-0-11 -- ip route")
    state = read_state(LabPaths(name))
    record = state.find_host(host, namespace)
    if not record.proc.alive():
        raise LabError(f"host {host!r} of lab {name!r} is not running")
    ensure_lab_namespace(record.pid)
    return host_exec_argv(LabPaths(name), record, command)


def kubeconfig(name: str) -> str:
    check_lab_name(name)
    state = read_state(LabPaths(name))
    if not state.kubeconfig or not state.daemon.alive():
        raise LabError(f"lab {name!r} has no API server running")
    return state.kubeconfig


def kubectl_argv(name: str, args: list[str]) -> list[str]:
    """The bundled kubectl, pointed at the lab's kubeconfig."""
    return [str(kubectl_path()), "--kubeconfig", kubeconfig(name), *args]


def clean(names: list[str]) -> list[CleanReport]:
    require_root()
    return [clean_lab(check_lab_name(n)) for n in names]


def running_labs() -> list[str]:
    return list_labs()


def status_table(state: LabState, spec: ClusterSpec) -> str:
    """`svclab status` as text: the lab's hosts, addresses and agents."""
    public = {n.name: str(n.public_ip) for n in spec.nodes}
    rows = [("HOST", "KIND", "ADDRESS", "PUBLIC-IP", "NODE", "PID")]
    order = {"node": 0, "pod": 1, "router": 2, "loadbalancer": 3, "client": 4, "outside": 5,
             "bridge": 6}
    for r in sorted(state.hosts.values(), key=lambda r: (order.get(r.kind, 9), r.host)):
        name = f"{r.namespace}/{r.name}" if r.kind == "pod" else r.name
        rows.append((name, r.kind, ",".join(r.addresses) or "-",
                     public.get(r.name, "-"), r.node or "-", str(r.pid)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    head = (f"lab {state.name}  proxy-mode {state.proxy_mode}  "
            f"iptables {spec.iptables_backend}  "
            f"daemon pid {state.daemon_pid}  {'ready' if state.ready else 'starting'}")
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    if state.agents:
        lines.append("")
        lines += [f"agent {key}: pid {info['pid']}, restarts {info['restarts']}"
                  for key, info in sorted(state.agents.items())]
    return "\n".join([head] + lines)


# --- helpers ---------------------------------------------------------------

def _refuse_if_present(paths: LabPaths) -> None:
    if not paths.root.exists():
        return
    state = _try_read(paths)
    if state is not None and state.daemon.alive():
        raise LabError(f"lab {paths.name!r} is already running; `svclab down "
                       f"--name {paths.name}` first, or pick another --name")
    raise LabError(f"lab {paths.name!r} left state behind in {paths.root}; "
                   f"`svclab clean --name {paths.name}` removes it")


def _write_spec(paths: LabPaths, spec_file: str | None, proxy_mode: str | None) -> None:
    data = yaml.safe_load(Path(spec_file or default_spec_path()).read_text())
    if proxy_mode:
        data["proxyMode"] = proxy_mode
    paths.spec.write_text(yaml.safe_dump(data, sort_keys=False))


def _stamp(paths: LabPaths) -> tuple[int, int, int] | None:
    """What changes when the state file is written (it is replaced whole)."""
    try:
        status = os.stat(paths.state)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _try_read(paths: LabPaths) -> LabState | None:
    try:
        return read_state(paths)
    except LabError:
        return None


def _proc_of(popen: subprocess.Popen):
    return ProcRef.of(popen.pid) if popen.poll() is None else ProcRef(popen.pid, -1)


def _host_count(spec: ClusterSpec) -> int:
    return len(spec.nodes) + len(spec.clients) + sum(n.static_pods for n in spec.nodes)


def _settling(paths: LabPaths, grace: float = 1.0) -> bool:
    """Whether the state folder is still there a moment after its daemon
    ended (its removal by the daemon may still be under way)."""
    end = time.monotonic() + grace
    while paths.root.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _log_tail(paths: LabPaths, lines: int = 25) -> str:
    try:
        text = paths.log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("  | " + line for line in text[-lines:])


def _cleaned(name: str) -> str:
    report = clean_lab(name)
    return f"\n(cleaned up: {report.processes_stopped} leftover processes stopped)"


# --- nodes joining and leaving (labd/nodes.py does the work in the daemon) --

NODE_CHANGE_TIMEOUT = 600.0    # a drain waits for every pod's grace period


def node_add(name: str, node: str | None = None, zone: str | None = None,
             role: str = "worker", address: str | None = None) -> dict:
    """Join a new node to a running lab; returns what it became."""
    check_lab_name(name)
    require_root()
    return ControlClient(name, timeout=NODE_CHANGE_TIMEOUT).call(
        "add_node", name=node, zone=zone, role=role, address=address)


def node_remove(name: str, node: str) -> dict:
    """Drain a node, delete it and take its machine out of the lab."""
    check_lab_name(name)
    require_root()
    return ControlClient(name, timeout=NODE_CHANGE_TIMEOUT).call("remove_node", name=node)
