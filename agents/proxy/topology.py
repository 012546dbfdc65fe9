"""Topology hints: which endpoints this node keeps for cluster-wide traffic.

The EndpointSlice controller writes hints on endpoints (``hints.forNodes``
for trafficDistribution PreferSameNode, ``hints.forZones`` for
PreferClose / PreferSameZone / topology-mode Auto); the proxy of each node
decides whether to honour them.  ``choose_topology`` is that decision,
made as kube-proxy's pkg/proxy/topology.go makes it (Kubernetes 1.34, the
PreferSameTrafficDistribution feature on):

1. node hints, when every *ready* endpoint carries node hints and at least
   one names this node;
2. else zone hints, when every ready endpoint carries zone hints and at
   least one names this node's zone (its ``topology.kubernetes.io/zone``
   label);
3. else no filtering: every ready endpoint, cluster-wide.

Endpoints that are not ready are not judged (they are not used anyway),
there is no partial use (one unhinted ready endpoint turns hints off for
the whole service port), and the choice applies to the cluster-wide set
only: Local traffic policy never looks at hints.

The choice is kept as data (``Topology``: the mode, and why the other
modes were not taken) so the renderers' callers, the tracers' tests and
``svclab trace`` can all say which rule applied.  Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

ZONE_LABEL = "topology.kubernetes.io/zone"

# Which rule applied.
BY_NODE = "node"          # endpoints hinted for this node
BY_ZONE = "zone"          # endpoints hinted for this node's zone
UNFILTERED = "none"       # every ready endpoint, cluster-wide

# Why hints of one kind were not used (Topology.zone_reason / node_reason).
NOT_JUDGED = "not-judged"             # the port never uses the cluster-wide set
NO_READY = "no-ready-endpoints"       # nothing ready: nothing to judge
NO_HINTS = "no-hints"                 # no ready endpoint has this kind of hint
MISSING_HINTS = "missing-hints"       # some ready endpoint lacks it
NO_ZONE_LABEL = "no-zone-label"       # zone hints everywhere, but the node has no zone
NO_MATCH = "no-match"                 # hints everywhere, none for this node / zone


class Hinted(Protocol):
    """What the choice reads of an endpoint (agents.proxy.endpoints.Endpoint)."""

    ip: str
    ready: bool
    zone_hints: tuple[str, ...]
    node_hints: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    """The topology rule one service port follows on one node.

    mode: BY_NODE, BY_ZONE or UNFILTERED.  node, zone: this node's name and
    zone label (None: no label).  kept / ready: ready endpoints the rule
    keeps, of all ready ones.  (node, zone, kept and ready are left unset
    when no hint was judged: no ready endpoint, none with any hint, or a
    port that uses only node-local endpoints.)  zone_reason / node_reason:
    why zone / node hints were not used (None when they were, or, for node
    hints, when no endpoint had any); unhinted_zone / unhinted_node: the
    first ready endpoint (IP) lacking that kind of hint, for MISSING_HINTS.
    fallback: serving terminating endpoints used because none was ready
    (set by the categorisation, kube-proxy's fallback after the topology
    choice).
    """

    mode: str
    node: str = ""
    zone: str | None = None
    kept: int = 0
    ready: int = 0
    zone_reason: str | None = None
    node_reason: str | None = None
    unhinted_zone: str | None = None
    unhinted_node: str | None = None
    fallback: int = 0

    def allows(self, endpoint: Hinted) -> bool:
        """May the cluster-wide set of this node use this ready endpoint?"""
        if self.mode == BY_NODE:
            return self.node in endpoint.node_hints
        if self.mode == BY_ZONE:
            return self.zone in endpoint.zone_hints
        return True

    def describe(self) -> str:
        """One line: 'zone hints: 2 of 5 endpoints for us-east-1a',
        'node hints: 1 of 4 endpoints for ip-172-31-0-11', 'no topology
        filtering: endpoint 192.168.1.5 has no zone hints', ..."""
        if self.mode == BY_NODE:
            return f"node hints: {self.kept} of {_count(self.ready)} for {self.node}"
        if self.mode == BY_ZONE:
            text = f"zone hints: {self.kept} of {_count(self.ready)} for {self.zone}"
            if self.node_reason is not None:
                text += f" (node hints not used: {self._node_why()})"
            return text
        if self.zone_reason == NOT_JUDGED:
            return "topology hints not used: only node-local endpoints (traffic policy Local)"
        why = [self._node_why()] if self.node_reason is not None else []
        why.append(self._zone_why())
        text = "no topology filtering: " + "; ".join(why)
        if self.fallback:
            text += (f"; {_count(self.fallback, 'serving terminating endpoint')}"
                     " used as none is ready")
        return text

    def _zone_why(self) -> str:
        return {
            NO_READY: "no ready endpoints",
            NO_HINTS: "no endpoint has zone hints",
            MISSING_HINTS: f"endpoint {self.unhinted_zone} has no zone hints",
            NO_ZONE_LABEL: f"node {self.node} has no {ZONE_LABEL} label",
            NO_MATCH: f"no hints for zone {self.zone}",
        }.get(self.zone_reason or "", str(self.zone_reason))

    def _node_why(self) -> str:
        return {
            MISSING_HINTS: f"endpoint {self.unhinted_node} has no node hints",
            NO_MATCH: f"no hints for node {self.node}",
        }.get(self.node_reason or "", str(self.node_reason))


def _count(n: int, what: str = "endpoint") -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


# The choices of ports without hints are shared, not built per port (so
# they name no node, zone or counts): a 10k-service sync judges 30k ports,
# and building one costs ~2 us.
NOT_USED = Topology(UNFILTERED, zone_reason=NOT_JUDGED)
NOTHING_READY = Topology(UNFILTERED, zone_reason=NO_READY)
UNHINTED = Topology(UNFILTERED, zone_reason=NO_HINTS)


def choose_topology(endpoints: Sequence[Hinted], node: str, zone: str | None) -> Topology:
    """Which endpoints this node's cluster-wide set may use, and why
    (kube-proxy's topologyModeFromHints; see the module docstring)."""
    ready = 0
    node_hinted = zone_hinted = 0
    for_node = for_zone = 0
    unhinted_node = unhinted_zone = None
    for ep in endpoints:
        if not ep.ready:
            continue
        ready += 1
        if ep.node_hints:
            node_hinted += 1
            for_node += node in ep.node_hints
        elif unhinted_node is None:
            unhinted_node = ep.ip
        if ep.zone_hints:
            zone_hinted += 1
            for_zone += zone is not None and zone in ep.zone_hints
        elif unhinted_zone is None:
            unhinted_zone = ep.ip
    if not ready:
        return NOTHING_READY
    if not node_hinted and not zone_hinted:
        return UNHINTED
    node_reason = None
    if node_hinted == ready:
        if for_node:
            return Topology(BY_NODE, node, zone, for_node, ready)
        node_reason = NO_MATCH
    elif node_hinted:
        node_reason = MISSING_HINTS
    if zone_hinted == ready:
        if for_zone:
            return Topology(BY_ZONE, node, zone, for_zone, ready, node_reason=node_reason,
                            unhinted_node=unhinted_node)
        zone_reason = NO_ZONE_LABEL if zone is None else NO_MATCH
    else:
        zone_reason = MISSING_HINTS if zone_hinted else NO_HINTS
    return Topology(UNFILTERED, node, zone, ready, ready, zone_reason=zone_reason,
                    node_reason=node_reason, unhinted_zone=unhinted_zone,
                    unhinted_node=unhinted_node)
