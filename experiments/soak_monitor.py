"""What the soak watches on the machine side: memory of the lab's own
programs over time, and what a lab's hosts hold after the churn.

`Sampler` (a thread, a context manager) records every `every` seconds the
resident memory (VmRSS) of the daemon and of each supervised agent (by the
pids the lab records, so a restarted agent is followed), the daemon's
threads and open files, and the numbers of pods, Services, hosts and
connections to the API server.

`host_report` compares the lab's hosts with the API's pods: pod hosts no
pod needs, Running pods without a host, each node's cali* interfaces
against its pods, network namespaces the lab recorded that no host owns
any more, processes living in such namespaces, processes the lab recorded
for hosts that are gone, and pods holding more processes than a pod of the
same image held at the start (`process_baseline`).

`api_connections` counts established TCP connections to the API server's
two listeners (the control plane's :6443 in its node, the machine's
loopback port): every watch holds one (so do keep-alive clients).
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from urllib.parse import urlparse

from base.errors import CommandError
from topo.cleanup import processes_in_netns
from topo.netns import run_in
from topo.spec import load_spec
from topo.state import LabPaths, LabState, read_state

API_PORT = 6443
COUNTED_KINDS = ("pods", "services", "endpointslices", "endpoints", "deployments",
                 "replicasets", "networkpolicies", "namespaces", "serviceaccounts",
                 "configmaps", "secrets", "leases")


def status_value(pid: int, key: str) -> int | None:
    """A number from /proc/PID/status (VmRSS in KiB, Threads), None if gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def open_files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None


def components(state: LabState) -> dict[str, int]:
    """The lab's own long-running programs: the daemon, the API server's process
    and the agents."""
    return {"daemon": state.daemon_pid,
            **({"apiserver": state.apiserver_pid} if state.apiserver_pid else {}),
            **{key: info["pid"] for key, info in sorted(state.agents.items())
               if info.get("pid")}}


def api_connection_owners(state: LabState) -> dict[str, int]:
    """Who holds the client side of each connection to the API server:
    "daemon", an agent's key, or "pid N (comm)"; in-lab clients are found
    in their nodes' namespaces, loopback ones in the machine's."""
    roles = {pid: key for key, pid in components(state).items()}
    port = urlparse(state.api_url).port
    listings = [run_in(r.pid, ["ss", "-Htnp", "state", "established",
                               f"( dport = :{API_PORT} )"], timeout=30)
                for r in state.hosts.values() if r.kind == "node"]
    if port is not None:
        listings.append(run_in_machine(["ss", "-Htnp", "state", "established",
                                        f"( dport = :{port} )"]))
    owners = Counter()
    for listing in listings:
        for _, pid in _client_side(listing):
            if pid == os.getpid():
                continue
            owners[roles.get(pid) or f"pid {pid} ({_comm(pid)})"] += 1
    return dict(sorted(owners.items()))


def _comm(pid: int | None) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except (FileNotFoundError, ProcessLookupError, TypeError):
        return "?"


def api_connections(state: LabState) -> dict[str, int]:
    """Open connections at the API server's listeners (established or
    close-wait, server side): in the lab (:6443 in the control plane's
    node: kubelets, agents) and on the machine's loopback (the daemon's
    controllers, kubectl); this process's own clients left out."""
    control = next(r for r in state.hosts.values() if r.kind == "node"
                   and r.name == _control_node(state))
    inside = _server_side(run_in(control.pid, ["ss", "-Htn", *OPEN_STATES,
                                               f"( sport = :{API_PORT} )"], timeout=30))
    port = urlparse(state.api_url).port
    loopback = 0
    if port is not None:
        mine = {peer for peer, pid in _client_side(run_in_machine(
            ["ss", "-Htnp", "state", "established", f"( dport = :{port} )"]))
            if pid == os.getpid()}
        loopback = sum(1 for peer in _server_side(run_in_machine(
            ["ss", "-Htn", *OPEN_STATES, f"( sport = :{port} )"])) if peer not in mine)
    return {"in_lab": len(inside), "loopback": loopback}


OPEN_STATES = ("state", "established", "state", "close-wait")


def _server_side(listing: str) -> list[str]:
    """The peer (client) address:port of each server-side socket listed."""
    return [line.split()[4] for line in listing.splitlines() if len(line.split()) >= 5]


def _client_side(listing: str) -> list[tuple[str, int | None]]:
    """(local address:port, owning pid) of each client socket listed with -p."""
    out = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        owner = next((f for f in fields if f.startswith("users:")), "")
        pid = owner.split("pid=", 1)[1].split(",", 1)[0] if "pid=" in owner else None
        out.append((fields[2], int(pid) if pid and pid.isdigit() else None))
    return out


def _control_node(state: LabState) -> str:
    """The node whose namespace holds the API's :6443: the control plane."""
    spec = load_spec(LabPaths(state.name).spec)
    return next(n.name for n in spec.nodes if n.is_control_plane)


def run_in_machine(argv: list[str]) -> str:
    """A read-only query in the machine's own namespace (ss only)."""
    if argv[0] != "ss":
        raise ValueError("only ss may run in the machine's namespace")
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          check=True).stdout


def object_counts(api) -> dict[str, int]:
    return {kind: len(api.list(kind)[0]) for kind in COUNTED_KINDS}


