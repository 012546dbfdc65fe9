"""Many pods cost little and leave nothing (issue 19): a pod served by its node's
workload server has no process of its own, a pod that runs a real command has
exactly that process, and a lab of dozens of pods leaves the host as it was,
after `svclab down` and after `kill -9` of its daemon and `svclab clean`."""
from __future__ import annotations

import json
import os
import signal
import time

from labtools import admin_client, host_snapshot, svclab, unique_name, wait_for
from topo.cleanup import processes_in_netns
from topo.netns import ProcRef
from topo.state import LabPaths, read_state

PODS = 30
WORKLOADS = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: many}}
spec:
  replicas: {PODS}
  selector: {{matchLabels: {{app: many}}}}
  template:
    metadata: {{labels: {{app: many}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: web, image: svclab/workload, ports: [{{containerPort: 80}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: sleeper}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]
"""


def host_state(lab: str) -> dict:
    """host_snapshot without the machine's named namespaces, which other labs'
    tests add and remove meanwhile; this lab must have none of its own."""
    snapshot = host_snapshot()
    assert lab not in snapshot.pop("netns")
    return snapshot


def mounts() -> list[str]:
    """The machine's mounts, but the namespace files other labs' tests add
    (`ip netns add`): a lab mounts nothing outside its pods' namespaces."""
    with open("/proc/self/mountinfo") as handle:
        return [line for line in handle.read().splitlines()
                if "/run/netns" not in line and " nsfs " not in line]


def start_pods(name: str) -> dict:
    """Apply the workloads, wait until all run; the lab's state then."""
    svclab("kubectl", "--name", name, "--", "apply", "-f", "-", input=WORKLOADS)
    client = admin_client(name)

    def running() -> bool:
        pods = client.list("pods", "default")[0]
        return len(pods) == PODS + 1 and all(
            (p.get("status") or {}).get("phase") == "Running" for p in pods)
    wait_for(f"{PODS + 1} pods running", running, timeout=120)
    return read_state(LabPaths(name))


def test_pods_cost_no_process_unless_they_run_a_command_and_down_leaves_nothing():
    name = unique_name("pscale")
    before, mounts_before = host_state(name), mounts()
    svclab("up", "--name", name)
    try:
        state = start_pods(name)
        pods = [r for r in state.hosts.values() if r.kind == "pod" and r.namespace == "default"]
        counts = {r.name: len(processes_in_netns({r.netns})) for r in pods}
        assert counts.pop("sleeper") == 1, "a pod running a command has that process"
        assert len(counts) == PODS and set(counts.values()) == {0}, counts
        servers = [p for p in state.processes if p.role == "workload-server"]
        nodes = {r.node for r in pods if r.name != "sleeper"}
        assert len(servers) == len(nodes), "one workload server per node with such pods"
        # Each pod still answers as itself, from its own address and hostname.
        web = next(r for r in pods if r.name != "sleeper")
        node = next(r for r in state.hosts.values() if r.kind == "node" and r.name == web.node)
        got = svclab("exec", "--name", name, node.name, "--", "curl", "-s", "-m", "5",
                     f"http://{web.addresses[0]}/hostname").stdout
        assert got == web.name
        uts = svclab("exec", "--name", name, "-n", "default", web.name, "--", "hostname")
        assert uts.stdout.strip() == web.name
    finally:
        down = svclab("down", "--name", name, check=False)
        svclab("clean", "--name", name, check=False)
    assert down.returncode == 0, down.stderr
    assert host_state(name) == before
    assert mounts() == mounts_before


def test_clean_after_kill_9_with_many_pods_leaves_nothing():
    name = unique_name("pkill")
    before, mounts_before = host_state(name), mounts()
    svclab("up", "--name", name)
    try:
        state = start_pods(name)
        raw = json.loads(LabPaths(name).state.read_text())
        inodes = set(raw["netns_seen"])
        # Cookies, not only inodes: other labs' namespaces may get the inodes
        # of this lab's pods once those are gone.
        cookies = {int(inode): cookie for inode, cookie in raw["netns_cookies"].items()}
        assert set(cookies) == inodes
        os.kill(state.daemon_pid, signal.SIGKILL)
        time.sleep(0.3)
        assert processes_in_netns(inodes, cookies=cookies), \
            "the workload servers and the sleeper are left"
    finally:
        cleaned = svclab("clean", "--name", name)
    assert "state removed: True" in cleaned.stdout
    wait_for("no process left in the lab's namespaces",
             lambda: not processes_in_netns(inodes, cookies=cookies), timeout=5)
    for process in raw["processes"]:
        assert not ProcRef(process["pid"], process["start"]).alive()
    assert not LabPaths(name).root.exists()
    assert host_state(name) == before
    assert mounts() == mounts_before
