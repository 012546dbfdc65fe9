"""Which Availability Zones each spread connection went through, and what that costs.

In a lab with zones a connection can cross zone boundaries twice: from where
it entered the cluster (the source pod's or node's zone, the node whose
address it was sent to, or the zone of the ELB node whose VIP it reached) to
the node that forwarded it, and from there to the endpoint's node.  The
forwarding node is known when the pod saw it as the source (kube-proxy's
masquerade under the Cluster traffic policy); otherwise the path is
entry -> endpoint.  AWS bills inter-AZ traffic in both directions
(`INTER_AZ_USD_PER_GB` each way), so a transfer of B bytes over one crossing
costs 2 x B x price.

`cross_zone_summary` is pure; `load_zone_map` reads the lab's spec copy and
the ELB's config (which VIP belongs to which zone's ELB node).
"""
from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from base.elb_api import ElbConfigError, read_config
from base.errors import SpecError
from probes.spread.worker import OK
from topo.spec import load_spec
from topo.state import LabPaths

INTER_AZ_USD_PER_GB = 0.01          # AWS's data transfer between AZs, each direction
GB = 10 ** 9


@dataclass(frozen=True)
class ZoneMap:
    """Zones of the lab: of each node, and of every address that means a zone."""

    node_zone: Mapping[str, str] = field(default_factory=dict)      # node name -> zone
    address_zone: Mapping[str, str] = field(default_factory=dict)   # node/public/VIP -> zone

    def __bool__(self) -> bool:
        return bool(self.node_zone)


@dataclass(frozen=True)
class ZonePath:
    entry: str | None           # where the connection entered the cluster
    via: str | None             # the forwarding node's zone, when the pod saw that node
    endpoint: str | None        # the endpoint's node's zone

    @property
    def crossings(self) -> int:
        hops = [z for z in (self.entry, self.via, self.endpoint) if z]
        return sum(1 for a, b in zip(hops, hops[1:]) if a != b)


@dataclass(frozen=True)
class CrossZone:
    """How many answered connections crossed a zone boundary, and where."""

    connections: int
    crossed: int                 # connections with at least one crossing
    crossings: int               # boundary crossings in all
    by_pair: dict[str, int]      # "entry -> endpoint" zone pair -> connections
    by_endpoint_zone: dict[str, int]

    @property
    def share(self) -> float:
        return self.crossed / self.connections if self.connections else 0.0

    def cost_usd(self, bytes_per_connection: int) -> float:
        """What AWS would bill for the transfers (both directions of each crossing)."""
        return 2 * self.crossings * bytes_per_connection / GB * INTER_AZ_USD_PER_GB

    def to_json(self) -> dict:
        return {"connections": self.connections, "crossed": self.crossed,
                "share": round(self.share, 4), "crossings": self.crossings,
                "byPair": dict(self.by_pair), "byEndpointZone": dict(self.by_endpoint_zone)}


def zone_path(target_ip: str, source_seen: str | None, endpoint_node: str | None,
              source_zone: str | None, zones: ZoneMap) -> ZonePath:
    """The zones one connection went through (pure)."""
    entry = zones.address_zone.get(target_ip, source_zone)
    via = zones.address_zone.get(source_seen) if source_seen else None
    endpoint = zones.node_zone.get(endpoint_node) if endpoint_node else None
    return ZonePath(entry, via, endpoint)


def cross_zone_summary(records: Sequence, endpoint_nodes: Mapping[str, str | None],
                       source_zone: str | None, zones: ZoneMap) -> CrossZone | None:
    """Per-connection zone paths of the answered records (None: the lab has no zones).

    endpoint_nodes maps an answering pod IP to its node."""
    if not zones:
        return None
    crossed = crossings = 0
    pairs: collections.Counter = collections.Counter()
    endpoint_zones: collections.Counter = collections.Counter()
    answered = [r for r in records if r.outcome == OK]
    for record in answered:
        path = zone_path(record.target.rpartition(":")[0], record.source_seen,
                         endpoint_nodes.get(record.pod_ip), source_zone, zones)
        crossings += path.crossings
        crossed += path.crossings > 0
        pairs[f"{path.entry or '?'} -> {path.endpoint or '?'}"] += 1
        endpoint_zones[path.endpoint or "?"] += 1
    return CrossZone(len(answered), crossed, crossings, dict(sorted(pairs.items())),
                     dict(sorted(endpoint_zones.items())))


def load_zone_map(paths: LabPaths) -> ZoneMap:
    """The running lab's zones: nodes from its spec copy, VIPs from the ELB config."""
    try:
        spec = load_spec(paths.spec)
    except SpecError:           # a lab without a readable spec copy: no zones to tell
        return ZoneMap()
    if not spec.network.zones:
        return ZoneMap()
    node_zone = {n.name: n.zone for n in spec.nodes if n.zone}
    address_zone = {}
    for node in spec.nodes:
        if node.zone:
            address_zone[str(node.address)] = node.zone
            address_zone[str(node.public_ip)] = node.zone
    address_zone.update(_vip_zones(paths.root / "elb" / "config.json"))
    return ZoneMap(node_zone, address_zone)


def _vip_zones(config_path: Path) -> dict[str, str]:
    try:
        config = read_config(config_path)
    except (ElbConfigError, OSError):
        return {}
    found = {}
    for lb in config.load_balancers:
        for node in lb.zone_nodes:
            if node.zone:
                found[node.vip] = node.zone
    return found
