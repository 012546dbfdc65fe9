"""The cluster's own components inside the lab: per-node proxy agents.

The daemon gives every node an agent (the kube-proxy equivalent) with its own
API credentials, started inside the node and supervised; the lab is ready
once every agent has programmed its first rule set (its healthz answers 200).
"""
from __future__ import annotations

import http.client
import sys
import time
from pathlib import Path

from svclab.errors import LabTimeout
from topo.apihost import API_PORT
from topo.lab import Lab
from topo.netns import call_in_netns
from topo.spec import ClusterSpec, NodeSpec
from topo.supervisor import Supervisor

HEALTHZ_PORT = 10256
AGENT_READY_TIMEOUT = 30.0


def proxy_agent_argv(spec: ClusterSpec, node: NodeSpec, kubeconfig: Path,
                     netns: int) -> list[str]:
    net = spec.network
    return [sys.executable, "-m", "agents.proxy", "--kubeconfig", str(kubeconfig),
            "--node", node.name, "--proxy-mode", spec.proxy_mode,
            "--netns-inode", str(netns),
            "--cluster-cidr", str(net.pod_cidr), "--service-cidr", str(net.service_cidr)]


def start_proxy_agents(spec: ClusterSpec, lab: Lab, api, supervisor: Supervisor) -> None:
    """One agent per node, each with a token of its own, reaching the API in-lab."""
    control = next(n for n in spec.nodes if n.is_control_plane)
    server = f"https://{control.address}:{API_PORT}"
    for record in _node_records(lab):
        node = spec.node(record.name)
        token = api.mint_token(f"system:node:{node.name}", ("system:nodes",))
        kubeconfig = api.write_kubeconfig(lab.paths.files / record.host / "kubeconfig",
                                          server, token=token, user=f"proxy-{node.name}")
        supervisor.add(f"proxy/{node.name}", record.host,
                       proxy_agent_argv(spec, node, kubeconfig, record.netns))


def wait_for_proxy_agents(lab: Lab, timeout: float = AGENT_READY_TIMEOUT) -> None:
    """Wait until every node's agent reports a successful sync on :10256."""
    deadline = time.monotonic() + timeout
    pending = {r.name: r.pid for r in _node_records(lab)}
    while pending:
        pending = {name: pid for name, pid in pending.items() if not _healthy(pid)}
        if pending and time.monotonic() > deadline:
            raise LabTimeout(f"proxy agents not healthy after {timeout:.0f} s on "
                             f"{', '.join(sorted(pending))}; see the lab log")
        time.sleep(0.05)


def _healthy(pid: int) -> bool:
    def ask() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", HEALTHZ_PORT, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status
        finally:
            conn.close()
    try:
        return call_in_netns(pid, ask, timeout=3) == 200
    except OSError:
        return False


def _node_records(lab: Lab):
    return sorted((r for r in lab.state.hosts.values() if r.kind == "node"),
                  key=lambda r: r.host)
