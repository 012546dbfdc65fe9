"""EndpointSlice hints as Kubernetes 1.34's EndpointSlice controller gives them, over tables.

trafficDistribution (PreferClose / PreferSameZone / PreferSameNode), the
topology-mode Auto allotment by zone CPU with its overload threshold and
Events, and which of the two wins.
"""
from __future__ import annotations

import pytest

from controlplane.controllers import topology_cache as tc
from controlplane.controllers import topology_hints as th

A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
AUTO = {"service.kubernetes.io/topology-mode": "Auto"}


def endpoint(ip: str, zone: str | None = None, node: str | None = None, ready: bool = True,
             hints: dict | None = None) -> dict:
    out = {"addresses": [ip], "conditions": {"ready": ready, "serving": ready,
                                              "terminating": False}}
    if node:
        out["nodeName"] = node
    if zone:
        out["zone"] = zone
    if hints is not None:
        out["hints"] = hints
    return out


def service(distribution: str | None = None, annotations: dict | None = None) -> dict:
    svc = {"metadata": {"name": "web", "namespace": "default", "annotations": annotations or {}},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    if distribution is not None:
        svc["spec"]["trafficDistribution"] = distribution
    return svc


def node(name: str, zone: str | None, cpu="2", ready: bool = True,
         control_plane: bool = False) -> dict:
    labels = {}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu} if cpu is not None else {},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def zone_hints(*zones: str) -> dict:
    return {"forZones": [{"name": z} for z in zones]}


def hinted(outcome: th.HintOutcome) -> list:
    """Per endpoint of every slice: (ip, hints or None)."""
    return [(e["addresses"][0], e.get("hints")) for eps in outcome.slices for e in eps]


EVEN = {A: 1 / 3, B: 1 / 3, C: 1 / 3}


# --- node information ------------------------------------------------------------------

@pytest.mark.parametrize("quantity, millis", [
    ("2", 2000), ("1500m", 1500), ("0.5", 500), ("100u", 1), ("1k", 1_000_000),
    ("2Ki", 2_048_000), ("1e3", 1_000_000), (4, 4000), (None, 0), ("two", 0), ("", 0)])
def test_cpu_quantities_in_thousandths_rounded_up(quantity, millis):
    assert tc.cpu_millis(quantity) == millis


@pytest.mark.parametrize("nodes, ratios", [
    ([node("w1", A), node("w2", B), node("w3", C)], EVEN),
    ([node("w1", A, cpu="4"), node("w2", B), node("w3", C)], {A: 0.5, B: 0.25, C: 0.25}),
    ([node("w1", A), node("w2", A, cpu="500m"), node("w3", B, cpu="2500m")],
     {A: 0.5, B: 0.5}),
    # the control plane does not count, zone or not
    ([node("cp", None, control_plane=True), node("w1", A), node("w2", B)], {A: 0.5, B: 0.5}),
    # a node that is not ready does not count, zone or not
    ([node("w0", None, ready=False), node("w1", A), node("w2", B)], {A: 0.5, B: 0.5}),
    ([node("w1", A), node("w2", B), node("w3", None)], None),       # a worker without a zone
    ([node("w1", A), node("w2", B), node("w3", C, cpu="0")], None),  # or without CPU
    ([node("w1", A), node("w2", B), node("w3", C, cpu=None)], None),
    ([node("w1", A), node("w2", A)], None),                         # one zone
    ([node("w1", A), node("w2", B, ready=False)], None),            # ready in one zone only
    ([], None),
])
def test_zone_cpu_ratios(nodes, ratios):
    assert tc.zone_cpu_ratios(nodes) == ratios


def test_node_zones_maps_labelled_nodes_only():
    assert th.node_zones([node("w1", A), node("w2", None)]) == {"w1": A}


@pytest.mark.parametrize("annotations, enabled", [
    ({"service.kubernetes.io/topology-mode": "Auto"}, True),
    ({"service.kubernetes.io/topology-mode": "auto"}, True),
    ({"service.kubernetes.io/topology-mode": "AUTO"}, False),
    ({"service.kubernetes.io/topology-mode": "Disabled"}, False),
    ({"service.kubernetes.io/topology-aware-hints": "Auto"}, True),
    # the older annotation, when present, decides
    ({"service.kubernetes.io/topology-aware-hints": "disabled",
      "service.kubernetes.io/topology-mode": "Auto"}, False),
    ({"service.kubernetes.io/topology-aware-hints": "auto",
      "service.kubernetes.io/topology-mode": "Disabled"}, True),
    ({}, False), (None, False),
])
def test_which_annotations_turn_topology_mode_auto_on(annotations, enabled):
    assert th.hints_enabled(annotations) is enabled


