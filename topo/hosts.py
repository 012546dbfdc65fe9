"""Lab host classes: Mininet nodes that always live in their own namespaces.

Small classes in Mininet's style: a host is created (its shell starts in a new
network and mount namespace), configured once from a HostConfig, and
terminated.  Bridges are Linux bridges *inside* a namespace of their own, so a
lab leaves no interface, bridge or route in the host's namespace.  Pods are
not Mininet hosts: topo/pod_sandbox.py holds their namespaces without a
process and sets up their /etc files, /tmp and /run.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from mininet.link import Link
from mininet.node import Host
from mininet.nodelib import LinuxBridge

from base.errors import LabError, LabTimeout
from topo.netns import netns_inode, run_in, set_uts_hostname, start_time
from topo.plan import HostConfig, LinkPlan

# Importing mininet makes every logger created afterwards a MininetLogger with
# a handler of its own (so each of our log lines would print twice); undo that.
logging.setLoggerClass(logging.Logger)
LINK_TIMEOUT = 5.0


class _Namespaced:
    """What every lab node adds to Mininet's: identity and a bounded stop."""

    SHELL_EXIT_TIMEOUT = 5.0

    @property
    def netns(self) -> int:
        return netns_inode(self.pid)

    @property
    def start_time(self) -> int:
        return start_time(self.pid)

    def terminate(self) -> None:
        """Hang up the shell (its namespace dies with it); SIGKILL if it lingers."""
        shell = self.shell
        if shell is not None and shell.poll() is None:
            os.killpg(shell.pid, signal.SIGHUP)
            try:
                shell.wait(timeout=self.SHELL_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(shell.pid, signal.SIGKILL)
                shell.wait(timeout=self.SHELL_EXIT_TIMEOUT)
        self.cleanup()


class LabHost(_Namespaced, Host):
    """A node, pod, router or client: one shell in new net+mount namespaces."""

    def __init__(self, name: str):
        super().__init__(name, inNamespace=True)


class LabBridge(_Namespaced, LinuxBridge):
    """A Linux bridge in a namespace of its own (never in the host's)."""

    def __init__(self, name: str, dpid: int):
        super().__init__(name, inNamespace=True, dpid=f"{dpid:016x}")


def connect(nodes: dict, link: LinkPlan) -> Link:
    """Create a veth pair straight into the two namespaces (never the host's)."""
    node1, node2 = nodes[link.host1], nodes[link.host2]
    if not (node1.inNamespace and node2.inNamespace):
        raise LabError(f"refusing to link {link.host1}-{link.host2}: both ends "
                       "must live in lab namespaces")
    # fast=True creates the pair inside node1's namespace with the peer in
    # node2's; Mininet then never moves interfaces through the host namespace.
    return Link(node1, node2, intfName1=link.intf1, intfName2=link.intf2, fast=True)


def configure(host, config: HostConfig, files: Path) -> None:
    """Apply a HostConfig inside the host with one shell script (one fork).

    The script runs with `set -e`: the first failing step stops it and its
    error (with the step) is raised as a CommandError.
    """
    files.mkdir(parents=True, exist_ok=True)
    if config.hostname is not None:
        set_uts_hostname(host.pid, config.hostname)
    steps = []
    etc_files = list(config.etc_files)
    if config.resolv_conf is not None:
        etc_files.append(("/etc/resolv.conf", config.resolv_conf))
    for target, content in etc_files:
        source = files / Path(target).name
        source.write_text(content)
        source.chmod(0o644)
        steps.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    if config.ip_batch:
        batch = files / "ip.batch"
        batch.write_text("\n".join(config.ip_batch) + "\n")
        steps.append(f"ip -batch {shlex.quote(str(batch))}")
    steps += [_sysctl_step(key, value, optional=config.kind == "bridge")
              for key, value in config.sysctls]
    if config.iptables:
        rules = files / "rules.iptables"
        rules.write_text(config.iptables)
        steps.append(f"iptables-restore --noflush < {shlex.quote(str(rules))}")
    if steps:
        run_in(host.pid, ["sh", "-ec", "\n".join(steps)], where=config.host)


def wait_links_up(node, timeout: float = LINK_TIMEOUT) -> None:
    """Wait until every link of a node carries traffic.

    A veth's carrier, its qdisc and a bridge port's forwarding state follow
    `ip link set up` asynchronously (the kernel's linkwatch); a packet sent
    before that is silently lost.  So a lab is ready only when every
    interface is UP with carrier and every bridge port is forwarding.
    """
    deadline = time.monotonic() + timeout
    while True:
        pending = _links_not_ready(node)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabTimeout(f"{node.name}: links not up after {timeout} s: "
                             + "; ".join(pending))
        time.sleep(0.01)


def _links_not_ready(node) -> list[str]:
    pending = []
    for line in run_in(node.pid, ["ip", "-o", "link", "show"], where=node.name).splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == "lo":
            continue
        if "NO-CARRIER" in line or "qdisc noop" in line or not (
                "state UP" in line or "state UNKNOWN" in line):
            pending.append(name)
    if isinstance(node, LinuxBridge):
        for line in run_in(node.pid, ["bridge", "-o", "link", "show"],
                           where=node.name).splitlines():
            if "state forwarding" not in line:
                pending.append(line.split(":")[1].strip().split("@")[0] + " (port)")
    return pending


def _sysctl_step(key: str, value: str, optional: bool = False) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    write = f"echo {shlex.quote(value)} > {shlex.quote(path)}"
    # A bridge namespace may lack br_netfilter's knobs; that is fine.
    return f"if [ -e {shlex.quote(path)} ]; then {write}; fi" if optional else write
