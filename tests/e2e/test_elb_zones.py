"""The ELB across Availability Zones, end to end on the three-zone lab
(topo/clusters/zones.yaml: the control plane and a worker in us-east-1a, a
worker in us-east-1b and one in us-east-1c; one pod per worker).

An NLB (externalTrafficPolicy Local, so the pod that answers names the node
the flow entered) has a node and a VIP per zone and its DNS name answers the
three; with cross-zone load balancing off each VIP's flows reach only its
zone's node, with the annotation "true" every node; the client's address is
kept.  A zone whose only target fails its health check leaves DNS (only
with cross-zone off: with it on its node still has targets elsewhere) and
comes back.  A Classic ELB with cross-zone on connects from the ENI of the
VIP's zone, through the VPC router to the other zones' targets.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

import labtools
from labd.control import ControlClient
from labd.lb_status import lb_status
from labtools import admin_client, running_lab, svclab, workload
from probes.spread.probe import spread

wait_for = functools.partial(labtools.wait_for, timeout=20.0, every=0.1)

pytestmark = [pytest.mark.root, pytest.mark.e2e]

ZONES_YAML = str(Path(__file__).resolve().parents[2] / "topo" / "clusters" / "zones.yaml")
A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
N1, N2, N3 = "ip-172-31-0-11", "ip-172-31-16-12", "ip-172-31-32-13"
WORKER = {A: N1, B: N2, C: N3}
ENI = {A: "172.31.0.5", B: "172.31.16.5", C: "172.31.32.5"}
PODS = {"web-a": (N1, "192.168.1.20"), "web-b": (N2, "192.168.2.20"),
        "web-c": (N3, "192.168.3.20")}
CLIENT = "203.0.113.100"
NLB = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
CROSS_ZONE = "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled"


@pytest.fixture(scope="module")
def lab():
    with running_lab("-f", ZONES_YAML, prefix="elbz") as running:
        control = ControlClient(running.name)
        for pod, (node, ip) in PODS.items():
            control.add_pod(pod, node, ip=ip, command=workload(pod, ip, "80/TCP"))
        create_service(running, "nlb", NLB, externalTrafficPolicy="Local")
        create_service(running, "clb", {CROSS_ZONE: "true"}, externalTrafficPolicy="Local")
        yield running


def create_service(lab, name, annotations, **spec):
    api = admin_client(lab.name)
    api.create("services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                 "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}], **spec}},
        namespace="default")
    api.create("endpointslices", endpoint_slice(name, list(PODS)), namespace="default")


def endpoint_slice(name, pods):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-manual", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [PODS[p][1]], "nodeName": PODS[p][0],
                           "conditions": {"ready": True, "serving": True,
                                          "terminating": False}} for p in pods],
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}


def set_endpoints(lab, name, pods):
    api = admin_client(lab.name)
    body = endpoint_slice(name, pods)
    current = api.get("endpointslices", f"{name}-manual", "default")
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    api.update("endpointslices", body)


def annotate(lab, name, value):
    api = admin_client(lab.name)
    svc = api.get("services", name, "default")
    svc["metadata"]["annotations"][CROSS_ZONE] = value
    api.update("services", svc)


def lb_of(lab, name):
    rows = [r for r in lb_status(lab.name) if r["key"] == f"default/{name}"]
    return rows[0] if rows else None


def vips(lab, name):
    """zone -> the VIP of the load balancer's node there."""
    return {n["zone"]: n["vip"] for n in lb_of(lab, name)["zoneNodes"]}


def all_healthy(lab, name):
    lb = lb_of(lab, name)
    return lb is not None and {t["node"]: t["state"] for t in lb["targets"]} == dict.fromkeys(
        (N1, N2, N3), "healthy")


def resolved(lab, name):
    """The addresses the client's resolver gets for the load balancer's DNS name."""
    hostname = admin_client(lab.name).get("services", name, "default")["status"][
        "loadBalancer"]["ingress"][0]["hostname"]
    out = lab.exec("client", "getent", "ahostsv4", hostname, check=False)
    return {line.split()[0] for line in out.stdout.splitlines()} if out.returncode == 0 \
        else set()