# --- allocation --------------------------------------------------------------------------

@pytest.mark.parametrize("ratios, endpoints, expected", [
    (EVEN, 6, {A: (2, 2, 2.0), B: (2, 2, 2.0), C: (2, 2, 2.0)}),
    (EVEN, 3, {A: (1, 1, 1.0), B: (1, 1, 1.0), C: (1, 1, 1.0)}),
    # 4 over 3 even zones: each would need ceil(1.33 / 1.2) = 2
    (EVEN, 4, "Unable to allocate minimum required endpoints to each zone without "
     "exceeding overload threshold (4 endpoints, 3 zones)"),
    ({A: 0.5, B: 0.25, C: 0.25}, 4, {A: (2, 2, 2.0), B: (1, 1, 1.0), C: (1, 1, 1.0)}),
    ({A: 0.8, B: 0.1, C: 0.1}, 10, {A: (7, 8, 8.0), B: (1, 2, 1.0), C: (1, 2, 1.0)}),
    (EVEN, 2, "Insufficient number of endpoints (2 endpoints, 3 zones)"),
    ({A: 0.8, B: 0.1, C: 0.1}, 3, "Unable to allocate minimum required endpoints to each "
     "zone without exceeding overload threshold (3 endpoints, 3 zones)"),
    # two equal zones and an odd number: each would need 3 of 5
    ({A: 0.5, B: 0.5}, 5, "Unable to allocate minimum required endpoints to each zone "
     "without exceeding overload threshold (5 endpoints, 2 zones)"),
    (None, 6, "Insufficient Node information: allocatable CPU or zone not specified on one "
     "or more nodes"),
    ({A: 1.0}, 6, "Nodes only ready in one zone"),
])
def test_allocations(ratios, endpoints, expected):
    allocs, why = tc.allocations(ratios, endpoints)
    if isinstance(expected, str):
        assert (allocs, why) == (None, expected)
    else:
        assert {z: (a.minimum, a.maximum, a.desired) for z, a in allocs.items()} == expected


@pytest.mark.parametrize("allocated, ratios, overloaded", [
    ({A: 2, B: 2, C: 2}, EVEN, False),
    ({A: 2, B: 2, C: 2}, {A: 0.5, B: 0.25, C: 0.25}, True),    # A would need 3 of 6
    ({A: 3, B: 3}, EVEN, True),                                 # a zone without hints
    ({A: 2, B: 2, C: 2}, None, True),                           # node info gone
    ({}, EVEN, False),
])
def test_service_overloaded(allocated, ratios, overloaded):
    assert tc.service_overloaded(allocated, ratios) is overloaded


# --- trafficDistribution ------------------------------------------------------------------

MIXED = [endpoint("10.0.0.1", A, "n1"), endpoint("10.0.0.2", B, "n2"),
         endpoint("10.0.0.3", None, "n3"), endpoint("10.0.0.4", A, "n1", ready=False),
         endpoint("10.0.0.5", C, None)]


@pytest.mark.parametrize("distribution, expected", [
    ("PreferClose", [zone_hints(A), zone_hints(B), None, None, zone_hints(C)]),
    ("PreferSameZone", [zone_hints(A), zone_hints(B), None, None, zone_hints(C)]),
    ("PreferSameNode", [{**zone_hints(A), "forNodes": [{"name": "n1"}]},
                        {**zone_hints(B), "forNodes": [{"name": "n2"}]},
                        {"forNodes": [{"name": "n3"}]},   # no zone: a node hint only
                        None,                             # not ready: left alone
                        zone_hints(C)]),                  # no node: a zone hint only
    (None, [None] * 5),
    ("Nearest", [None] * 5),              # not a value the API lets through: ignored
])
def test_traffic_distribution_hints(distribution, expected):
    outcome = th.reconcile_hints(service(distribution), [(MIXED, False)], EVEN, False)
    assert [h for _, h in hinted(outcome)] == expected
    assert outcome.events == [] and outcome.allocated is None


def test_traffic_distribution_needs_no_node_information():
    outcome = th.reconcile_hints(service("PreferSameZone"), [(MIXED, False)], None, False)
    assert hinted(outcome)[0] == ("10.0.0.1", zone_hints(A))


