"""kube-proxy's topology filtering, through the rendered rules of both modes.

A table of endpoint sets (hints, readiness, this node's zone label, traffic
policies); for each row, packets are walked through the iptables-restore
text and the nft text the proxy would install, and the test asserts which
endpoints they can reach and what rule the categorisation reports (the
text `svclab trace` shows).  The expectations are written from kube-proxy's
documented rule (docs/zones.md, "kube-proxy's topology filtering"): node
hints when every ready endpoint has them and one names this node; else zone
hints when every ready endpoint has them and one names this node's zone;
else every ready endpoint; not-ready endpoints are not judged; the
terminating fallback comes after; Local traffic policy ignores hints.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from agents.proxy import (
    ModelError,
    NodeInfo,
    compute_ruleset,
    endpoint_slice_from_k8s,
    render_iptables,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_tracer import Tracer
from agents.proxy.nft_render import render_nftables
from agents.proxy.nft_tracer import NftTracer

THIS = "ip-172-31-0-11"            # this node, us-east-1a
PEER_A = "ip-172-31-0-14"          # another node in us-east-1a
NODE_B = "ip-172-31-16-12"         # us-east-1b
NODE_C = "ip-172-31-32-13"         # us-east-1c
ZONE_OF = {THIS: "us-east-1a", PEER_A: "us-east-1a", NODE_B: "us-east-1b",
           NODE_C: "us-east-1c"}
NODE_IP = "172.31.0.11"
CLUSTER_IP, PORT, NODE_PORT, TARGET = "10.96.100.10", 80, 30080, 8080
POD_HERE, CLIENT = "192.168.1.5", "203.0.113.7"
MODES = ("iptables", "nftables")


@dataclass(frozen=True)
class Ep:
    ip: str
    node: str
    zones: tuple[str, ...] = ()         # hints.forZones
    nodes: tuple[str, ...] = ()         # hints.forNodes
    ready: bool = True
    serving: bool = True
    terminating: bool = False


def zoned(ip: str, node: str, **kw) -> Ep:
    """An endpoint hinted for its own node's zone (PreferSameZone)."""
    return Ep(ip, node, zones=(ZONE_OF[node],), **kw)


def same_node(ip: str, node: str, **kw) -> Ep:
    """An endpoint with PreferSameNode's hints: its node, and its zone."""
    return Ep(ip, node, zones=(ZONE_OF[node],), nodes=(node,), **kw)


@dataclass(frozen=True)
class Row:
    endpoints: tuple[Ep, ...]
    reached: frozenset[str]             # what a pod on this node reaches via the cluster IP
    rule: str                           # the categorisation's Topology.describe()
    zone: str | None = "us-east-1a"     # this node's zone label
    etp_local: bool = False
    external: frozenset[str] | None = None   # what a client reaches via the NodePort


def ips(*addresses: str) -> frozenset[str]:
    return frozenset(addresses)


SPREAD = (zoned("192.168.1.10", THIS), zoned("192.168.4.10", PEER_A),
          zoned("192.168.2.10", NODE_B), zoned("192.168.2.11", NODE_B),
          zoned("192.168.3.10", NODE_C))
ALL_FIVE = ips(*(e.ip for e in SPREAD))

