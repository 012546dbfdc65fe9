"""EndpointSlice hints: which zone (and node) should consume each endpoint.

Pure computation, the EndpointSlice controller's half of topology aware
routing as Kubernetes 1.34 does it (the proxy agent's half filters by these
hints).  A Service asks for hints in one of two ways:

- `spec.trafficDistribution` (behaves as k8s.io/endpointslice's
  trafficdist.go): PreferClose and PreferSameZone hint every ready endpoint
  for its own zone; PreferSameNode also for its own node.  A ready endpoint
  without a zone gets no zone hint (and with PreferClose/PreferSameZone no
  hint at all); not-ready endpoints are left as they are.
- the annotation `service.kubernetes.io/topology-mode: Auto` (or `auto`; the
  older `service.kubernetes.io/topology-aware-hints` wins when both are set):
  the proportional allotment of topology_cache.py, with its Events.

The annotation wins over the field (reconciler.go): with it, the field is
ignored.  With neither, every hint is removed.  Turning the annotation off
after it gave hints is a TopologyAwareHintsDisabled Event.

`reconcile_hints` takes a Service's desired slices (each flagged unchanged
when the API already holds exactly these endpoints, hints aside, together
with the hints it holds) and returns the endpoints each slice should hold.
"""
from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.validation import TRAFFIC_DISTRIBUTIONS
from controlplane.controllers.topology_cache import (
    MSG_DISABLED,
    ZONE_LABEL,
    HintEvent,
    SliceState,
    add_hints,
    disabled,
    endpoint_ready,
    node_zone,
    remove_hints,
    zone_cpu_ratios,
)

TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
TOPOLOGY_AWARE_HINTS = "service.kubernetes.io/topology-aware-hints"   # deprecated, wins
PREFER_SAME_NODE = "PreferSameNode"

__all__ = ["TOPOLOGY_AWARE_HINTS", "TOPOLOGY_MODE", "TRAFFIC_DISTRIBUTIONS", "ZONE_LABEL",
           "HintEvent", "HintOutcome", "SliceState", "hints_enabled", "node_zones",
           "reconcile_hints", "traffic_distribution", "zone_cpu_ratios"]


@dataclass(frozen=True)
class HintOutcome:
    slices: list[list[dict]]          # per input slice, the endpoints it should hold
    allocated: dict[str, int] | None  # topology-mode Auto: hints per zone; None: none given
    events: list[HintEvent]


def node_zones(nodes: list[dict]) -> dict[str, str]:
    """Node name -> its zone label, for the nodes that have one."""
    return {n["metadata"]["name"]: node_zone(n) for n in nodes if node_zone(n)}


def hints_enabled(annotations: dict | None) -> bool:
    """topology-mode Auto: the deprecated annotation, if present, decides."""
    annotations = annotations or {}
    value = annotations.get(TOPOLOGY_AWARE_HINTS, annotations.get(TOPOLOGY_MODE))
    return value in ("Auto", "auto")


def traffic_distribution(service: dict) -> str | None:
    """The trafficDistribution the controller honours: a known value, no Auto annotation."""
    value = (service.get("spec") or {}).get("trafficDistribution")
    if value not in TRAFFIC_DISTRIBUTIONS:
        return None
    if hints_enabled((service.get("metadata") or {}).get("annotations")):
        return None
    return value


# --- trafficDistribution (trafficdist.go) ----------------------------------------

def _close_hints(endpoint: dict, same_node: bool) -> dict | None:
    hints = {}
    if endpoint.get("zone"):
        hints["forZones"] = [{"name": endpoint["zone"]}]
    if same_node and endpoint.get("nodeName"):
        hints["forNodes"] = [{"name": endpoint["nodeName"]}]
    return hints or None


def _close_hints_stale(endpoints: list[dict], same_node: bool) -> bool:
    for endpoint in endpoints:
        if not endpoint_ready(endpoint):
            continue
        hints = endpoint.get("hints") or {}
        zones, nodes = hints.get("forZones") or [], hints.get("forNodes") or []
        if endpoint.get("zone"):
            if [z.get("name") for z in zones] != [endpoint["zone"]]:
                return True
        elif zones:
            return True
        if same_node and endpoint.get("nodeName"):
            if [n.get("name") for n in nodes] != [endpoint["nodeName"]]:
                return True
        elif nodes:
            return True
    return False


def _apply_close_hints(state: SliceState, same_node: bool) -> None:
    if state.unchanged and not _close_hints_stale(state.endpoints, same_node):
        return
    state.unchanged = False
    endpoints = []
    for endpoint in state.endpoints:
        if endpoint_ready(endpoint):
            endpoint = {k: v for k, v in endpoint.items() if k != "hints"}
            hints = _close_hints(endpoint, same_node)
            if hints:
                endpoint["hints"] = hints
        endpoints.append(endpoint)
    state.endpoints = endpoints


# --- the whole decision (reconciler.go) ----------------------------------------------

def reconcile_hints(service: dict, slices: list[tuple[list[dict], bool]],
                    ratios: dict[str, float] | None, populated: bool,
                    address_type: str = "IPv4") -> HintOutcome:
    """slices: (endpoints, unchanged) per desired slice; ratios: zone_cpu_ratios(nodes);
    populated: topology-mode Auto gave this Service hints in its last sync."""
    states = [SliceState([dict(e) for e in endpoints], unchanged)
              for endpoints, unchanged in slices]
    auto = hints_enabled((service.get("metadata") or {}).get("annotations"))
    distribution = traffic_distribution(service)
    allocated, events = None, []
    if auto:
        allocated, events = add_hints(states, ratios, populated, address_type)
    else:
        if populated:
            events.append(disabled(MSG_DISABLED, address_type))
        if distribution is None:
            remove_hints(states)
    if distribution is not None:
        for state in states:
            _apply_close_hints(state, distribution == PREFER_SAME_NODE)
    return HintOutcome([s.endpoints for s in states], allocated, events)
