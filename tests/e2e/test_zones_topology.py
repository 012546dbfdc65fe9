"""Availability Zones end to end: the three-zone lab (topo/clusters/zones.yaml).

One subnet and one bridge per zone, the igw as the VPC's router between
them: nodes carry their zone labels, pods and ClusterIPs answer across
zones, a packet between zones takes one more routed hop (the router) than
within a zone, the internet reaches a NodePort on any zone's node through
its public IP, DNS answers across zones, the lab says whether its
inter-zone latency is emulated, and `svclab down` leaves nothing behind.
One lab for the whole module; its last test takes it down.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from experiments.cluster_ops import switch_port_of
from labd.control import ControlClient
from labtools import (
    RunningLab,
    admin_client,
    fetch_many,
    http_get,
    outcomes,
    svclab,
    unique_name,
    wait_open,
    workload,
)
from probes.reach import Probe
from topo.cleanup import clean_lab, processes_in_netns
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]

ZONES_YAML = str(Path(__file__).resolve().parents[2] / "topo" / "clusters" / "zones.yaml")
N0, N1, N2, N3 = "ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-16-12", "ip-172-31-32-13"
ZONE = {N0: "us-east-1a", N1: "us-east-1a", N2: "us-east-1b", N3: "us-east-1c"}
PODS = {  # name -> (node, ip): two in zone a (on two nodes), one in b, one in c
    "web-a0": (N0, "192.168.0.50"), "web-a1": (N1, "192.168.1.50"),
    "web-b": (N2, "192.168.2.50"), "web-c": (N3, "192.168.3.50"),
}
NODE_PORT = 30080


@pytest.fixture(scope="module")
def zlab():
    name = unique_name("zones")
    up = svclab("up", "--name", name, "-f", ZONES_YAML)
    lab = RunningLab(name)
    lab.up_output = up.stdout
    state = read_state(LabPaths(name))
    lab.netns, lab.cookies = set(state.netns_seen), state.cookies()
    try:
        yield lab
    finally:
        if LabPaths(name).root.exists():
            svclab("down", "--name", name, check=False)
        clean_lab(name)


@pytest.fixture(scope="module")
def pods(zlab):
    control = ControlClient(zlab.name)
    for name, (node, ip) in PODS.items():
        control.add_pod(name, node, ip=ip, command=workload(name, ip))
    for _node, ip in PODS.values():
        wait_open(zlab.name, N0, Probe(ip, 80))
    return PODS


@pytest.fixture(scope="module")
def service(zlab, pods):
    """web: a NodePort Service whose only endpoint is web-c (zone c)."""
    api = admin_client(zlab.name)
    svc = api.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP",
                                                "nodePort": NODE_PORT}]}}, namespace="default")
    api.create("endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-manual", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [PODS["web-c"][1]], "nodeName": N3, "zone": ZONE[N3],
                       "conditions": {"ready": True, "serving": True, "terminating": False}}],
        "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}, namespace="default")
    vip = svc["spec"]["clusterIP"]
    wait_open(zlab.name, "web-a1", Probe(vip, 80))
    return vip


def ping_ttl(lab, source: str, target: str) -> int:
    out = lab.exec(source, "ping", "-c", "1", "-W", "2", target).stdout
    return int(re.search(r"ttl=(\d+)", out)[1])


def test_nodes_carry_their_zone_and_region(zlab):
    out = svclab("kubectl", "--name", zlab.name, "get", "nodes", "--no-headers",
                 "-L", "topology.kubernetes.io/zone", "-L", "topology.kubernetes.io/region")
    rows = {line.split()[0]: line.split()[-2:] for line in out.stdout.splitlines()}
    assert rows == {node: [zone, "us-east-1"] for node, zone in ZONE.items()}


def test_status_lists_the_zones_and_says_whether_latency_is_emulated(zlab):
    status = svclab("status", "--name", zlab.name).stdout
    assert (f"us-east-1a 172.31.0.0/20: bridge az1, router 172.31.0.1 (igw eth0), ELB ENI "
            f"172.31.0.5 (elb eth0, 0a:e1:ac:1f:00:05); {N0}, {N1}") in status
    assert "us-east-1c 172.31.32.0/20: bridge az3" in status and N3 in status
    # The kernel decides: netem on the router's zone interfaces, or a notice.
    qdisc = zlab.exec("igw", "tc", "qdisc", "show", "dev", "eth2").stdout
    notice = ("inter-zone latency emulated" if "netem" in qdisc
              else "inter-zone latency not emulated: this kernel has no netem")
    assert notice in status and notice in zlab.up_output
    zones = json.loads(svclab("status", "--name", zlab.name, "--json").stdout)["zones"]
    assert [(z["name"], z["nodes"]) for z in zones["zones"]] == [
        ("us-east-1a", [N0, N1]), ("us-east-1b", [N2]), ("us-east-1c", [N3])]


def test_pods_reach_pods_in_every_zone_with_their_own_address(zlab, pods):
    got = outcomes(zlab.name, "web-a1", [Probe(ip, 80) for _, ip in PODS.values()])
    assert set(got.values()) == {"open"}, got
    assert http_get(zlab, "web-a1", "http://192.168.3.50/clientip").startswith("192.168.1.50:")
    assert http_get(zlab, "web-c", "http://192.168.2.50/hostname") == "web-b"


def test_a_packet_between_zones_is_routed_once_more_than_within_a_zone(zlab, pods):
    """pod -> node -> node -> pod within a zone; across zones the VPC router
    (the igw) is one more hop, so the reply arrives with a TTL one lower."""
    same_zone = ping_ttl(zlab, "web-a1", PODS["web-a0"][1])
    for other in ("web-b", "web-c"):
        assert ping_ttl(zlab, "web-a1", PODS[other][1]) == same_zone - 1
    # the router's own counters saw zone a's traffic to the other zones
    rules = zlab.exec("igw", "iptables", "-L", "IGW-FORWARD", "-v", "-n", "-x").stdout
    line = next(l for l in rules.splitlines() if "us-east-1a to the VPC" in l)
    assert int(line.split()[0]) > 0, rules


def test_a_cluster_ip_reaches_an_endpoint_in_another_zone(zlab, service):
    assert set(fetch_many(zlab, "web-a1", f"http://{service}/hostname", 3)) == {"web-c"}
    seen = fetch_many(zlab, "web-b", f"http://{service}/clientip", 3)
    assert {s.rsplit(":", 1)[0] for s in seen} == {"192.168.2.50"}   # not masqueraded


def test_the_internet_reaches_a_nodeport_through_any_zones_public_ip(zlab, service):
    got = outcomes(zlab.name, "client", [Probe(f"198.51.100.{i}", NODE_PORT)
                                         for i in (10, 11, 12, 13)])
    assert set(got.values()) == {"open"}, got
    assert fetch_many(zlab, "client", f"http://198.51.100.12:{NODE_PORT}/hostname", 2) == [
        "web-c", "web-c"]
    # and never a pod directly
    assert outcomes(zlab.name, "client", [Probe("192.168.3.50", 80)]) == {
        "192.168.3.50:80/tcp": "dropped"}


def test_dns_answers_across_zones(zlab, service):
    # cluster DNS (kube-dns, its pods wherever they run) from a pod in zone c
    out = zlab.exec("web-c", "getent", "hosts", "web.default.svc.cluster.local").stdout
    assert out.split()[0] == service
    # the VPC resolver (the VPC's .2, on the router in zone a) from zone b
    out = zlab.exec(N2, "getent", "hosts", f"{N3}.ec2.internal").stdout
    assert out.split()[0] == "172.31.32.13"


def test_a_nodes_switch_port_is_on_its_zones_bridge(zlab):
    state = read_state(LabPaths(zlab.name))
    for node, bridge in ((N1, "az1"), (N2, "az2"), (N3, "az3")):
        pid, port = switch_port_of(zlab, node)
        assert pid == state.hosts[bridge].pid and port.startswith(f"{bridge}-eth")


def test_down_leaves_nothing(zlab):
    assert processes_in_netns(zlab.netns, cookies=zlab.cookies)
    svclab("down", "--name", zlab.name)
    assert processes_in_netns(zlab.netns, cookies=zlab.cookies) == []
    assert not LabPaths(zlab.name).root.exists()
