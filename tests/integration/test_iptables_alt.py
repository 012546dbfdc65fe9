"""The nodes' iptables backend against the real kernel, in a throwaway host.

The host is what Mininet makes for a lab node (`mnexec -n`: new network and
mount namespaces).  For each backend: after apply_in_host, every iptables
command inside resolves to that variant (also the explicit other variant
still works); the proxy agent's backend, running inside with the default
binary names as in a lab, writes its rules into that variant only and
skips the periodic resync only under nft; the policy agent's FORWARD jump
lands there too.  The machine's /etc/alternatives and its mount table are
untouched throughout, and a process sharing the machine's mount namespace
is refused.  A legacy node has an xtables lock of its own.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from base.errors import LabError
from topo.iptables_alt import BACKENDS, XT_LOCK, apply_in_host, detect_backend, host_backend
from topo.netns import run_in

pytestmark = pytest.mark.root
OTHER = {"nft": "legacy", "legacy": "nft"}
REPO = Path(__file__).resolve().parents[2]

# Runs inside the host, as the agents do there: default binary names, no netns prefix.
AGENTS_SYNC = """
import json
from agents.policy.backend import backend_for
from agents.policy.compute import compute_node_rules
from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s
from agents.proxy import NodeInfo, compute_ruleset, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.agent import resync_skippable
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import IptablesBackend

node = NodeInfo("ip-172-31-0-11", ("172.31.0.11",))
rs = compute_ruleset([service_from_k8s(service_dict("web", "shop", cluster_ip="10.96.0.20"))],
                     [endpoint_slice_from_k8s(slice_dict("web", "shop", endpoints=[
                         endpoint("192.168.1.10", node.name)]))], node)
web = Pod("shop", "web", "192.168.1.10", node.name, (("app", "web"),), (("http", 80, "TCP"),))
deny = policy_from_k8s({"metadata": {"name": "deny", "namespace": "shop"},
                        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
policy = backend_for("iptables")
policy.apply(policy.render(compute_node_rules(Cluster(
    (web,), (Namespace("shop", ()),), (deny,)), node.name)))
# Last: a policy commit moves nf_tables' generation (one full resync under nft).
proxy = IptablesBackend()
proxy.sync(rs)
print(json.dumps({"variant": proxy.variant(),
                  "skips": resync_skippable(proxy, rs, node)}))
"""


def machine_view() -> tuple[str, str]:
    """What must never change: the machine's link and its mounts at /etc."""
    with open("/proc/self/mountinfo") as handle:
        mounts = "".join(line for line in handle if " /etc" in line)
    return os.readlink("/etc/alternatives/iptables"), mounts


@pytest.fixture
def node_host():
    """A process in new network and mount namespaces, as Mininet starts a node."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (namespaces)")
    proc = subprocess.Popen(["mnexec", "-n", "sleep", "300"])
    deadline = time.monotonic() + 10
    while os.stat(f"/proc/{proc.pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
        assert time.monotonic() < deadline, "mnexec made no namespace"
        time.sleep(0.01)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def in_host(pid: int, *argv: str) -> str:
    return run_in(pid, list(argv), timeout=60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_node_runs_the_chosen_iptables_and_the_machine_keeps_its_own(
        node_host, backend, tmp_path):
    before = machine_view()
    mounted = apply_in_host(node_host, backend, tmp_path, where="node")
    assert mounted == (backend != detect_backend())
    assert host_backend(node_host) == backend
    label = "nf_tables" if backend == "nft" else "legacy"
    for command in ("iptables", "iptables-save", "iptables-restore", "ip6tables",
                    "ip6tables-save", "ip6tables-restore"):
        assert f"({label})" in in_host(node_host, command, "--version"), command
    assert "(nf_tables)" in in_host(node_host, "iptables-nft", "--version")
    assert "(legacy)" in in_host(node_host, "iptables-legacy", "--version")
    assert in_host(node_host, "readlink", "/etc/alternatives/iptables") == \
        f"/usr/sbin/iptables-{backend}\n"

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["mnexec", "-a", str(node_host), sys.executable, "-c", AGENTS_SYNC],
                          capture_output=True, text=True, timeout=120, env=env, cwd="/")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"variant": label, "skips": backend == "nft"}
    chosen = in_host(node_host, f"iptables-{backend}-save")
    other = in_host(node_host, f"iptables-{OTHER[backend]}-save")
    assert "-A KUBE-SERVICES" in chosen and ":cali-FORWARD" in chosen
    assert "-A FORWARD" in chosen and "cali-FORWARD" in chosen.split("-A FORWARD", 1)[1]
    assert "KUBE-" not in other and "cali-" not in other
    assert machine_view() == before


def test_applying_twice_is_harmless(node_host, tmp_path):
    apply_in_host(node_host, "legacy", tmp_path)
    apply_in_host(node_host, "legacy", tmp_path)
    assert host_backend(node_host) == "legacy"
    assert "(legacy)" in in_host(node_host, "iptables-save", "--version")
    apply_in_host(node_host, "nft", tmp_path)
    assert host_backend(node_host) == "nft"


def test_a_legacy_node_does_not_wait_on_the_machines_xtables_lock(node_host, tmp_path):
    """iptables-legacy locks /run/xtables.lock for every command; a node's
    is its own, so the machine holding its lock does not stop the node."""
    apply_in_host(node_host, "legacy", tmp_path)
    with open(XT_LOCK, "a") as machine_lock:
        fcntl.flock(machine_lock, fcntl.LOCK_EX)
        try:
            out = in_host(node_host, "iptables", "-w", "1", "-t", "nat", "-S", "PREROUTING")
        finally:
            fcntl.flock(machine_lock, fcntl.LOCK_UN)
    assert out == "-P PREROUTING ACCEPT\n"


def test_a_process_in_the_machines_mount_namespace_is_refused(tmp_path):
    """Only its network namespace is its own: switching there would switch
    the machine's iptables, so nothing is done."""
    before = machine_view()
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        time.sleep(0.2)
        with pytest.raises(LabError, match="refusing to switch iptables in the machine"):
            apply_in_host(proc.pid, OTHER[detect_backend()], tmp_path)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert machine_view() == before
    assert not list(tmp_path.iterdir())