class Sampler:
    """Samples the lab's programs and object counts in a thread of its own."""

    def __init__(self, lab, every: float):
        self.lab, self.every = lab, every
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def sample(self) -> dict:
        state = read_state(LabPaths(self.lab.name))
        row: dict = {"t": round(time.time(), 3)}
        for key, pid in components(state).items():
            rss = status_value(pid, "VmRSS")
            row[f"rss_kib:{key}"] = rss if rss is not None else ""
        row["daemon_threads"] = status_value(state.daemon_pid, "Threads")
        row["daemon_fds"] = open_files(state.daemon_pid)
        row["hosts"] = len(state.hosts)
        pods, _ = self.lab.api.list("pods")
        row["pods"] = len(pods)
        row["services"] = len(self.lab.api.list("services")[0])
        try:
            conns = api_connections(state)
            row["api_connections"] = conns["in_lab"] + conns["loopback"]
        except (CommandError, StopIteration, subprocess.SubprocessError):
            row["api_connections"] = ""
        return row

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.every)


def memory_summary(samples: list[dict], start: float, end: float) -> dict[str, dict]:
    """Per component: RSS (MiB) at the first sample from `start`, the peak, and
    the last sample up to `end`."""
    keys = sorted({k for s in samples for k in s if k.startswith("rss_kib:")})
    out = {}
    for key in keys:
        series = [(s["t"], s[key]) for s in samples if s.get(key) not in ("", None)]
        inside = [v for t, v in series if start <= t <= end] or [v for _, v in series]
        if not inside:
            continue
        out[key.split(":", 1)[1]] = {"start_mib": round(inside[0] / 1024, 1),
                                     "peak_mib": round(max(inside) / 1024, 1),
                                     "end_mib": round(inside[-1] / 1024, 1)}
    return out


# --- hosts, namespaces, processes ---------------------------------------------

def _pods_by_key(api) -> dict[tuple[str, str], dict]:
    pods, _ = api.list("pods")
    return {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}


def _image(pod: Mapping) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return containers[0].get("image", "")


def process_counts(state: LabState) -> dict[str, int]:
    """host -> processes in its network namespace (its shell included)."""
    by_netns: dict[int, list[str]] = {}
    for record in state.hosts.values():
        by_netns.setdefault(record.netns, []).append(record.host)
    found = Counter()
    for proc in processes_in_netns(set(by_netns)):
        try:
            inode = os.stat(f"/proc/{proc.pid}/ns/net").st_ino
        except (FileNotFoundError, ProcessLookupError):
            continue
        for host in by_netns.get(inode, []):
            found[host] += 1
    return {host: found.get(host, 0) for host in state.hosts}


def process_baseline(lab_name: str, api) -> dict[str, int]:
    """image -> the most processes a pod of that image holds now."""
    state = read_state(LabPaths(lab_name))
    counts = process_counts(state)
    pods = _pods_by_key(api)
    baseline: dict[str, int] = {}
    for record in state.hosts.values():
        pod = pods.get((record.namespace, record.name)) if record.kind == "pod" else None
        if pod is not None:
            image = _image(pod)
            baseline[image] = max(baseline.get(image, 0), counts[record.host])
    return baseline


def host_report(lab_name: str, api, baseline: Mapping[str, int]) -> dict:
    """Leftovers of the lab's hosts after the churn (see the module's docstring)."""
    state = read_state(LabPaths(lab_name))
    pods = _pods_by_key(api)
    pod_hosts = {(r.namespace, r.name): r for r in state.hosts.values() if r.kind == "pod"}
    running = {k for k, p in pods.items()
               if (p.get("status") or {}).get("phase") == "Running"}
    counts = process_counts(state)
    cali: dict[str, dict[str, int]] = {}
    for record in state.hosts.values():
        if record.kind != "node":
            continue
        links = run_in(record.pid, ["ip", "-o", "link", "show"], timeout=30)
        have = sum(1 for line in links.splitlines() if line.split(":")[1].strip()
                   .startswith("cali"))
        want = sum(1 for r in pod_hosts.values() if r.node == record.name)
        cali[record.name] = {"interfaces": have, "pods": want}
    owned = {r.netns for r in state.hosts.values()}
    orphan_netns = sorted(set(state.netns_seen) - owned)
    orphans = processes_in_netns(set(orphan_netns)) if orphan_netns else []
    gone = [p for p in state.processes
            if p.host not in state.hosts or not p.proc.alive()]
    heavy = {f"{ns}/{name}": counts[r.host] for (ns, name), r in pod_hosts.items()
             if (ns, name) in pods and counts[r.host] > baseline.get(_image(pods[(ns, name)]),
                                                                     counts[r.host])}
    return {
        "pod_hosts_without_pod": sorted(f"{ns}/{n}" for ns, n in set(pod_hosts) - set(pods)),
        "running_pods_without_host": sorted(f"{ns}/{n}" for ns, n in running - set(pod_hosts)),
        "cali_interfaces": cali,
        "cali_interfaces_extra": sum(max(0, c["interfaces"] - c["pods"]) for c in cali.values()),
        "namespaces_without_host": len(orphan_netns),
        "processes_in_those_namespaces": len(orphans),
        "recorded_processes_gone_or_hostless": len(gone),
        "pods_with_more_processes_than_at_start": heavy,
        "processes": sum(counts.values()), "hosts": len(state.hosts),
    }
