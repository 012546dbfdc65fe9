"""The ELB's kernel side in the lab: its ENIs (fixed MACs), and what the nodes
need for NLB return traffic.

ENIs.  Without zones the ELB has one VPC interface, eth0, at the VPC's .5.
With zones it has one ENI per zone, as an AWS load balancer has a node in
each enabled zone: zone i's subnet .5, on eth0 for the first zone and
eth{i+1} for the others (eth1 is its internet side).  `elb_enis` lists them.

NLB return path.  An NLB with instance targets keeps the client's address,
so a node answers `client -> VIP` flows to the client itself; through the
igw that reply would leave SNATed to the node's public IP and the client
would drop it.  So every node marks connections that arrive from the ELB's
VPC MAC (CONNMARK, bit ELB_MARK) and routes replies of those connections
through table ELB_TABLE, whose default route is the ELB.  The ELB's conntrack
then turns the reply back into VIP -> client.  Each ENI gets a fixed,
locally administered MAC derived from its address (`eni_mac`) so the rules
can name it; with zones a node marks flows from its own zone's ENI and
routes their replies back to that ENI (the ELB reaches a node through the
ENI in the node's subnet).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from topo.spec import ClusterSpec, NodeSpec, zone_interface

ELB_HOST = "elb"
ELB_MARK = 0x1000000
ELB_TABLE = 105
RETURN_CHAIN = "ELB-RETURN"


@dataclass(frozen=True)
class Eni:
    """One of the ELB's VPC interfaces."""

    zone: str | None                    # its zone (None in a lab without zones)
    interface: str                      # eth0, eth2, ...
    address: ipaddress.IPv4Address      # the subnet's .5
    prefixlen: int                      # its subnet's prefix length
    mac: str


def eni_mac(address: ipaddress.IPv4Address) -> str:
    """0a (locally administered, unicast, AWS-ENI-like) + e1 + the address."""
    return "0a:e1:" + ":".join(f"{b:02x}" for b in address.packed)


def elb_vpc_mac(spec: ClusterSpec) -> str:
    """The MAC of the ELB's eth0 (its only ENI without zones, the first zone's with)."""
    return eni_mac(spec.network.elb_vpc_address)


def elb_enis(spec: ClusterSpec) -> tuple[Eni, ...]:
    """The ELB's VPC interfaces: one without zones, one per zone with them."""
    net = spec.network
    if not net.zones:
        return (Eni(None, "eth0", net.elb_vpc_address, net.vpc_subnet.prefixlen,
                    elb_vpc_mac(spec)),)
    return tuple(Eni(zone.name, zone_interface(i), zone.elb_address, zone.subnet.prefixlen,
                     eni_mac(zone.elb_address)) for i, zone in enumerate(net.zones))


def node_eni(spec: ClusterSpec, node: NodeSpec | None = None) -> Eni:
    """The ENI a node exchanges NLB traffic with: the one in its own zone."""
    enis = elb_enis(spec)
    if node is None or node.zone is None:
        return enis[0]
    return next(e for e in enis if e.zone == node.zone)


def node_return_path_rules(spec: ClusterSpec, node: NodeSpec | None = None) -> str:
    """iptables-restore --noflush text for a node (mangle, chain ELB-RETURN);
    node: whose zone's ENI to match (None: the lab's first, all without zones)."""
    mark = f"0x{ELB_MARK:x}/0x{ELB_MARK:x}"
    return "\n".join((
        "*mangle",
        f":{RETURN_CHAIN} - [0:0]",
        f"-A PREROUTING -j {RETURN_CHAIN}",
        f"-A {RETURN_CHAIN} -i eth0 -m mac --mac-source {node_eni(spec, node).mac} "
        f'-m conntrack --ctstate NEW -m comment --comment "flow from the ELB" '
        f"-j CONNMARK --set-xmark {mark}",
        f"-A {RETURN_CHAIN} -m conntrack --ctdir REPLY -m connmark --mark {mark} "
        f'-m comment --comment "reply to an ELB flow: route via the ELB" '
        f"-j MARK --set-xmark {mark}",
        "COMMIT", ""))


def node_return_path_routes(spec: ClusterSpec, node: NodeSpec | None = None) -> list[str]:
    """`ip -batch` lines for a node: marked replies use its zone's ELB ENI as gateway."""
    return [f"rule add fwmark 0x{ELB_MARK:x}/0x{ELB_MARK:x} table {ELB_TABLE} "
            f"priority {ELB_TABLE}",
            f"route add default via {node_eni(spec, node).address} dev eth0 "
            f"table {ELB_TABLE}"]
