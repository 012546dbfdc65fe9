"""Pure: an ALB's nodes and their addresses.

Like a Classic or Network load balancer (controlplane/cloud/zones.py), an ALB
has a node in every zone where the cluster has Nodes (one node without
zones), each with its own address, sending from the ELB's ENI in its zone.
An internet-facing ALB's addresses come from the ELB's public pool, shared
with the Classic and NLB load balancers: the ALB controller takes the pool
from its top end and skips what they use, the service controller takes it
from the bottom. An internal ALB's addresses are private: the top addresses
of each zone's VPC subnet (``internal_pools``), which nothing else in the
lab uses. A node keeps its address for the ALB's life (its name: a scheme
change is another ALB, as on AWS); a new ALB gets an address in every zone or
none and stays pending.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence

from base.alb_api import INTERNAL, Alb
from base.elb_api import ZoneNode
from controlplane.cloud.zones import allocate_node_vips

INTERNAL_POOL_SIZE = 48
Key = tuple[str, "str | None"]          # (ALB name, zone or None)


def internal_pools(subnets: Mapping[str | None, str],
                   size: int = INTERNAL_POOL_SIZE) -> dict[str | None, tuple[str, ...]]:
    """zone -> the top `size` host addresses of its subnet (highest first)."""
    pools = {}
    for zone, cidr in subnets.items():
        net = ipaddress.ip_network(cidr, strict=False)
        top = int(net.broadcast_address) - 1
        pools[zone] = tuple(str(ipaddress.ip_address(top - i))
                            for i in range(min(size, max(net.num_addresses - 8, 0))))
    return pools


def allocate(albs: Sequence[Alb], zones: Sequence[str | None], current: Mapping[Key, str],
             public_pool: Sequence[str], taken: set[str],
             private: Mapping[str | None, Sequence[str]]) -> dict[Key, str]:
    """(ALB name, zone) -> address for every ALB node that can have one.

    public_pool: the ELB's public pool in its own order (used from the top);
    taken: addresses the Classic/NLB load balancers have."""
    public = [vip for vip in reversed(public_pool) if vip not in taken]
    facing = [(a.name, tuple(zones)) for a in albs if a.scheme != INTERNAL]
    placed = allocate_node_vips(facing, {k: v for k, v in current.items() if v in public},
                                public)
    for zone in zones:
        pool = list(private.get(zone, ()))
        wanted = [(a.name, (zone,)) for a in albs if a.scheme == INTERNAL]
        placed.update(allocate_node_vips(wanted, {k: v for k, v in current.items()
                                                  if k[1] == zone and v in pool}, pool))
    return placed


def place(alb: Alb, zones: Sequence[str | None], vips: Mapping[Key, str],
          zone_enis: Mapping[str, str]) -> Alb | None:
    """The ALB with its nodes (None if it got no address at all)."""
    got = [(zone, vips[(alb.name, zone)]) for zone in zones if (alb.name, zone) in vips]
    if not got:
        return None
    if got[0][0] is None:
        return dataclasses.replace(alb, vip=got[0][1], zone_nodes=())
    return dataclasses.replace(alb, vip=got[0][1], zone_nodes=tuple(
        ZoneNode(zone, vip, zone_enis[zone]) for zone, vip in got))
