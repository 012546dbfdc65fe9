"""Pure: a load balancer's nodes in a lab with Availability Zones.

An AWS load balancer has a node in each Availability Zone it is enabled in,
each with its own address; its DNS name answers one A record per node.  In
the lab:
- the enabled zones are those of the ELB's ENIs (one per zone of the spec)
  in which at least one of the cluster's Nodes is (its
  `topology.kubernetes.io/zone` label), in the spec's order;
- each node gets a public VIP of its own from the lab's pool, and sends to
  targets from the ELB's ENI in its zone;
- the DNS name answers the nodes that have a healthy target to send to, or
  all of them when none has (`base.elb_api.dns_answer`), from the health
  the ELB agent reports.

A lab without zones has no ENI list: every load balancer is the one node it
always was (zone None), and its name answers its one VIP.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from base.elb_api import LoadBalancer, ZoneNode, dns_answer

ZONE_LABEL = "topology.kubernetes.io/zone"
NodeKey = tuple[str, "str | None"]          # (load balancer uid, zone or None)


def node_zone(node: dict) -> str | None:
    """A Node's zone label (None when it has none: a lab without zones)."""
    return ((node.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL) or None


def enabled_zones(nodes: Iterable[dict], zone_enis: Mapping[str, str]) -> tuple[str, ...]:
    """The zones (of zone_enis, in its order) where at least one Node is.

    Empty without zones, and also while no Node carries a zone label yet:
    the load balancers then have the single node of a lab without zones."""
    present = {node_zone(n) for n in nodes if not n["metadata"].get("deletionTimestamp")}
    return tuple(zone for zone in zone_enis if zone in present)


def allocate_node_vips(wanted: Sequence[tuple[str, Sequence[str | None]]],
                       current: Mapping[NodeKey, str],
                       pool: Sequence[str]) -> dict[NodeKey, str]:
    """(uid, zone) -> VIP for every load-balancer node that can have one.

    wanted: (uid, its zones) in priority order; zone None for a lab without
    zones.  Nodes keep the address they have.  A load balancer that has no
    address yet gets one for every zone or none at all (it stays pending
    rather than half-made); one that has some gets what is free for its
    new zones.  Freed addresses are reused, lowest first."""
    keys = {(uid, zone) for uid, zones in wanted for zone in zones}
    kept = {key: vip for key, vip in current.items() if key in keys and vip in pool}
    free = [vip for vip in pool if vip not in kept.values()]
    for uid, zones in wanted:
        missing = [zone for zone in zones if (uid, zone) not in kept]
        if len(missing) == len(zones) and len(missing) > len(free):
            continue
        for zone in missing:
            if free:
                kept[(uid, zone)] = free.pop(0)
    return kept


def place(lb: LoadBalancer, zones: Sequence[str | None], vips: Mapping[NodeKey, str],
          zone_enis: Mapping[str, str]) -> LoadBalancer | None:
    """The load balancer with its nodes' addresses (None if it got none).

    Zones whose node got no address are left out (the controller warns)."""
    got = [(zone, vips[(lb.uid, zone)]) for zone in zones if (lb.uid, zone) in vips]
    if not got:
        return None
    if got[0][0] is None:
        return dataclasses.replace(lb, vip=got[0][1], zone_nodes=())
    return dataclasses.replace(lb, vip=got[0][1], zone_nodes=tuple(
        ZoneNode(zone, vip, zone_enis[zone]) for zone, vip in got))


def published_addresses(lb: LoadBalancer, reported: dict | None) -> tuple[str, ...]:
    """The A records of lb's DNS name, from the ELB agent's status entry for it.

    Until the agent reports on this load balancer (or when the report is of
    another one with the same key), every node is answered: AWS publishes a
    new load balancer's nodes before their targets are healthy."""
    if not reported or reported.get("uid") != lb.uid:
        return lb.vips
    healthy = {node.get("vip") for node in reported.get("zoneNodes") or []
               if node.get("healthy")}
    return dns_answer(lb, healthy)
