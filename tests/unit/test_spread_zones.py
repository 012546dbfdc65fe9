"""Spread results in a lab with zones: each connection's zone path, the share
that crossed an AZ boundary, and what AWS would bill for it."""
from __future__ import annotations

import pytest

from probes.spread.probe import ConnRecord, Place, summarize
from probes.spread.zones import ZoneMap, ZonePath, zone_path

A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
NODES = {"ip-172-31-0-10": A, "ip-172-31-16-11": B, "ip-172-31-32-12": C}
ZONES = ZoneMap(
    node_zone=NODES,
    address_zone={"172.31.0.10": A, "172.31.16.11": B, "172.31.32.12": C,
                  "198.51.100.11": B, "203.0.113.11": A, "203.0.113.12": B})
PODS = {"192.168.1.5": ("web-b", "ip-172-31-16-11"), "192.168.2.5": ("web-c", "ip-172-31-32-12")}
DIRECTORY = {ip: Place(name, node) for ip, (name, node) in PODS.items()}


def record(target: str, pod_ip: str, seen: str) -> ConnRecord:
    return ConnRecord(target=target, outcome="ok", latency_ms=1.0, local="192.168.0.9:40000",
                      pod=PODS[pod_ip][0], pod_ip=pod_ip, client=f"{seen}:40000")


@pytest.mark.parametrize("target, seen, endpoint_node, source_zone, want, crossings", [
    # a pod in zone a to a ClusterIP, endpoint in zone b: one crossing
    ("10.96.0.50", "192.168.0.9", "ip-172-31-16-11", A, ZonePath(A, None, B), 1),
    # same zone: none
    ("10.96.0.50", "192.168.0.9", "ip-172-31-16-11", B, ZonePath(B, None, B), 0),
    # client -> node b's public IP, masqueraded by node b, endpoint in c: one crossing
    ("198.51.100.11", "172.31.16.11", "ip-172-31-32-12", None, ZonePath(B, B, C), 1),
    # ELB node of zone a -> node b (seen as the source) -> endpoint in c: two crossings
    ("203.0.113.11", "172.31.16.11", "ip-172-31-32-12", None, ZonePath(A, B, C), 2),
    # ELB node of zone b, client IP kept (Local): entry b, endpoint b
    ("203.0.113.12", "203.0.113.100", "ip-172-31-16-11", None, ZonePath(B, None, B), 0),
])
def test_zone_path_counts_each_boundary(target, seen, endpoint_node, source_zone, want,
                                        crossings):
    path = zone_path(target, seen, endpoint_node, source_zone, ZONES)
    assert path == want
    assert path.crossings == crossings


def test_summary_reports_share_pairs_zone_column_and_cost():
    records = ([record("10.96.0.50:80", "192.168.1.5", "192.168.0.9")] * 30
               + [record("10.96.0.50:80", "192.168.2.5", "192.168.0.9")] * 10)
    result = summarize(records, source="client-pod", proto="tcp", targets=["10.96.0.50:80"],
                       elapsed_s=1.0, directory=DIRECTORY, zones=ZONES, source_zone=B)
    cz = result.cross_zone
    assert (cz.connections, cz.crossed, cz.crossings) == (40, 10, 10)
    assert cz.share == pytest.approx(0.25)
    assert cz.by_pair == {f"{B} -> {B}": 30, f"{B} -> {C}": 10}
    # 10 crossings of 1 GB each way at $0.01/GB per direction: $0.20
    assert cz.cost_usd(10 ** 9) == pytest.approx(0.20)
    assert {e.ip: e.zone for e in result.endpoints} == {"192.168.1.5": B, "192.168.2.5": C}
    text = result.describe()
    assert "ZONE" in text.splitlines()[1]
    assert "10 of 40 connections (25.0%) crossed an AZ boundary" in text
    assert result.to_json()["cross_zone"]["byEndpointZone"] == {B: 30, C: 10}


def test_a_lab_without_zones_reports_nothing_about_zones():
    records = [record("10.96.0.50:80", "192.168.1.5", "192.168.0.9")] * 3
    result = summarize(records, source="p", proto="tcp", targets=["10.96.0.50:80"],
                       elapsed_s=1.0, directory=DIRECTORY)
    assert result.cross_zone is None
    assert "ZONE" not in result.describe()
    assert "cross-zone" not in result.describe()
    assert result.to_json()["cross_zone"] is None
