"""`svclab trace` names the topology rule that chose the endpoints: the rule
set is computed as the node's agent computes it (from the API's JSON and the
node's zone label), the branch walked through the rendered rules of either
mode is matched to its service chain, and the report prints the rule."""
from __future__ import annotations

import pytest

from agents.proxy import names, render_iptables
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_tracer import Tracer
from agents.proxy.nft_render import render_nftables
from agents.proxy.nft_tracer import NftTracer
from probes.trace.flow import AddrPort, Leg, Sighting
from probes.trace.report import Decision, Trace
from probes.trace.topology import node_ruleset, topology_note

NODE, NODE_IP = "ip-172-31-0-11", "172.31.0.11"
ZONE = "topology.kubernetes.io/zone"
CLUSTER_IP, NODE_PORT = "10.96.100.10", 30080
POD, CLIENT = "192.168.1.5", "203.0.113.7"
# ip, node, zone (each endpoint hinted for its own zone)
ENDPOINTS = (("192.168.1.10", NODE, "us-east-1a"),
             ("192.168.4.10", "ip-172-31-0-14", "us-east-1a"),
             ("192.168.2.10", "ip-172-31-16-12", "us-east-1b"),
             ("192.168.2.11", "ip-172-31-16-12", "us-east-1b"),
             ("192.168.3.10", "ip-172-31-32-13", "us-east-1c"))


def node_object(zone: str | None) -> dict:
    labels = {ZONE: zone} if zone else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels}}


def api_objects(*, hinted=ENDPOINTS, etp: str | None = None):
    svc = service_dict("web", "shop", cluster_ip=CLUSTER_IP, type="NodePort", etp=etp,
                       ports=[{"name": "http", "port": 80, "targetPort": 8080,
                               "nodePort": NODE_PORT}])
    eps = [endpoint(ip, node, zone=zone, for_zones=(zone,) if (ip, node, zone) in hinted else ())
           for ip, node, zone in ENDPOINTS]
    return [svc], [slice_dict("web", "shop", ports=[{"name": "http", "port": 8080}],
                              endpoints=eps)]


def notes(ruleset, mode: str, src: str, dst: str, port: int) -> set[str | None]:
    """The topology note of every branch the packet can take (walked in mode)."""
    walker = (NftTracer(render_nftables(ruleset), (NODE_IP,)) if mode == "nftables"
              else Tracer(render_iptables(ruleset), (NODE_IP,)))
    branches = walker.branches(src, dst, port, "TCP")
    assert branches and all(b.packet.dnat for b in branches)
    return {topology_note(ruleset, b.chains()) for b in branches}


@pytest.mark.parametrize("mode", ("iptables", "nftables"))
@pytest.mark.parametrize("zone, hinted, etp, src, dst, port, note", [
    ("us-east-1a", ENDPOINTS, None, POD, CLUSTER_IP, 80,
     "shop/web:http: zone hints: 2 of 5 endpoints for us-east-1a"),
    ("us-east-1a", ENDPOINTS, None, CLIENT, NODE_IP, NODE_PORT,
     "shop/web:http: zone hints: 2 of 5 endpoints for us-east-1a"),
    ("us-east-1a", ENDPOINTS[1:], None, POD, CLUSTER_IP, 80,
     "shop/web:http: no topology filtering: endpoint 192.168.1.10 has no zone hints"),
    ("us-east-1c", ENDPOINTS[:4], None, POD, CLUSTER_IP, 80,
     "shop/web:http: no topology filtering: endpoint 192.168.3.10 has no zone hints"),
    ("us-east-1d", ENDPOINTS, None, POD, CLUSTER_IP, 80,
     "shop/web:http: no topology filtering: no hints for zone us-east-1d"),
    (None, ENDPOINTS, None, POD, CLUSTER_IP, 80,
     f"shop/web:http: no topology filtering: node {NODE} has no {ZONE} label"),
    ("us-east-1b", ENDPOINTS, "Local", CLIENT, NODE_IP, NODE_PORT,
     "shop/web:http: node-local endpoints (1), traffic policy Local: hints not used"),
    ("us-east-1b", ENDPOINTS, "Local", POD, CLUSTER_IP, 80,
     "shop/web:http: zone hints: 2 of 5 endpoints for us-east-1b"),
])
def test_the_note_names_the_rule_of_the_chain_the_packet_took(mode, zone, hinted, etp, src,
                                                              dst, port, note):
    services, slices = api_objects(hinted=hinted, etp=etp)
    ruleset = node_ruleset(NODE, [NODE_IP], node_object(zone), services, slices)
    assert notes(ruleset, mode, src, dst, port) == {note}


def test_no_note_for_a_path_through_no_service_chain():
    services, slices = api_objects()
    ruleset = node_ruleset(NODE, [NODE_IP], None, services, slices)
    assert topology_note(ruleset, ("KUBE-SERVICES", "KUBE-POSTROUTING")) is None


def test_a_lab_without_zones_and_without_hints_gets_no_note():
    services, slices = api_objects(hinted=())
    ruleset = node_ruleset(NODE, [NODE_IP], node_object(None), services, slices)
    chains = ("KUBE-SERVICES", names.cluster_chain("shop/web:http", "TCP"))
    assert topology_note(ruleset, chains, zoned=False) is None
    assert topology_note(ruleset, chains) == (
        "shop/web:http: no topology filtering: no endpoint has zone hints")


def test_an_unreadable_node_counts_as_one_without_a_zone_label():
    services, slices = api_objects()
    ruleset = node_ruleset(NODE, [NODE_IP, "fe80::1"], None, services, slices)
    assert ruleset.node.zone is None and ruleset.node.node_ips == (NODE_IP,)


def test_the_report_prints_the_rule_in_the_node_step_and_the_json():
    pod_here, svc, endpoint_ = AddrPort(POD, 40000), AddrPort(CLUSTER_IP, 80), \
        AddrPort("192.168.4.10", 8080)
    leg = Leg(0, (
        Sighting("web-client", "eth0", "out", 1.0, pod_here, svc, "SYN"),
        Sighting(NODE, "cali1", "in", 1.001, pod_here, svc, "SYN"),
        Sighting(NODE, "eth0", "out", 1.002, pod_here, endpoint_, "SYN",
                 (f"dst {svc} -> {endpoint_}",)),
    ), (), 3)
    rule = "shop/web:http: zone hints: 2 of 5 endpoints for us-east-1a"
    decision = Decision(NODE, 0, "kube-proxy (nftables)",
                        "services -> service-X -> endpoint-Y: DNAT to 192.168.4.10:8080",
                        dnat="192.168.4.10:8080", topology=rule)
    trace = Trace("lab", "web-client", f"{CLUSTER_IP}:80", "tcp", str(svc), str(pod_here),
                  "open", None, (leg,), (decision,))
    step = trace.steps(leg)[1]
    assert step == (f"2) {NODE}: DNAT to 192.168.4.10:8080  [kube-proxy (nftables): services "
                    f"-> service-X -> endpoint-Y: DNAT to 192.168.4.10:8080]  topology: {rule}")
    assert f"topology: {rule}" in trace.describe()
    assert trace.to_json()["decisions"][0]["topology"] == rule