def entry_nodes(lab, vip, count=90):
    """Which nodes the flows to vip entered (Local policy: the answering pod's node)."""
    result = spread(lab.name, "client", None, vip, 80, count=count, concurrency=30)
    assert result.failures == {} and result.ok == count, result.failures
    return {e.node for e in result.endpoints}, {r.source_seen for r in result.records}


def test_the_nlb_has_a_node_per_zone_and_its_name_answers_each(lab):
    wait_for("nlb targets healthy", lambda: all_healthy(lab, "nlb"))
    lb = lb_of(lab, "nlb")
    assert lb["crossZone"] is False and [n["zone"] for n in lb["zoneNodes"]] == [A, B, C]
    assert [n["eni"] for n in lb["zoneNodes"]] == [ENI[A], ENI[B], ENI[C]]
    assert {t["node"]: t["zone"] for t in lb["targets"]} == {N1: A, N2: B, N3: C}
    assert len(set(vips(lab, "nlb").values())) == 3
    assert wait_for("three A records", lambda: resolved(lab, "nlb") == set(
        vips(lab, "nlb").values()))
    shown = svclab("lb", "status", "--name", lab.name).stdout
    assert "cross-zone load balancing off" in shown
    assert any(line.split()[:2] == [C, vips(lab, "nlb")[C]] for line in shown.splitlines())


def test_cross_zone_off_each_vip_reaches_only_its_zone_and_on_every_zone(lab):
    wait_for("nlb targets healthy", lambda: all_healthy(lab, "nlb"))
    for zone, vip in vips(lab, "nlb").items():
        nodes, sources = entry_nodes(lab, vip)
        assert nodes == {WORKER[zone]}, (zone, vip, nodes)
        assert sources == {CLIENT}                  # the NLB keeps the client's address
    annotate(lab, "nlb", "true")
    wait_for("cross-zone on", lambda: lb_of(lab, "nlb")["crossZone"] and all(
        len(n["inService"]) == 3 for n in lb_of(lab, "nlb")["zoneNodes"]))
    before = {n["zone"]: n["connections"] for n in lb_of(lab, "nlb")["zoneNodes"]}
    nodes, sources = entry_nodes(lab, vips(lab, "nlb")[A], count=150)
    assert nodes == {N1, N2, N3} and sources == {CLIENT}
    # the ELB's own counters: us-east-1a's node made those 150
    after = wait_for("counters", lambda: (lambda n: n if n[A] >= before[A] + 150 else None)(
        {n["zone"]: n["connections"] for n in lb_of(lab, "nlb")["zoneNodes"]}), timeout=5)
    assert after[B] == before[B] and after[C] == before[C]


def test_a_zone_whose_only_target_fails_leaves_dns_unless_cross_zone_is_on(lab):
    set_endpoints(lab, "nlb", ["web-a", "web-b"])           # N3's /healthz answers 503
    wait_for("N3 unhealthy", lambda: {t["node"]: t["state"] for t in lb_of(
        lab, "nlb")["targets"]}[N3] == "unhealthy")
    every = set(vips(lab, "nlb").values())
    assert lb_of(lab, "nlb")["crossZone"] is True          # C's node still has targets
    assert resolved(lab, "nlb") == every
    nodes, _ = entry_nodes(lab, vips(lab, "nlb")[C])
    assert nodes == {N1, N2}

    annotate(lab, "nlb", "false")
    wait_for("us-east-1c out of DNS",
             lambda: resolved(lab, "nlb") == every - {vips(lab, "nlb")[C]})
    set_endpoints(lab, "nlb", list(PODS))
    wait_for("us-east-1c back in DNS", lambda: resolved(lab, "nlb") == every)


def test_a_classic_elb_connects_from_the_eni_of_the_vips_zone_across_zones(lab):
    wait_for("clb targets healthy", lambda: all_healthy(lab, "clb"))
    assert lb_of(lab, "clb")["crossZone"] is True
    for zone in (A, C):
        nodes, sources = entry_nodes(lab, vips(lab, "clb")[zone])
        assert nodes == {N1, N2, N3}
        assert sources == {ENI[zone]}
    # us-east-1a's node reached the other zones' targets through the VPC router
    # (the igw), its own zone's directly
    routed = lab.exec("igw", "conntrack", "-L", "-p", "tcp", "-s", ENI[A]).stdout
    assert "dst=172.31.16.12" in routed and "dst=172.31.32.13" in routed
    assert "dst=172.31.0.11" not in routed