ROWS = {
    "all hinted, two for this zone": Row(
        SPREAD, ips("192.168.1.10", "192.168.4.10"),
        "zone hints: 2 of 5 endpoints for us-east-1a"),
    "one ready endpoint unhinted: cluster-wide": Row(
        SPREAD[:4] + (Ep("192.168.3.10", NODE_C),), ALL_FIVE,
        "no topology filtering: endpoint 192.168.3.10 has no zone hints"),
    "no endpoint hinted: cluster-wide": Row(
        tuple(Ep(e.ip, e.node) for e in SPREAD), ALL_FIVE,
        "no topology filtering: no endpoint has zone hints"),
    "hints, none for this zone: cluster-wide": Row(
        SPREAD[2:], ips("192.168.2.10", "192.168.2.11", "192.168.3.10"),
        "no topology filtering: no hints for zone us-east-1a"),
    "node without a zone label: cluster-wide": Row(
        SPREAD, ALL_FIVE,
        f"no topology filtering: node {THIS} has no topology.kubernetes.io/zone label",
        zone=None),
    "only terminating endpoints: the fallback ignores hints": Row(
        (zoned("192.168.1.10", THIS, ready=False, terminating=True),
         zoned("192.168.2.10", NODE_B, ready=False, terminating=True),
         zoned("192.168.3.10", NODE_C, ready=False, serving=False, terminating=True)),
        ips("192.168.1.10", "192.168.2.10"),
        "no topology filtering: no ready endpoints; 2 serving terminating endpoints "
        "used as none is ready"),
    "PreferSameNode with a local endpoint": Row(
        (same_node("192.168.1.10", THIS), same_node("192.168.4.10", PEER_A),
         same_node("192.168.2.10", NODE_B), same_node("192.168.3.10", NODE_C)),
        ips("192.168.1.10"), f"node hints: 1 of 4 endpoints for {THIS}"),
    "PreferSameNode without a local endpoint: the zone's": Row(
        (same_node("192.168.4.10", PEER_A), same_node("192.168.2.10", NODE_B),
         same_node("192.168.3.10", NODE_C)),
        ips("192.168.4.10"),
        f"zone hints: 1 of 3 endpoints for us-east-1a (node hints not used: "
        f"no hints for node {THIS})"),
    "PreferSameNode, nothing in the zone either: cluster-wide": Row(
        (same_node("192.168.2.10", NODE_B), same_node("192.168.3.10", NODE_C)),
        ips("192.168.2.10", "192.168.3.10"),
        f"no topology filtering: no hints for node {THIS}; no hints for zone us-east-1a"),
    "a not-ready unhinted endpoint is not judged": Row(
        SPREAD + (Ep("192.168.3.11", NODE_C, ready=False, serving=False),),
        ips("192.168.1.10", "192.168.4.10"),
        "zone hints: 2 of 5 endpoints for us-east-1a"),
    "a not-ready endpoint hinted for this zone does not count": Row(
        (zoned("192.168.1.10", THIS, ready=False, serving=False),) + SPREAD[2:],
        ips("192.168.2.10", "192.168.2.11", "192.168.3.10"),
        "no topology filtering: no hints for zone us-east-1a"),
    "eTP Local: external traffic keeps the local endpoint whatever its hints": Row(
        (Ep("192.168.1.10", THIS, zones=("us-east-1b",)),
         Ep("192.168.2.10", NODE_B, zones=("us-east-1a",)),
         zoned("192.168.3.10", NODE_C)),
        ips("192.168.2.10"), "zone hints: 1 of 3 endpoints for us-east-1a",
        etp_local=True, external=ips("192.168.1.10")),
    "eTP Local without a local endpoint: external traffic dropped, hints or not": Row(
        SPREAD[1:], ips("192.168.4.10"), "zone hints: 1 of 4 endpoints for us-east-1a",
        etp_local=True, external=frozenset()),
}


def objects(row: Row, *, itp_local: bool = False):
    svc = service_dict("web", "shop", cluster_ip=CLUSTER_IP,
                       type="ClusterIP" if itp_local else "NodePort",
                       ports=[{"name": "http", "port": PORT, "targetPort": TARGET,
                               **({} if itp_local else {"nodePort": NODE_PORT})}],
                       etp="Local" if row.etp_local else None,
                       itp="Local" if itp_local else None)
    eps = [endpoint(e.ip, e.node, ready=e.ready, serving=e.serving,
                    terminating=e.terminating, zone=ZONE_OF[e.node],
                    for_zones=e.zones, for_nodes=e.nodes) for e in row.endpoints]
    es = slice_dict("web", "shop", ports=[{"name": "http", "port": TARGET}], endpoints=eps)
    return [service_from_k8s(svc)], [endpoint_slice_from_k8s(es)]


def ruleset_for(row: Row, **kw):
    node = NodeInfo(THIS, (NODE_IP,), zone=row.zone)
    return compute_ruleset(*objects(row, **kw), node)


def tracer(ruleset, mode: str):
    if mode == "nftables":
        return NftTracer(render_nftables(ruleset), (NODE_IP,))
    return Tracer(render_iptables(ruleset), (NODE_IP,))


