"""Scoped cleanup: remove what a lab left behind, and nothing else.

Mininet's global cleanup and kill-by-name tools match broad patterns and hit
what is not ours, so none of them is used here.  A lab is identified only by what it
recorded in its state folder: process (pid, start time) pairs and the inodes
of its network namespaces.  A namespace dies with the last process in it, and
takes its veths and bridges along, so killing exactly those processes and
removing the state folder leaves nothing of the lab.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from base.errors import LabError
from topo.labroot import remove_lab_root
from topo.netns import ProcRef, netns_cookie, netns_inode, own_netns_inode, start_time
from topo.state import LabPaths, read_state

STOP_TIMEOUT = 3.0


def processes_in_netns(inodes: set[int], exclude: set[int] = frozenset(),
                       cookies: dict[int, int] | None = None) -> list[ProcRef]:
    """Every process whose network namespace is one of `inodes`.  cookies
    (inode -> the namespace's cookie, where known): a process whose namespace
    has the inode but another cookie is in someone else's namespace that got
    the number after ours was gone, and is left alone."""
    if own_netns_inode() in inodes:
        raise LabError("refusing to match processes of the host network namespace")
    cookies = cookies or {}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude or int(entry) == os.getpid():
            continue
        try:
            inode = netns_inode(entry)
            if inode in inodes:
                start = start_time(int(entry))
                if start is not None and (inode not in cookies
                                          or netns_cookie(int(entry)) == cookies[inode]):
                    found.append(ProcRef(int(entry), start))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def stop_processes(procs: list[ProcRef], timeout: float = STOP_TIMEOUT) -> list[ProcRef]:
    """SIGTERM, wait up to timeout, then SIGKILL; returns those that survived."""
    procs = [p for p in dict.fromkeys(procs) if p.alive()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if proc.alive():
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.alive() for p in procs):
            _reap(procs)
            time.sleep(0.02)
        procs = [p for p in procs if p.alive()]
        if not procs:
            break
    return procs


def _reap(procs: list[ProcRef]) -> None:
    """Collect those of procs that are exited children of ours, so they stop
    counting as alive.  Only these: waitpid(-1) would also reap a container
    the pod runtime is waiting for, and its exit code would be lost."""
    for proc in procs:
        try:
            os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:
            continue


@dataclass
class CleanReport:
    name: str
    daemon_stopped: bool = False
    processes_stopped: int = 0
    survivors: list[int] = field(default_factory=list)
    state_removed: bool = False


def clean_lab(name: str) -> CleanReport:
    """Stop a lab's daemon and every process in its namespaces; drop its state."""
    paths = LabPaths(name)
    report = CleanReport(name)
    if not paths.root.exists():
        return report
    if paths.state.exists():
        state = read_state(paths)
        if state.daemon.alive():
            report.daemon_stopped = True
            stop_processes([state.daemon], timeout=10.0)
        recorded = [p.proc for p in state.processes] + [h.proc for h in state.hosts.values()]
        if state.apiserver is not None:      # it ends on its own when the daemon is gone
            recorded.append(state.apiserver)
        inodes = set(state.netns_seen) | {h.netns for h in state.hosts.values()}
        victims = list(dict.fromkeys(recorded + processes_in_netns(inodes,
                                                                    cookies=state.cookies())))
        alive = [p for p in victims if p.alive()]
        report.processes_stopped = len(alive)
        report.survivors = [p.pid for p in stop_processes(alive)]
    if report.survivors:
        raise LabError(f"lab {name!r}: processes {report.survivors} did not stop; "
                       f"state kept in {paths.root}")
    remove_lab_root(paths)
    report.state_removed = True
    return report
