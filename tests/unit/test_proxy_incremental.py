"""Partial syncs compute only the changed services, and get the same answer.

``compute_ruleset(..., previous=, changed=)`` reuses the previous rule set's
entries for every service not in ``changed``; whatever the change (a new
service, a deleted one, endpoints moved, a type change), the result must
equal computing everything from scratch — or a partial sync would program
stale rules.
"""

from __future__ import annotations

import gc
import random

import pytest

from agents.proxy import (
    NodeInfo,
    ProxyOptions,
    compute_ruleset,
    endpoint_slice_from_k8s,
    service_from_k8s,
)
from agents.proxy.agent import gc_paused, sync_rules
from agents.proxy.fixtures import endpoint, service_dict, slice_dict

NODE = NodeInfo("n1", ("172.31.0.11",), "192.168.0.0/16", "10.96.0.0/12")


def world(rng: random.Random, n: int):
    services, slices = {}, {}
    for i in range(n):
        kind = rng.choice(["ClusterIP", "NodePort", "LoadBalancer"])
        services[("ns", f"s{i}")] = service_dict(
            f"s{i}", "ns", cluster_ip=f"10.96.0.{i + 1}", type=kind,
            etp=rng.choice(["Cluster", "Local"]) if kind != "ClusterIP"
            else None,
            ports=[{"name": "http", "port": 80,
                    **({"nodePort": 30000 + i} if kind != "ClusterIP"
                       else {})}],
            ingress=[{"ip": f"203.0.113.{i + 1}"}]
            if kind == "LoadBalancer" else None)
        slices[("ns", f"s{i}")] = slice_dict(f"s{i}", "ns", endpoints=[
            endpoint(f"192.168.{i}.{j + 1}", rng.choice(["n1", "n2"]))
            for j in range(rng.randrange(0, 4))])
    return services, slices


def models(services: dict, slices: dict):
    return ([service_from_k8s(s) for s in services.values()],
            [endpoint_slice_from_k8s(s) for s in slices.values()])


def mutate(rng: random.Random, services: dict, slices: dict) -> set:
    """Change a few services the ways a cluster does; their keys."""
    changed = set()
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice(sorted(services))
        what = rng.choice(["endpoints", "delete", "type", "add"])
        if what == "endpoints":
            slices[key] = slice_dict(key[1], "ns", endpoints=[
                endpoint(f"192.168.200.{rng.randrange(1, 250)}", "n1")])
        elif what == "delete":
            services.pop(key)
            slices.pop(key, None)
        elif what == "type":
            services[key] = service_dict(
                key[1], "ns", cluster_ip=services[key]["spec"]["clusterIP"],
                type="NodePort", ports=[{"name": "http", "port": 80,
                                         "nodePort": 31999}])
        else:
            key = ("ns", f"new{rng.randrange(10**6)}")
            services[key] = service_dict(key[1], "ns",
                                         cluster_ip="10.96.9.9")
            slices[key] = slice_dict(key[1], "ns",
                                     endpoints=[endpoint("192.168.9.9", "n1")])
        changed.add(key)
    return changed


@pytest.mark.parametrize("seed", range(20))
def test_incremental_equals_full_computation(seed):
    rng = random.Random(seed)
    services, slices = world(rng, 12)
    previous = compute_ruleset(*models(services, slices), NODE)
    for _ in range(5):
        changed = mutate(rng, services, slices)
        full = compute_ruleset(*models(services, slices), NODE)
        partial = compute_ruleset(*models(services, slices), NODE,
                                  previous=previous, changed=changed)
        assert partial == full
        previous = partial


def test_only_the_changed_services_need_to_be_passed():
    rng = random.Random(1)
    services, slices = world(rng, 6)
    previous = compute_ruleset(*models(services, slices), NODE)
    slices[("ns", "s2")] = slice_dict("s2", "ns", endpoints=[
        endpoint("192.168.77.7", "n1")])
    only = models({("ns", "s2"): services[("ns", "s2")]},
                  {("ns", "s2"): slices[("ns", "s2")]})
    assert compute_ruleset(*only, NODE, previous=previous,
                           changed={("ns", "s2")}) == \
        compute_ruleset(*models(services, slices), NODE)


def test_other_node_or_options_mean_a_full_computation():
    services, slices = world(random.Random(2), 4)
    previous = compute_ruleset(*models(services, slices), NODE)
    moved = NodeInfo("n1", ("172.31.0.12",), "192.168.0.0/16", "10.96.0.0/12")
    # previous was for another node: everything is computed again
    assert compute_ruleset(*models(services, slices), moved,
                           previous=previous, changed=set()) == \
        compute_ruleset(*models(services, slices), moved)
    options = ProxyOptions(masquerade_all=True)
    assert compute_ruleset(*models(services, slices), NODE, options,
                           previous=previous, changed=set()) == \
        compute_ruleset(*models(services, slices), NODE, options)


class RecordingBackend:
    def __init__(self):
        self.calls = []

    def sync(self, ruleset, changed):
        self.calls.append((ruleset, changed, gc.isenabled()))
        return "report"


def test_sync_rules_passes_the_change_on_with_gc_paused():
    services, slices = world(random.Random(3), 4)
    backend = RecordingBackend()
    first, report = sync_rules(backend, *models(services, slices), NODE)
    assert report == "report"
    assert backend.calls[-1][1:] == (None, False)    # full, GC paused
    assert gc.isenabled()                            # and back on after
    second, _ = sync_rules(backend, *models(services, slices), NODE,
                           previous=first, changed=frozenset({("ns", "s1")}))
    assert backend.calls[-1][1] == frozenset({("ns", "s1")})
    assert second == first


def test_gc_paused_leaves_a_disabled_gc_disabled():
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
