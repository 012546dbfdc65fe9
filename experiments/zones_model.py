"""What the zones experiment expects, worked out from first principles.

The experiment measures where connections go; this module says where they
should go, written independently of the proxy agent's code: which
endpoints a node may pick for each distribution preference (the rules of
the Kubernetes documentation on topology-aware routing and traffic
distribution), which nodes an ELB zone node sends to with cross-zone load
balancing on or off, and from those the share of connections that should
cross an Availability Zone boundary.  Everything here is pure.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NONE = "none"                      # no distribution preference
SAME_ZONE = "PreferSameZone"
SAME_NODE = "PreferSameNode"
AUTO = "Auto"                      # service.kubernetes.io/topology-mode: Auto


@dataclass(frozen=True)
class Ep:
    """A ready endpoint: its IP, node and zone, and the zones its hints name."""

    ip: str
    node: str
    zone: str
    hinted_zones: tuple[str, ...] = ()


def usable(endpoints: Sequence[Ep], preference: str, node: str, zone: str) -> list[Ep]:
    """The endpoints a proxy on `node` (in `zone`) should send to.

    Same zone / same node: the closest non-empty set, else all.  Auto: the
    endpoints hinted for the zone, when every endpoint carries hints and one
    matches; else all."""
    if preference == SAME_NODE:
        here = [e for e in endpoints if e.node == node]
        if here:
            return here
    if preference in (SAME_NODE, SAME_ZONE):
        close = [e for e in endpoints if e.zone == zone]
        return close or list(endpoints)
    if preference == AUTO and endpoints and all(e.hinted_zones for e in endpoints):
        hinted = [e for e in endpoints if zone in e.hinted_zones]
        return hinted or list(endpoints)
    return list(endpoints)


def crossings(*zones: str | None) -> int:
    hops = [z for z in zones if z]
    return sum(1 for a, b in zip(hops, hops[1:]) if a != b)


def expected_from_pod(endpoints: Sequence[Ep], preference: str, node: str,
                      zone: str) -> tuple[float, set[str]]:
    """(share of connections that cross a zone, endpoints allowed) for a pod
    on `node` calling the ClusterIP."""
    chosen = usable(endpoints, preference, node, zone)
    crossed = sum(1 for e in chosen if e.zone != zone) / len(chosen)
    return crossed, {e.ip for e in chosen}


def expected_via_elb(endpoints: Sequence[Ep], preference: str, elb_zone: str,
                     targets: Mapping[str, str], cross_zone: bool) -> tuple[float, set[str]]:
    """(share crossing at least once, endpoints allowed) for connections to the
    ELB node of `elb_zone`; targets maps each in-service node to its zone.

    The ELB node picks a target node uniformly (in its own zone only when
    cross-zone load balancing is off), the node's proxy then an endpoint
    uniformly from what it may use (externalTrafficPolicy Cluster)."""
    nodes = [n for n, z in targets.items() if cross_zone or z == elb_zone]
    if not nodes:
        raise ValueError(f"no in-service target for the ELB node in {elb_zone}")
    crossed, allowed = 0.0, set()
    for node in nodes:
        zone = targets[node]
        chosen = usable(endpoints, preference, node, zone)
        allowed |= {e.ip for e in chosen}
        crossed += sum(1 for e in chosen if crossings(elb_zone, zone, e.zone)) / len(chosen)
    return crossed / len(nodes), allowed