def test_correct_hints_on_an_unchanged_slice_stay_and_stale_ones_are_replaced():
    good = [endpoint("10.0.0.1", A, "n1", hints=zone_hints(A)),
            endpoint("10.0.0.2", None, "n2", ready=False, hints=zone_hints(C))]
    stale = [endpoint("10.0.0.3", B, "n2", hints=zone_hints(A))]
    outcome = th.reconcile_hints(service("PreferClose"), [(good, True), (stale, True)],
                                 EVEN, False)
    assert outcome.slices[0] == good          # a not-ready endpoint's hints are not looked at
    assert outcome.slices[1] == [endpoint("10.0.0.3", B, "n2", hints=zone_hints(B))]


def test_without_field_or_annotation_every_hint_goes():
    old = [endpoint("10.0.0.1", A, "n1", hints=zone_hints(A)),
           endpoint("10.0.0.2", B, "n2", ready=False, hints=zone_hints(B))]
    outcome = th.reconcile_hints(service(), [(old, True)], EVEN, False)
    assert hinted(outcome) == [("10.0.0.1", None), ("10.0.0.2", None)]
    assert outcome.events == []


# --- topology-mode Auto --------------------------------------------------------------------

def auto(endpoints, ratios=EVEN, populated=False, unchanged=False, distribution=None):
    return th.reconcile_hints(service(distribution, AUTO), [(endpoints, unchanged)], ratios,
                              populated)


def enabled_event():
    return tc.HintEvent("Normal", "TopologyAwareHintsEnabled",
                        "Topology Aware Hints has been enabled, addressType: IPv4")


def disabled_event(message):
    return tc.HintEvent("Warning", "TopologyAwareHintsDisabled",
                        f"{message}, addressType: IPv4")


def test_auto_balanced_zones_hint_every_endpoint_for_its_own_zone():
    eps = [endpoint(f"10.0.{i}.{j}", zone, f"n{i}") for i, zone in enumerate((A, B, C))
           for j in (1, 2)]
    outcome = auto(eps)
    assert [h for _, h in hinted(outcome)] == [zone_hints(e["zone"]) for e in eps]
    assert outcome.allocated == {A: 2, B: 2, C: 2}
    assert outcome.events == [enabled_event()]
    assert auto(eps, populated=True).events == []          # enabled once, not on every sync


def test_auto_endpoints_all_in_one_zone_are_shared_out_to_the_others():
    eps = [endpoint(f"10.0.0.{i}", A, "n1") for i in (1, 2, 3)]
    outcome = auto(eps)
    assert hinted(outcome) == [("10.0.0.1", zone_hints(B)), ("10.0.0.2", zone_hints(C)),
                               ("10.0.0.3", zone_hints(A))]
    assert outcome.allocated == {A: 1, B: 1, C: 1}
    assert outcome.events == [enabled_event()]


def test_auto_unequal_cpu_moves_endpoints_towards_the_bigger_zone():
    # A has half the CPU: 2 of 4 endpoints; C's second endpoint goes to A.
    eps = [endpoint("10.0.0.1", A), endpoint("10.0.0.2", B), endpoint("10.0.0.3", C),
           endpoint("10.0.0.4", C)]
    outcome = auto(eps, ratios={A: 0.5, B: 0.25, C: 0.25})
    assert hinted(outcome) == [("10.0.0.1", zone_hints(A)), ("10.0.0.2", zone_hints(B)),
                               ("10.0.0.3", zone_hints(A)), ("10.0.0.4", zone_hints(C))]
    assert outcome.allocated == {A: 2, B: 1, C: 1}


@pytest.mark.parametrize("eps, ratios, message", [
    # fewer endpoints than zones
    ([endpoint("10.0.0.1", A), endpoint("10.0.0.2", B)], EVEN,
     "Insufficient number of endpoints (2 endpoints, 3 zones)"),
    # not-ready endpoints do not count
    ([endpoint("10.0.0.1", A), endpoint("10.0.0.2", B), endpoint("10.0.0.3", C, ready=False)],
     EVEN, "Insufficient number of endpoints (2 endpoints, 3 zones)"),
    # CPU very unequal: the small zones' minimum of one each leaves the big one short
    ([endpoint("10.0.0.1", A), endpoint("10.0.0.2", B), endpoint("10.0.0.3", C)],
     {A: 0.8, B: 0.1, C: 0.1}, "Unable to allocate minimum required endpoints to each zone "
     "without exceeding overload threshold (3 endpoints, 3 zones)"),
    # a node without a zone label (or CPU) somewhere: no ratios at all
    ([endpoint("10.0.0.1", A), endpoint("10.0.0.2", B)], None,
     "Insufficient Node information: allocatable CPU or zone not specified on one or more "
     "nodes"),
    # a ready endpoint without a zone
    ([endpoint("10.0.0.1", A), endpoint("10.0.0.2", A), endpoint("10.0.0.3", B),
      endpoint("10.0.0.4", None)],
     {A: 0.5, B: 0.5}, "One or more endpoints do not have a zone specified"),
])
def test_auto_gives_no_hints_and_says_why(eps, ratios, message):
    old = [{**e, "hints": zone_hints(A)} for e in eps]
    outcome = auto(old, ratios=ratios, unchanged=True)
    assert [h for _, h in hinted(outcome)] == [None] * len(eps)
    assert outcome.allocated is None
    assert outcome.events == [disabled_event(message)]


