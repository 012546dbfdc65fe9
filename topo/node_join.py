"""A node joining or leaving a running lab: the kernel side.

Joining is what a new EC2 instance and `kubeadm join` do to the VPC: a host
wired to its subnet's bridge with its address, routes and rules (the same
plan as the lab's first nodes, topo/plan.py `plan_node`), a route to its pod
block on every other node (Calico's BGP peers learning it), and, at the
igw, its public IP's 1:1 NAT and (with zones) the VPC route table's entry
for its block.  Leaving undoes all of it once its pods are gone: the
instance is terminated, its routes are withdrawn, its public IP released.

The control-plane side (agents, kubelet, the Node object, draining) is the
daemon's: labd/nodes.py.
"""
from __future__ import annotations

import logging

from topo.netns import run_in
from topo.network import LabNetwork
from topo.plan import (
    igw_pod_route,
    node_segment,
    peer_route,
    plan_node,
    render_igw_chains,
)
from topo.spec import ClusterSpec, NodeSpec
from topo.state import HostRecord

log = logging.getLogger("svclab.nodes")
IGW = "igw"


def node_hosts(lab: LabNetwork) -> dict[str, str]:
    """Kubernetes node name -> its host."""
    return {r.name: r.host for r in lab.node_records()}


def next_node_host(lab: LabNetwork) -> str:
    """n<k>, k past the highest node host the lab has now."""
    numbers = [int(h[1:]) for h in node_hosts(lab).values() if h[1:].isdigit()]
    return f"n{max(numbers, default=-1) + 1}"


def join(lab: LabNetwork, spec: ClusterSpec, node: NodeSpec) -> HostRecord:
    """Wire `node` (the last of `spec.nodes`, placed by topo/spec_nodes.py)
    into the running VPC; `lab.spec` becomes `spec`."""
    record = lab.add_node_host(plan_node(spec, node, next_node_host(lab)),
                               node_segment(spec, node).bridge)
    try:
        hosts = node_hosts(lab)
        for peer in spec.nodes:
            if peer is not node:
                _ip(lab, hosts[peer.name], f"route replace {peer_route(spec, peer, node)}")
        _update_igw(lab, spec, add=node)
    except BaseException:
        lab.remove_host(record.host)
        _withdraw(lab, lab.spec, node)    # the lab as it was
        raise
    lab.spec = spec
    log.info("node %s joined as %s (%s, pod block %s)", node.name, record.host,
             node.address, node.pod_block)
    return record


def leave(lab: LabNetwork, spec: ClusterSpec, node: NodeSpec) -> None:
    """Terminate `node`'s instance (its pods' hosts too, if any are left) and
    withdraw its routes; `spec` is the lab without it."""
    host = node_hosts(lab).get(node.name)
    for pod in [r for r in lab.pods() if r.node == node.name]:
        lab.remove_host(pod.host)
    if host is not None:
        lab.remove_host(host)
    lab.spec = spec
    _withdraw(lab, spec, node)
    log.info("node %s left (%s)", node.name, host)


def _withdraw(lab: LabNetwork, spec: ClusterSpec, node: NodeSpec) -> None:
    hosts = node_hosts(lab)
    for peer in spec.nodes:
        if peer.name != node.name and peer.name in hosts:
            _ip(lab, hosts[peer.name], f"route del {node.pod_block}", missing_ok=True)
    _update_igw(lab, spec, remove=node)


def _update_igw(lab: LabNetwork, spec: ClusterSpec, *, add: NodeSpec | None = None,
                remove: NodeSpec | None = None) -> None:
    """The igw's IGW-* chains for `spec`'s nodes (one iptables-restore), and
    the VPC route table's entry for the node that joined or left."""
    if add is not None and (route := igw_pod_route(spec, add)):
        _ip(lab, IGW, f"route replace {route}")
    if remove is not None and spec.network.zones:
        _ip(lab, IGW, f"route del {remove.pod_block}", missing_ok=True)
    run_in(lab.nodes[IGW].pid, ["iptables-restore", "--noflush"],
           input=render_igw_chains(spec), where=IGW)


def _ip(lab: LabNetwork, host: str, line: str, *, missing_ok: bool = False) -> None:
    argv = ["ip", *line.split()]
    if missing_ok:      # already gone (a node that never finished joining)
        argv = ["sh", "-c", " ".join(argv) + " 2>/dev/null || true"]
    run_in(lab.nodes[host].pid, argv, where=host)
