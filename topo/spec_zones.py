"""Availability Zones in the cluster spec: the zones, where nodes go, `--zones N`.

A lab with zones has one subnet per zone inside the VPC range (AWS's
default VPC: 172.31.0.0/16, one /20 per zone), joined by the VPC's implicit
router at each subnet's .1.  This module parses `network.zones`, places a
node in its zone (the zone it names, else the zone its address is in, else
round-robin in spec order) and gives it a default address there, and turns a
spec without zones into one with zones (`svclab up --zones N`).  Names the
topology gives per-zone things (bridges az1.., interfaces) live here too, so
the spec can keep them free.  topo/spec.py holds the spec's structure and
re-exports what users of the spec need.
"""
from __future__ import annotations

import copy
import ipaddress
import string
from dataclasses import dataclass
from typing import Any

from base.errors import SpecError
from topo import fields

MAX_ZONES = 6                    # us-east-1, the largest region, has six
DEFAULT_REGION = "us-east-1"
ZONED_VPC = ipaddress.ip_network("172.31.0.0/16")   # AWS's default VPC
ZONE_PREFIX = 20                 # AWS's default subnets: one /20 per zone
ZONE_BRIDGE_PREFIX = "az"

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


@dataclass(frozen=True)
class ZoneSpec:
    """An Availability Zone: its name and its subnet (one per zone, as in
    AWS's default VPC)."""

    name: str              # us-east-1a
    subnet: Net            # 172.31.0.0/20

    @property
    def router(self) -> Addr:
        """AWS's implicit router in this subnet: base + 1 (an igw interface)."""
        return self.subnet.network_address + 1

    @property
    def elb_address(self) -> Addr:
        """The load balancer's ENI in this zone: base + 5."""
        return self.subnet.network_address + 5

    @property
    def reserved(self) -> set:
        """What no node may use: AWS's first four and last, and the ELB's ENI."""
        return fields.aws_reserved(self.subnet)


def zone_bridge(index: int) -> str:
    """The bridge (host) of zone `index`: az1, az2, ... (without zones: vpc)."""
    return f"{ZONE_BRIDGE_PREFIX}{index + 1}"


def zone_interface(index: int) -> str:
    """A host's interface in zone `index` when it has one in every zone (igw,
    elb): eth0 for the first zone, eth1 stays the internet side, eth{i+1} after."""
    return "eth0" if index == 0 else f"eth{index + 1}"


def parse_zones(raw: Any, vpc: Net) -> tuple[ZoneSpec, ...]:
    """`network.zones`: names unique, subnets inside the VPC and apart."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ZONES:
        raise SpecError("network.zones", f"must be a list of 1 to {MAX_ZONES} zones, each "
                        "with a name and a subnet, e.g. "
                        "[{name: us-east-1a, subnet: 172.31.0.0/20}]")
    zones: list[ZoneSpec] = []
    for i, item in enumerate(raw):
        path = f"network.zones[{i}]"
        entry = fields.mapping(item, path, ("name", "subnet"))
        name = fields.name(entry.get("name"), f"{path}.name", subdomain=False)
        if any(z.name == name for z in zones):
            raise SpecError(f"{path}.name", f"duplicate zone name {name!r}")
        subnet = fields.cidr(entry["subnet"], f"{path}.subnet") if "subnet" in entry \
            else _default_subnet(vpc, i, path)
        if not subnet.subnet_of(vpc):
            raise SpecError(f"{path}.subnet", f"{subnet} is outside network.vpcSubnet "
                            f"{vpc}; allowed: a subnet inside the VPC's range")
        if subnet.prefixlen > 28:
            raise SpecError(f"{path}.subnet", "must be /28 or larger (AWS's limit)")
        for j, other in enumerate(zones):
            if subnet.overlaps(other.subnet):
                raise SpecError(f"{path}.subnet", f"{subnet} overlaps "
                                f"network.zones[{j}].subnet {other.subnet} ({other.name})")
        zones.append(ZoneSpec(name, subnet))
    return tuple(zones)


def _default_subnet(vpc: Net, index: int, path: str) -> Net:
    """The index-th /20 of the VPC, as AWS's default VPC lays its subnets out."""
    if vpc.prefixlen > ZONE_PREFIX or index >= 2 ** (ZONE_PREFIX - vpc.prefixlen):
        raise SpecError(f"{path}.subnet", f"required: network.vpcSubnet {vpc} has no "
                        f"/{ZONE_PREFIX} number {index} to default to")
    return ipaddress.ip_network((int(vpc.network_address) + (index << (32 - ZONE_PREFIX)),
                                 ZONE_PREFIX))