def reached(walker, src: str, dst: str, port: int) -> frozenset[str]:
    """The endpoint IPs the packet can be DNATed to (each with a share > 0,
    all shares summing to 1), or the empty set when it is dropped."""
    branches = walker.branches(src, dst, port, "TCP")
    accepted = [b for b in branches if b.verdict == "ACCEPT" and b.packet.dnat]
    if not accepted:
        assert {b.verdict for b in branches} <= {"DROP", "REJECT"}, branches
        return frozenset()
    assert sum(b.probability for b in accepted) == pytest.approx(1.0)
    assert all(b.probability > 0 for b in accepted)
    assert {b.packet.dnat.split(":")[1] for b in accepted} == {str(TARGET)}
    return frozenset(b.packet.dnat.split(":")[0] for b in accepted)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(ROWS))
def test_pods_reach_what_the_topology_rule_keeps(case, mode):
    row = ROWS[case]
    ruleset = ruleset_for(row)
    (sp,) = ruleset.service_ports
    assert sp.endpoints.topology.describe() == row.rule
    walker = tracer(ruleset, mode)
    assert reached(walker, POD_HERE, CLUSTER_IP, PORT) == row.reached
    if row.external is not None:
        assert reached(walker, CLIENT, NODE_IP, NODE_PORT) == row.external


@pytest.mark.parametrize("mode", MODES)
def test_internal_traffic_policy_local_ignores_hints(mode):
    row = Row((Ep("192.168.1.10", THIS, zones=("us-east-1b",)),
               Ep("192.168.2.10", NODE_B, zones=("us-east-1a",))), frozenset(), "")
    ruleset = ruleset_for(row, itp_local=True)
    (sp,) = ruleset.service_ports
    assert sp.endpoints.topology.describe() == (
        "topology hints not used: only node-local endpoints (traffic policy Local)")
    assert reached(tracer(ruleset, mode), POD_HERE, CLUSTER_IP, PORT) == ips("192.168.1.10")


def test_the_same_slices_give_each_zone_its_own_endpoints():
    row = ROWS["all hinted, two for this zone"]
    services, slices = objects(row)
    for node, zone, expect in ((NODE_B, "us-east-1b", {"192.168.2.10", "192.168.2.11"}),
                               (NODE_C, "us-east-1c", {"192.168.3.10"})):
        (sp,) = compute_ruleset(services, slices, NodeInfo(node, zone=zone)).service_ports
        assert {e.ip for e in sp.endpoints.cluster} == expect


def test_a_zone_label_change_changes_the_rule_set():
    services, slices = objects(ROWS["all hinted, two for this zone"])
    before = compute_ruleset(services, slices, NodeInfo(THIS, (NODE_IP,), zone="us-east-1a"))
    after = compute_ruleset(services, slices, NodeInfo(THIS, (NODE_IP,), zone="us-east-1c"))
    assert before.node != after.node            # the agent's cue for a full sync
    assert [e.ip for e in after.service_ports[0].endpoints.cluster] == ["192.168.3.10"]


def test_hints_are_parsed_from_the_slice():
    es = endpoint_slice_from_k8s(slice_dict("web", endpoints=[endpoint(
        "192.168.1.10", THIS, zone="us-east-1a", for_zones=("us-east-1a", "us-east-1a"),
        for_nodes=(THIS,))]))
    (ep,) = es.endpoints
    assert (ep.zone, ep.zone_hints, ep.node_hints) == ("us-east-1a", ("us-east-1a",), (THIS,))


@pytest.mark.parametrize("hints, field", [
    ({"forZones": [{"nam": "us-east-1a"}]}, "endpoints[0].hints.forZones[0].name"),
    ({"forNodes": "ip-172-31-0-11"}, "endpoints[0].hints.forNodes"),
    (["us-east-1a"], "endpoints[0].hints"),
])
def test_malformed_hints_are_refused_naming_the_field(hints, field):
    entry = endpoint("192.168.1.10", THIS)
    entry["hints"] = hints
    with pytest.raises(ModelError, match=field.replace("[", r"\[").replace("]", r"\]")):
        endpoint_slice_from_k8s(slice_dict("web", endpoints=[entry]))
