"""Endpoint flattening and the shared categorisation (kube-proxy topology.go)."""

from __future__ import annotations

import pytest

from agents.proxy import (
    Endpoint,
    categorize_endpoints,
    endpoint_slice_from_k8s,
    endpoints_by_service_port,
)
from agents.proxy.endpoints import PortKey
from agents.proxy.fixtures import endpoint, slice_dict

NODE = "ip-172-31-0-11"


def slices(*dicts):
    return [endpoint_slice_from_k8s(d) for d in dicts]


def test_named_target_port_resolved_per_pod_through_slices():
    # Two pods name their port "http" but listen on different numbers: the
    # slice controller puts them in different slices with resolved ports.
    found = endpoints_by_service_port(slices(
        slice_dict("web", "shop", name="web-a",
                   ports=[{"name": "http", "port": 8080}],
                   endpoints=[endpoint("192.168.1.10", NODE)]),
        slice_dict("web", "shop", name="web-b",
                   ports=[{"name": "http", "port": 9090}],
                   endpoints=[endpoint("192.168.2.20", "other")]),
    ), NODE)
    eps = found[PortKey("shop", "web", "http", "TCP")]
    assert [(e.address, e.is_local) for e in eps] == [
        ("192.168.1.10:8080", True), ("192.168.2.20:9090", False)]


def test_ports_are_keyed_by_name_and_protocol():
    found = endpoints_by_service_port(slices(slice_dict(
        "dns", "kube-system",
        ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
               {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
        endpoints=[endpoint("192.168.1.3", NODE)])), NODE)
    assert set(found) == {PortKey("kube-system", "dns", "dns", "UDP"),
                          PortKey("kube-system", "dns", "dns-tcp", "TCP")}


def test_duplicate_addresses_count_once_and_local_wins():
    found = endpoints_by_service_port(slices(
        slice_dict("web", name="web-a",
                   endpoints=[endpoint("192.168.1.10", None)]),
        slice_dict("web", name="web-b",
                   endpoints=[endpoint("192.168.1.10", NODE)])), NODE)
    (eps,) = found.values()
    assert len(eps) == 1 and eps[0].is_local


@pytest.mark.parametrize("labels", [
    {"service.kubernetes.io/service-proxy-name": "other-proxy"},
    {"service.kubernetes.io/headless": ""},
])
def test_slices_of_skipped_services_are_ignored(labels):
    found = endpoints_by_service_port(slices(slice_dict(
        "web", labels=labels, endpoints=[endpoint("192.168.1.1", NODE)])), NODE)
    assert found == {}


def test_slice_sorting_and_invalid_entries():
    d = slice_dict("web", endpoints=[endpoint("192.168.1.9", NODE),
                                     endpoint("192.168.1.10", NODE),
                                     {"addresses": []},
                                     endpoint("fd00::1", NODE)])
    (eps,) = endpoints_by_service_port(slices(d), NODE).values()
    # kube-proxy orders by the "ip:port" string
    assert [e.address for e in eps] == ["192.168.1.10:8080", "192.168.1.9:8080"]


def ep(ip, local, ready=True, serving=None, terminating=False):
    return Endpoint(ip, 80, local, ready,
                    ready if serving is None else serving, terminating)


READY_L, READY_R = ep("10.0.1.1", True), ep("10.0.2.1", False)
TERM_L = ep("10.0.1.2", True, False, True, True)
TERM_R = ep("10.0.2.2", False, False, True, True)
DEAD_R = ep("10.0.2.3", False, False, False, True)   # terminating, not serving
NOT_READY_L = ep("10.0.1.3", True, False, False, False)


def addrs(eps):
    return [e.ip for e in eps]


@pytest.mark.parametrize(
    "endpoints,uses_cluster,uses_local,cluster,local,reachable,has_any", [
        # Cluster only: ready ones, local or not.
        ([READY_L, READY_R, TERM_R], True, False,
         ["10.0.1.1", "10.0.2.1"], [], ["10.0.1.1", "10.0.2.1"], True),
        # No ready endpoint: fall back to serving+terminating ones.
        ([TERM_L, TERM_R, DEAD_R, NOT_READY_L], True, False,
         ["10.0.1.2", "10.0.2.2"], [], ["10.0.1.2", "10.0.2.2"], True),
        # Nothing serving: no endpoints at all (REJECT).
        ([DEAD_R, NOT_READY_L], True, True, [], [], [], False),
        ([], True, True, [], [], [], False),
        # Local only (iTP Local, not externally reachable).
        ([READY_L, READY_R], False, True, [], ["10.0.1.1"], ["10.0.1.1"], True),
        # Local only, none here: still "has endpoints" (DROP, not REJECT).
        ([READY_R], False, True, [], [], [], True),
        # Fallback decided separately: cluster has a ready remote endpoint,
        # local falls back to its terminating one; both need SEP chains.
        ([READY_R, TERM_L], True, True, ["10.0.2.1"], ["10.0.1.2"],
         ["10.0.1.2", "10.0.2.1"], True),
        # Local set is a subset of cluster when it holds ready endpoints.
        ([READY_L, READY_R], True, True, ["10.0.1.1", "10.0.2.1"],
         ["10.0.1.1"], ["10.0.1.1", "10.0.2.1"], True),
    ])
def test_categorize_endpoints(endpoints, uses_cluster, uses_local, cluster,
                              local, reachable, has_any):
    got = categorize_endpoints(endpoints, uses_cluster=uses_cluster,
                               uses_local=uses_local)
    assert addrs(got.cluster) == cluster
    assert addrs(got.local) == local
    assert addrs(got.reachable) == reachable
    assert got.has_any is has_any
