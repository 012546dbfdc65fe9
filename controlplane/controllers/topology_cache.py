"""topology-mode Auto: endpoints allotted to zones in proportion to their CPU.

Pure computation, the EndpointSlice controller's topology cache as Kubernetes
1.34 has it (behaves as k8s.io/endpointslice's topologycache.go, utils.go and
sliceinfo.go):

- Node information (`zone_cpu_ratios`): every ready node without a
  control-plane (or master) role label counts with its allocatable CPU in the
  zone of its `topology.kubernetes.io/zone` label.  One such node without a
  zone label or without allocatable CPU makes the information insufficient
  for the whole cluster, and so does fewer than two zones.
- Allocation (`allocations`): a zone should get `ratio x ready endpoints`
  (desired); at least that divided by 1.2 rounded up (minimum, so no endpoint
  takes more than 20 % over its fair share: the overload threshold), at most
  its minimum plus what the other zones' minimums leave.  No allocation when
  there are fewer ready endpoints than zones or the minimums add up to more
  than the endpoints.
- Hints (`add_hints`): slices unchanged since the last sync keep their hints
  while those stay within the allocation; every ready endpoint of the other
  slices is first hinted for its own zone, then zones above their desired
  share give endpoints to zones below it, one at a time, from the zone with
  most to give to the zone with most to receive.  A ready endpoint without a
  zone, or no possible allocation, removes every hint of the Service.
- Events: TopologyAwareHintsEnabled when hints appear, TopologyAwareHintsDisabled
  (with the reason) when they cannot be given.

Where upstream iterates Go maps (random order: which zone gives first, which
receives an endpoint, ties), zones are taken in name order, so the result is
deterministic.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

ZONE_LABEL = "topology.kubernetes.io/zone"
EXCLUDED_NODE_LABELS = ("node-role.kubernetes.io/control-plane",
                        "node-role.kubernetes.io/master")
OVERLOAD_THRESHOLD = 0.2
# 1 / (1 + threshold) as Go evaluates the constant expression: exactly, then rounded.
_MINIMUM_FACTOR = float(1 / (1 + Fraction(OVERLOAD_THRESHOLD)))

NORMAL, WARNING = "Normal", "Warning"
ENABLED = "TopologyAwareHintsEnabled"
DISABLED = "TopologyAwareHintsDisabled"
# The texts the EndpointSlice controller's Events carry (kubectl describe shows them).
MSG_NO_ZONE = "One or more endpoints do not have a zone specified"
MSG_NO_ALLOCATED = "No hints allocated for zones"
MSG_ENABLED = "Topology Aware Hints has been enabled"
MSG_DISABLED = "Topology Aware Hints has been disabled"
MSG_INSUFFICIENT_NODE_INFO = ("Insufficient Node information: allocatable CPU or zone not "
                              "specified on one or more nodes")
MSG_ONE_ZONE = "Nodes only ready in one zone"
MSG_TOO_FEW_ENDPOINTS = "Insufficient number of endpoints"
MSG_OVER_THRESHOLD = ("Unable to allocate minimum required endpoints to each zone without "
                      "exceeding overload threshold")


@dataclass(frozen=True)
class HintEvent:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Allocation:
    minimum: int
    maximum: int
    desired: float


@dataclass
class SliceState:
    """One EndpointSlice's endpoints during a sync; `unchanged`: as the API holds it."""
    endpoints: list[dict]
    unchanged: bool


def with_address_type(message: str, address_type: str) -> str:
    return f"{message}, addressType: {address_type}"


def disabled(message: str, address_type: str) -> HintEvent:
    return HintEvent(WARNING, DISABLED, with_address_type(message, address_type))


# --- nodes ---------------------------------------------------------------------

_QUANTITY = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:[eE]([+-]?[0-9]+))?"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?")
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
            "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def cpu_millis(quantity) -> int:
    """A resource quantity in thousandths, rounded up (Quantity.MilliValue); 0 if absent
    or unreadable."""
    match = _QUANTITY.fullmatch(str(quantity).strip()) if quantity is not None else None
    if match is None:
        return 0
    number, exponent, suffix = match.group(1), match.group(2), match.group(3) or ""
    value = Fraction(number) * Fraction(10) ** int(exponent or 0)
    if suffix in _BINARY:
        value *= 2 ** _BINARY[suffix]
    else:
        value *= Fraction(10) ** _DECIMAL[suffix]
    return math.ceil(value * 1000)