def test_auto_a_not_ready_endpoint_without_zone_does_not_matter():
    eps = [endpoint("10.0.0.1", A), endpoint("10.0.0.2", B),
           endpoint("10.0.0.3", None, ready=False)]
    outcome = auto(eps, ratios={A: 0.5, B: 0.5})
    assert hinted(outcome) == [("10.0.0.1", zone_hints(A)), ("10.0.0.2", zone_hints(B)),
                               ("10.0.0.3", None)]


def test_auto_keeps_an_unchanged_slices_hints_while_they_fit():
    # Two endpoints of A hinted for B and two of B for A: within every zone's maximum.
    eps = [endpoint("10.0.0.1", A, hints=zone_hints(B)), endpoint("10.0.0.2", A,
                                                                  hints=zone_hints(B)),
           endpoint("10.0.0.3", B, hints=zone_hints(A)), endpoint("10.0.0.4", B,
                                                                  hints=zone_hints(A))]
    outcome = auto(eps, ratios={A: 0.5, B: 0.5}, unchanged=True, populated=True)
    assert outcome.slices == [eps]
    assert outcome.allocated == {A: 2, B: 2} and outcome.events == []


def test_auto_rehints_an_unchanged_slice_whose_hints_no_longer_fit():
    eps = [endpoint(f"10.0.0.{i}", zone, hints=zone_hints(A))
           for i, zone in enumerate((A, A, B, B), 1)]
    outcome = auto(eps, ratios={A: 0.5, B: 0.5}, unchanged=True, populated=True)
    assert [h for _, h in hinted(outcome)] == [zone_hints(z) for z in (A, A, B, B)]


def test_auto_wins_over_traffic_distribution():
    eps = [endpoint(f"10.0.0.{i}", A, "n1") for i in (1, 2, 3)]
    outcome = auto(eps, distribution="PreferSameNode")
    assert [h for _, h in hinted(outcome)] == [zone_hints(B), zone_hints(C), zone_hints(A)]
    assert outcome.events == [enabled_event()]


def test_traffic_distribution_applies_when_the_older_annotation_turns_auto_off():
    svc = service("PreferSameZone", {**AUTO, "service.kubernetes.io/topology-aware-hints":
                                     "disabled"})
    outcome = th.reconcile_hints(svc, [([endpoint("10.0.0.1", B)], False)], EVEN, False)
    assert hinted(outcome) == [("10.0.0.1", zone_hints(B))] and outcome.events == []


@pytest.mark.parametrize("distribution, expected", [
    (None, None), ("PreferClose", zone_hints(A))])
def test_turning_auto_off_after_it_gave_hints_is_an_event(distribution, expected):
    old = [endpoint("10.0.0.1", A, hints=zone_hints(B))]
    outcome = th.reconcile_hints(service(distribution), [(old, True)], EVEN, True)
    assert hinted(outcome) == [("10.0.0.1", expected)]
    assert outcome.events == [disabled_event("Topology Aware Hints has been disabled")]
    assert outcome.allocated is None


def test_hints_span_slices_and_count_across_them():
    first = [endpoint("10.0.0.1", A), endpoint("10.0.0.2", A)]
    second = [endpoint("10.0.1.1", A), endpoint("10.0.1.2", B)]
    outcome = th.reconcile_hints(service(None, AUTO), [(first, False), (second, False)],
                                 {A: 0.5, B: 0.5}, False)
    assert hinted(outcome) == [("10.0.0.1", zone_hints(B)), ("10.0.0.2", zone_hints(A)),
                               ("10.0.1.1", zone_hints(A)), ("10.0.1.2", zone_hints(B))]
    assert outcome.allocated == {A: 2, B: 2}


def test_inputs_are_not_modified():
    eps = [endpoint("10.0.0.1", A, "n1")]
    snapshot = [dict(e) for e in eps]
    th.reconcile_hints(service("PreferSameNode"), [(eps, False)], EVEN, False)
    auto(eps + [endpoint("10.0.0.2", B), endpoint("10.0.0.3", C)])
    assert eps == snapshot
