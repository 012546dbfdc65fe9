"""Nodes joining and leaving a running lab's spec (pure).

`svclab node add` is kubeadm join on a fresh EC2 instance: the instance gets
a free private address in its subnet (its zone's, in a lab with zones), a
public IP, and Calico gives its node a free pod block; its name defaults to
its EC2 name.  `svclab node remove` takes one out.  Both return a new
ClusterSpec; `nodes_data` writes every node's resolved fields out, so the
lab's spec file parses back to the same nodes after nodes came and went
(addresses and blocks otherwise follow the list order).

Bad input raises SpecError naming the field (`name`, `zone`, `address`,
`role`, `node`) and what is allowed; the CLI exits 2 and nothing changes.
"""
from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from base.errors import SpecError
from topo import fields
from topo.spec import ClusterSpec, NodeSpec

JOINABLE_ROLES = ("worker",)
FIRST_HOST_OFFSET = 10      # the default spec's nodes start at .10 of their subnet


def join_node(spec: ClusterSpec, name: str | None = None, *, role: str = "worker",
              zone: str | None = None, address: str | None = None) -> ClusterSpec:
    """The spec with one more node, placed as `kubeadm join` on a new instance."""
    if role not in JOINABLE_ROLES:
        raise SpecError("role", f"invalid value {role!r}; allowed: worker (a joining "
                        "control-plane node would need an API server of its own, which "
                        "the lab does not run)")
    zone = _zone_for(spec, zone)
    subnet = spec.network.zone(zone).subnet if zone else spec.network.vpc_subnet
    used = {n.address for n in spec.nodes}
    if address is None:
        private = _first_free(subnet, fields.aws_reserved(subnet) | used)
        if private is None:
            raise SpecError("address", f"no free address left in {subnet}")
    else:
        private = fields.address(address, "address", subnet,
                                 reserved=fields.aws_reserved(subnet))
        if private in used:
            owner = next(n.name for n in spec.nodes if n.address == private)
            raise SpecError("address", f"{private} is already used by node {owner}")
    node_name = (fields.name(name, "name", subdomain=True) if name is not None
                 else fields.ec2_name(private))
    if any(n.name == node_name for n in spec.nodes):
        raise SpecError("name", f"node {node_name!r} already exists; nodes: "
                        + ", ".join(n.name for n in spec.nodes))
    public_ips = spec.network.public_ips
    public = _first_free(public_ips, {public_ips.network_address, public_ips.network_address + 1,
                                      public_ips.broadcast_address}
                         | {n.public_ip for n in spec.nodes})
    if public is None:
        raise SpecError("publicIP", f"no free public IP left in {public_ips}")
    node = NodeSpec(node_name, role, private, public, _free_block(spec), 0, zone)
    return replace(spec, nodes=spec.nodes + (node,))


def leave_node(spec: ClusterSpec, name: str) -> tuple[ClusterSpec, NodeSpec]:
    """The spec without node `name`, and that node; the control plane stays."""
    node = find_node(spec, name)
    if node.is_control_plane:
        raise SpecError("node", f"{name} is the control plane; allowed: a worker ("
                        + ", ".join(n.name for n in spec.nodes if not n.is_control_plane)
                        + ")")
    return replace(spec, nodes=tuple(n for n in spec.nodes if n is not node)), node


def find_node(spec: ClusterSpec, name: str) -> NodeSpec:
    for node in spec.nodes:
        if node.name == name:
            return node
    raise SpecError("node", f"no node {name!r}; nodes: "
                    + ", ".join(n.name for n in spec.nodes))


def nodes_data(spec: ClusterSpec) -> list[dict[str, Any]]:
    """Every node with its resolved fields, as the spec file writes them."""
    out = []
    for node in spec.nodes:
        item = {"name": node.name, "role": node.role, "address": str(node.address),
                "publicIP": str(node.public_ip), "podBlock": str(node.pod_block)}
        if node.static_pods:
            item["staticPods"] = node.static_pods
        if node.zone is not None:
            item["zone"] = node.zone
        out.append(item)
    return out


def _zone_for(spec: ClusterSpec, zone: str | None) -> str | None:
    zones = spec.network.zones
    if not zones:
        if zone is not None:
            raise SpecError("zone", "this lab has no zones; allowed: no --zone "
                            "(start a lab with zones: `svclab up --zones N`)")
        return None
    names = [z.name for z in zones]
    if zone is None:    # the zone with the fewest nodes, as an autoscaling group spreads
        return min(names, key=lambda z: (sum(n.zone == z for n in spec.nodes), names.index(z)))
    if zone not in names:
        raise SpecError("zone", f"no zone {zone!r}; allowed: {', '.join(names)}")
    return zone


def _first_free(net: ipaddress.IPv4Network, taken: set) -> ipaddress.IPv4Address | None:
    start = net.network_address + FIRST_HOST_OFFSET
    candidates = (a for a in net.hosts() if a >= start)
    return next((a for a in candidates if a not in taken), None)


def _free_block(spec: ClusterSpec) -> ipaddress.IPv4Network:
    net = spec.network
    used = {n.pod_block for n in spec.nodes}
    for block in net.pod_cidr.subnets(new_prefix=net.pod_block_prefix):
        if block not in used:
            return block
    raise SpecError("podBlock", f"network.podCIDR {net.pod_cidr} has no free "
                    f"/{net.pod_block_prefix} block left")
