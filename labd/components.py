"""The lab's own programs inside its hosts: per-node proxy and policy agents
and the emulated outside world (public DNS on the igw, outside services).

The daemon gives every node two agents, each with its own API credentials,
started inside the node and supervised: the proxy agent (kube-proxy's job)
and the policy agent (Calico felix's: NetworkPolicy on the pods' cali*
interfaces); the lab is ready once every agent has programmed its first rule
set (its healthz answers 200) and the outside resolver answers.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dnslib import DNSRecord

from base.errors import LabTimeout
from base.kube.client import KubeClient, credentials_from_kubeconfig
from controlplane.identities import CALICO_NODE, KUBE_PROXY, kubelet
from labd.credentials import write_identity_kubeconfig
from labd.supervisor import Supervisor
from topo.apihost import API_PORT
from topo.netns import call_in_netns, netns_connector
from topo.network import LabNetwork
from topo.plan import outside_dns_records, outside_host_name
from topo.spec import ClusterSpec, NodeSpec
from topo.workload_host import NODE_SERVER_MODULE

HEALTHZ_PORT = 10256
POLICY_HEALTHZ_PORT = 9099          # Calico felix's health port
POLICY_IDENTITY = CALICO_NODE.user
AGENT_READY_TIMEOUT = 30.0
AGENT_MODULES = ["agents.proxy", "agents.policy", NODE_SERVER_MODULE]


def start_agent_fork_server(spec: ClusterSpec, lab: LabNetwork) -> None:
    """The node agents (and the nodes' workload servers) start as forks of one
    interpreter that imported them once (agents/forkserver.py), run in the
    control-plane node: each of a 50-node lab's 100 agents saves the 0.2 s of
    CPU that importing them had cost."""
    control = next(r for r in _node_records(lab) if spec.node(r.name).is_control_plane)
    lab.start_fork_server(control.host, AGENT_MODULES)


def proxy_agent_argv(spec: ClusterSpec, node: NodeSpec, kubeconfig: Path,
                     netns: int) -> list[str]:
    net = spec.network
    return [sys.executable, "-m", "agents.proxy", "--kubeconfig", str(kubeconfig),
            "--node", node.name, "--proxy-mode", spec.proxy_mode,
            "--netns-inode", str(netns),
            "--cluster-cidr", str(net.pod_cidr), "--service-cidr", str(net.service_cidr)]


def start_proxy_agents(spec: ClusterSpec, lab: LabNetwork, api, supervisor: Supervisor) -> None:
    """One agent per node, each with a token of its own (user system:kube-proxy, as
    kubeadm's kube-proxy), reaching the API in-lab."""
    supervisor.add_all([_proxy_agent(spec, lab, api, r) for r in _node_records(lab)])


def start_proxy_agent(spec: ClusterSpec, lab: LabNetwork, api, supervisor: Supervisor,
                      record) -> None:
    supervisor.add(*_proxy_agent(spec, lab, api, record))


def _proxy_agent(spec: ClusterSpec, lab: LabNetwork, api, record) -> tuple[str, str, list[str]]:
    node = spec.node(record.name)
    kubeconfig = write_identity_kubeconfig(api, KUBE_PROXY,
                                           lab.paths.files / record.host / "kubeconfig",
                                           _api_server(spec), f"proxy-{node.name}")
    return (f"proxy/{node.name}", record.host,
            proxy_agent_argv(spec, node, kubeconfig, record.netns))


def policy_agent_argv(spec: ClusterSpec, node: NodeSpec, kubeconfig: Path,
                      netns: int) -> list[str]:
    return [sys.executable, "-m", "agents.policy", "--kubeconfig", str(kubeconfig),
            "--node", node.name, "--mode", spec.proxy_mode, "--netns-inode", str(netns)]


def start_policy_agents(spec: ClusterSpec, lab: LabNetwork, api, supervisor: Supervisor,
                        timeout: float = AGENT_READY_TIMEOUT) -> None:
    """One policy agent per node, as calico-node's service account, in-lab,
    each started once its node's proxy agent has synced: kube-proxy's agent
    inserts its KUBE-* jumps at the top of FORWARD, and the policy agent's
    jump must end up above them (it moves itself back to rule 1 when it
    syncs).  Node by node, not after all nodes' proxies: a 50-node lab's
    slowest proxy does not hold back the other 49 policy agents."""
    records = {r.name: r for r in _node_records(lab)}
    _wait_healthy(lab, "proxy agents", HEALTHZ_PORT, timeout,
                  on_healthy=lambda names: supervisor.add_all(
                      [_policy_agent(spec, lab, api, records[n]) for n in names]))


def start_policy_agent(spec: ClusterSpec, lab: LabNetwork, api, supervisor: Supervisor,
                       record) -> None:
    supervisor.add(*_policy_agent(spec, lab, api, record))


def _policy_agent(spec: ClusterSpec, lab: LabNetwork, api, record) -> tuple[str, str, list[str]]:
    node = spec.node(record.name)
    kubeconfig = write_identity_kubeconfig(
        api, CALICO_NODE, lab.paths.files / record.host / "policy-kubeconfig",
        _api_server(spec), f"calico-node-{node.name}")
    return (f"policy/{node.name}", record.host,
            policy_agent_argv(spec, node, kubeconfig, record.netns))


def kubelet_clients(spec: ClusterSpec, lab: LabNetwork, api) -> dict:
    """Per node, an API client as the node's kubelet (system:node:NAME) whose
    connections leave from the node itself (to the control plane's :6443), so
    a node cut off from the VPC stops reporting, as a real kubelet would."""
    return {record.name: kubelet_client(spec, lab, api, record)
            for record in _node_records(lab)}


def kubelet_client(spec: ClusterSpec, lab: LabNetwork, api, record) -> KubeClient:
    path = write_identity_kubeconfig(api, kubelet(record.name),
                                     lab.paths.files / record.host / "kubelet-kubeconfig",
                                     _api_server(spec), f"kubelet-{record.name}")
    return KubeClient(credentials_from_kubeconfig(str(path)),
                      socket_factory=netns_connector(record.pid))


def _api_server(spec: ClusterSpec) -> str:
    control = next(n for n in spec.nodes if n.is_control_plane)
    return f"https://{control.address}:{API_PORT}"


def wait_for_policy_agents(lab: LabNetwork, timeout: float = AGENT_READY_TIMEOUT) -> None:
    """Wait until every node's policy agent reports a successful sync on :9099."""
    _wait_healthy(lab, "policy agents", POLICY_HEALTHZ_PORT, timeout)


def wait_for_node_agents(lab: LabNetwork, node: str,
                         timeout: float = AGENT_READY_TIMEOUT) -> None:
    """A joining node's proxy and policy agents have both synced once."""
    _wait_healthy(lab, "proxy agent", HEALTHZ_PORT, timeout, only=node)
    _wait_healthy(lab, "policy agent", POLICY_HEALTHZ_PORT, timeout, only=node)


def _wait_healthy(lab: LabNetwork, what: str, port: int, timeout: float,
                  only: str | None = None,
                  on_healthy: Callable[[list[str]], None] | None = None) -> None:
    """Until every node's agent answers 200 on port; on_healthy gets the
    names of the nodes whose agents did since the last look."""
    deadline = time.monotonic() + timeout
    pending = {r.name: r.pid for r in _node_records(lab) if only in (None, r.name)}
    while pending:
        healthy = [name for name, pid in pending.items() if _healthy(pid, port)]
        for name in healthy:
            del pending[name]
        if healthy and on_healthy is not None:
            on_healthy(healthy)
        if pending and time.monotonic() > deadline:
            raise LabTimeout(f"{what} not healthy after {timeout:.0f} s on "
                             f"{', '.join(sorted(pending))}; see the lab log")
        if pending:
            time.sleep(0.05)


def _healthy(pid: int, port: int) -> bool:
    def ask() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status
        finally:
            conn.close()
    try:
        return call_in_netns(pid, ask, timeout=3) == 200
    except OSError:
        return False


def _node_records(lab: LabNetwork):
    return sorted(lab.node_records(), key=lambda r: r.host)


def write_outside_records(path: Path, records: dict[str, list[str]]) -> None:
    """Atomically replace the outside resolver's records (it reloads on change)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
    os.replace(tmp, path)


def start_outside_world(spec: ClusterSpec, lab: LabNetwork, supervisor: Supervisor) -> None:
    """Public DNS on the igw, and a workload server on every outside host."""
    net = spec.network
    records = lab.paths.outside_dns
    write_outside_records(records, outside_dns_records(spec))
    supervisor.add("dns/outside", "igw", [
        sys.executable, "-m", "agents.dns.outside", "--records", str(records),
        "--listen", f"{net.vpc_resolver}:53", "--listen", f"{net.internet_resolver}:53"])
    for index, service in enumerate(spec.outside):
        argv = [sys.executable, "-m", "agents.workload", "--pod-name", service.name,
                "--pod-ip", str(service.address)]
        for port, proto in service.ports:
            argv += ["--port", f"{port}/{proto}"]
        supervisor.add(f"outside/{service.name}", outside_host_name(index), argv)


def wait_for_outside_dns(spec: ClusterSpec, lab: LabNetwork,
                         timeout: float = AGENT_READY_TIMEOUT) -> None:
    igw = lab.nodes["igw"]
    resolver = str(spec.network.vpc_resolver)
    question = DNSRecord.question(f"{spec.nodes[0].name}.ec2.internal").pack()

    def ask() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            sock.sendto(question, (resolver, 53))
            return bool(DNSRecord.parse(sock.recv(4096)).rr)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if call_in_netns(igw.pid, ask, timeout=3):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LabTimeout(f"outside DNS on {resolver} not answering after {timeout:.0f} s")
        time.sleep(0.05)