def node_ready(node: dict) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def node_zone(node: dict) -> str:
    return ((node.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL) or ""


def _excluded(node: dict) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return any(label in labels for label in EXCLUDED_NODE_LABELS)


def zone_cpu_ratios(nodes: list[dict]) -> dict[str, float] | None:
    """Each zone's share of the cluster's allocatable CPU; None: insufficient node info."""
    by_zone: dict[str, int] = {}
    for node in nodes:
        if _excluded(node) or not node_ready(node):
            continue
        millis = cpu_millis(((node.get("status") or {}).get("allocatable") or {}).get("cpu"))
        zone = node_zone(node)
        if not zone or millis == 0:
            return None
        by_zone[zone] = by_zone.get(zone, 0) + millis
    total = sum(by_zone.values())
    if total == 0 or len(by_zone) < 2:
        return None
    return {zone: float(cpu) / float(total) for zone, cpu in by_zone.items()}


# --- allocation ----------------------------------------------------------------

def allocations(ratios: dict[str, float] | None, endpoints: int
                ) -> tuple[dict[str, Allocation] | None, str]:
    """Per zone (minimum, maximum, desired) for `endpoints` ready endpoints, or None and
    why not."""
    if ratios is None:
        return None, MSG_INSUFFICIENT_NODE_INFO
    if len(ratios) < 2:
        return None, MSG_ONE_ZONE
    counts = f"({endpoints} endpoints, {len(ratios)} zones)"
    if len(ratios) > endpoints:
        return None, f"{MSG_TOO_FEW_ENDPOINTS} {counts}"
    minimums: dict[str, tuple[int, float]] = {}
    for zone in sorted(ratios):
        desired = ratios[zone] * float(endpoints)
        minimum = math.ceil(desired * _MINIMUM_FACTOR)
        minimums[zone] = (minimum, max(desired, float(minimum)))
    min_total = sum(m for m, _ in minimums.values())
    if min_total > endpoints:
        return None, f"{MSG_OVER_THRESHOLD} {counts}"
    return {zone: Allocation(minimum, minimum + endpoints - min_total, desired)
            for zone, (minimum, desired) in minimums.items()}, ""


def service_overloaded(allocated: dict[str, int], ratios: dict[str, float] | None) -> bool:
    """Would a zone get fewer endpoints than its minimum share under these ratios?"""
    if not allocated:
        return False
    if not ratios:
        return True
    total = float(sum(allocated.values()))
    for zone, ratio in ratios.items():
        if zone not in allocated:
            return True
        if allocated[zone] < int(math.ceil(total * ratio * _MINIMUM_FACTOR)):
            return True
    return False


def _most(amounts: dict[str, float]) -> tuple[str, float]:
    zone, most = "", 0.0
    for name in sorted(amounts):
        if amounts[name] > most:
            zone, most = name, amounts[name]
    return zone, most


def giving_and_receiving(allocs: dict[str, Allocation], allocated: dict[str, int]
                         ) -> tuple[dict[str, int], dict[str, int]]:
    """How many endpoints each zone should hand over, and each should get."""
    to_give: dict[str, float] = {}
    to_get: dict[str, float] = {}
    for zone, alloc in allocs.items():
        have = float(allocated.get(zone, 0))
        if have > alloc.desired:
            to_give[zone] = have - alloc.desired
        elif have < alloc.desired:
            to_get[zone] = alloc.desired - have
    giving: dict[str, int] = {}
    receiving: dict[str, int] = {}
    while True:
        giver, give = _most(to_give)
        taker, take = _most(to_get)
        if not giver or not taker or (give < 1.0 and take < 1.0) or give < 0.5 or take < 0.5:
            break
        giving[giver] = giving.get(giver, 0) + 1
        to_give[giver] -= 1
        receiving[taker] = receiving.get(taker, 0) + 1
        to_get[taker] -= 1
    return giving, receiving


def endpoint_ready(endpoint: dict) -> bool:
    return (endpoint.get("conditions") or {}).get("ready") is True


def _zone_hint(zone: str) -> dict:
    return {"forZones": [{"name": zone}]}


def redistribute(slices: list[SliceState], giving: dict[str, int], receiving: dict[str, int]
                 ) -> dict[str, int]:
    """Re-hint endpoints of giving zones for receiving zones; the change per zone."""
    changes: dict[str, int] = {}
    for state in slices:
        for i, endpoint in enumerate(state.endpoints):
            if not endpoint_ready(endpoint):
                continue
            if not giving or not receiving:
                return changes
            zone = endpoint.get("zone") or ""
            if not zone or giving.get(zone, 0) <= 0:
                continue
            taker = min(receiving)
            state.endpoints[i] = {**endpoint, "hints": _zone_hint(taker)}
            for counter, name in ((giving, zone), (receiving, taker)):
                counter[name] -= 1
                if counter[name] == 0:
                    del counter[name]
            changes[taker] = changes.get(taker, 0) + 1
            changes[zone] = changes.get(zone, 0) - 1
    return changes


def zone_hint_counts(endpoints: list[dict], allocated: dict[str, int],
                     allocs: dict[str, Allocation]) -> dict[str, int] | None:
    """Hints per zone of an unchanged slice, or None when they no longer fit (an endpoint
    without a zone hint, a zone without allocation, or a zone over its maximum)."""
    counts: dict[str, int] = {}
    for endpoint in endpoints:
        if not endpoint_ready(endpoint):
            continue
        zones = (endpoint.get("hints") or {}).get("forZones") or []
        if not zones:
            return None
        for hint in zones:
            if hint.get("name") not in allocs:
                return None
            counts[hint["name"]] = counts.get(hint["name"], 0) + 1
    for zone, count in counts.items():
        if count + allocated.get(zone, 0) > allocs[zone].maximum:
            return None
    return counts


def remove_hints(slices: list[SliceState]) -> None:
    """No hints anywhere; an unchanged slice that had some is changed."""
    for state in slices:
        if state.unchanged and not any("hints" in e for e in state.endpoints):
            continue
        state.endpoints = [{k: v for k, v in e.items() if k != "hints"}
                           for e in state.endpoints]
        state.unchanged = False


def add_hints(slices: list[SliceState], ratios: dict[str, float] | None, populated: bool,
              address_type: str = "IPv4"
              ) -> tuple[dict[str, int] | None, list[HintEvent]]:
    """Hint `slices` in place; the hints allotted per zone (None: hints removed) and the
    Events to record.  `populated`: this Service had hints from the last sync."""
    total = sum(1 for s in slices for e in s.endpoints if endpoint_ready(e))
    allocs, why = allocations(ratios, total)
    if allocs is None:
        remove_hints(slices)
        return None, [disabled(why, address_type)]
    allocated: dict[str, int] = {}
    for state in slices:
        if not state.unchanged:
            continue
        counts = zone_hint_counts(state.endpoints, allocated, allocs)
        if counts is None:
            state.unchanged = False
            continue
        for zone, count in counts.items():
            allocated[zone] = allocated.get(zone, 0) + count
    changing = [s for s in slices if not s.unchanged]
    for state in changing:
        for i, endpoint in enumerate(state.endpoints):
            if not endpoint_ready(endpoint):
                continue
            zone = endpoint.get("zone") or ""
            if not zone:
                remove_hints(slices)
                return None, [disabled(MSG_NO_ZONE, address_type)]
            allocated[zone] = allocated.get(zone, 0) + 1
            state.endpoints[i] = {**endpoint, "hints": _zone_hint(zone)}
    giving, receiving = giving_and_receiving(allocs, allocated)
    for zone, change in redistribute(changing, giving, receiving).items():
        allocated[zone] = allocated.get(zone, 0) + change
    if not allocated:
        remove_hints(slices)
        return None, [disabled(MSG_NO_ALLOCATED, address_type)]
    events = [] if populated else [
        HintEvent(NORMAL, ENABLED, with_address_type(MSG_ENABLED, address_type))]
    return allocated, events