def place_node(node: dict, index: int, zones: tuple[ZoneSpec, ...],
               path: str) -> tuple[str, Addr]:
    """A node's zone and address: the zone it names, else the zone its address
    is in, else round-robin over the zones in spec order; the address defaults
    to its zone's base + 10 + node index (so it is unique in the VPC)."""
    names = [z.name for z in zones]
    if "zone" in node:
        if node["zone"] not in names:
            raise SpecError(f"{path}.zone", f"unknown zone {node['zone']!r}; "
                            f"allowed: {', '.join(names)}")
        zone = zones[names.index(node["zone"])]
    elif "address" in node:
        wanted = fields.ipv4(node["address"], f"{path}.address", "in a zone's subnet")
        zone = next((z for z in zones if wanted in z.subnet), None)
        if zone is None:
            raise SpecError(f"{path}.address", f"{wanted} is in no zone's subnet; allowed: "
                            "inside " + ", ".join(f"{z.subnet} ({z.name})" for z in zones))
    else:
        zone = zones[index % len(zones)]
    address = fields.address(node.get("address", zone.subnet.network_address + 10 + index),
                             f"{path}.address", zone.subnet, reserved=zone.reserved,
                             where=f"zone {zone.name}'s subnet {zone.subnet}")
    return zone.name, address


def default_zones(count: int) -> list[dict]:
    """`--zones N`: us-east-1a.. on AWS's default-VPC subnets 172.31.(16*i).0/20."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ZONES:
        raise SpecError("--zones", f"invalid value {count!r}; allowed: 1 to {MAX_ZONES}")
    subnets = list(ZONED_VPC.subnets(new_prefix=ZONE_PREFIX))[:count]
    return [{"name": DEFAULT_REGION + letter, "subnet": str(subnet)}
            for letter, subnet in zip(string.ascii_lowercase, subnets)]


def spread_over_zones(data: Any, count: int, single_vpc: str) -> Any:
    """A spec without zones, spread over `count` zones (pure, on the spec data).

    The VPC becomes AWS's default 172.31.0.0/16 (a spec's single subnet inside
    it was the first zone's); nodes go round-robin over the zones; a node named
    after its default address (ip-172-31-0-11) is renamed after its new one;
    an explicit address stays, and puts its node in the zone that holds it, or
    is refused.  single_vpc: the VPC subnet of a spec without zones that gives
    none.  Anything else wrong with the data is left for parse_spec to report.
    """
    zones = default_zones(count)
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    network = data.get("network") or {}
    if not isinstance(network, dict):
        return data
    if "zones" in network:
        raise SpecError("--zones", "the spec lists network.zones already; allowed: "
                        "--zones only with a spec without zones")
    old_vpc = fields.cidr(network.get("vpcSubnet", single_vpc), "network.vpcSubnet")
    subnets = [ipaddress.ip_network(z["subnet"]) for z in zones]
    if all(s.subnet_of(old_vpc) for s in subnets):
        vpc = old_vpc
    elif old_vpc.subnet_of(ZONED_VPC):
        vpc = ZONED_VPC
    else:
        raise SpecError("network.vpcSubnet", f"{old_vpc} cannot hold the subnets of "
                        f"--zones {count} ({', '.join(map(str, subnets))}); allowed: a range "
                        f"inside or around {ZONED_VPC}, or list network.zones in the spec")
    nodes = data.get("nodes")
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        if not isinstance(node, dict):
            continue
        if "address" in node:
            wanted = fields.ipv4(node["address"], f"nodes[{i}].address")
            if not any(wanted in s for s in subnets):
                raise SpecError(f"nodes[{i}].address", f"{wanted} is in none of the "
                                f"subnets of --zones {count} ({', '.join(map(str, subnets))});"
                                " allowed: an address in one of them, or none (the node "
                                "then gets one in its zone)")
        elif node.get("name") == fields.ec2_name(old_vpc.network_address + 10 + i):
            del node["name"]
    data["network"] = {**network, "vpcSubnet": str(vpc), "region": DEFAULT_REGION,
                       "zones": zones}
    return data
