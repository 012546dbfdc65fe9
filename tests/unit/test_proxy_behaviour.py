"""The Service behaviour table, checked by tracing the rendered rules of both modes.

sources x destinations x policies x endpoint sets, each cell's expectation
derived from docs/service-semantics.md by ``expected`` below
(written from the document, not from the renderer), plus literal spot
checks that pin the most important cells by hand.  Every cell runs in both
proxy modes: over the iptables-restore text (agents.proxy.iptables_tracer)
and over the nft text (agents.proxy.nft_tracer).  Where kube-proxy's
nftables mode differs on purpose, ``expected`` says so for mode "nftables".
A failing cell prints the chain path of every branch the packet took.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import pytest

from agents.proxy import (
    NodeInfo,
    ProxyOptions,
    compute_ruleset,
    endpoint_slice_from_k8s,
    render_iptables,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_tracer import Tracer
from agents.proxy.nft_render import render_nftables
from agents.proxy.nft_tracer import NftTracer
from agents.proxy.trace_core import PacketTracer

NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",), "192.168.0.0/16",
                "10.96.0.0/12")
OTHER_NODE = "ip-172-31-0-12"
CLUSTER_IP, PORT, NODE_PORT, TARGET = "10.96.100.10", 80, 30080, 8080
EXTERNAL_IP, LB_IP = "203.0.113.200", "203.0.113.100"
SOURCE_RANGES = ("203.0.113.0/24", "172.31.0.0/20")


@dataclass(frozen=True)
class Ep:
    ip: str
    local: bool
    ready: bool = True
    serving: bool = True
    terminating: bool = False


ENDPOINT_SETS = {
    "none": (),
    "local": (Ep("192.168.1.10", True),),
    "remote": (Ep("192.168.2.20", False),),
    "both": (Ep("192.168.1.10", True), Ep("192.168.2.20", False)),
    # serving+terminating on both nodes, plus one that is neither ready
    # nor serving (must never be chosen)
    "terminating": (Ep("192.168.1.11", True, False, True, True),
                    Ep("192.168.2.21", False, False, True, True),
                    Ep("192.168.2.22", False, False, False, True)),
}
POLICIES = ("cluster", "etp-local", "itp-local")
# name -> (source ip, locally originated)
SOURCES = {
    "pod-this-node": ("192.168.1.5", False),
    "pod-other-node": ("192.168.2.5", False),
    "node": ("172.31.0.11", True),
    "localhost": ("127.0.0.1", True),
    "external": ("203.0.113.7", False),
    "blocked": ("192.0.2.9", False),
}
DESTINATIONS = {
    "clusterip": (CLUSTER_IP, PORT),
    "nodeport": ("172.31.0.11", NODE_PORT),
    "externalip": (EXTERNAL_IP, PORT),
    "lb": (LB_IP, PORT),
}
POD_SOURCES = {"pod-this-node", "pod-other-node"}
NODE_SOURCES = {"node", "localhost"}
ALLOWED_BY_SOURCE_RANGES = {"external", "node", "localhost"}
MODES = ("iptables", "nftables")


def make_objects(policy: str, endpoint_set: str):
    svc = service_dict(
        "web", "shop", cluster_ip=CLUSTER_IP, type="LoadBalancer",
        ports=[{"name": "http", "port": PORT, "targetPort": "http",
                "nodePort": NODE_PORT}],
        external_ips=[EXTERNAL_IP],
        etp="Local" if policy == "etp-local" else "Cluster",
        itp="Local" if policy == "itp-local" else "Cluster",
        health_check_node_port=32000 if policy == "etp-local" else None,
        source_ranges=SOURCE_RANGES,
        ingress=[{"ip": LB_IP, "ipMode": "VIP"}])
    eps = [endpoint(e.ip, NODE.name if e.local else OTHER_NODE,
                    ready=e.ready, serving=e.serving,
                    terminating=e.terminating)
           for e in ENDPOINT_SETS[endpoint_set]]
    es = slice_dict("web", "shop", ports=[{"name": "http", "port": TARGET}],
                    endpoints=eps)
    return [service_from_k8s(svc)], [endpoint_slice_from_k8s(es)]


@functools.cache
def tracer_for(policy: str, endpoint_set: str,
               localhost_nodeports: bool = False, mode: str = "iptables"):
    services, slices = make_objects(policy, endpoint_set)
    ruleset = compute_ruleset(services, slices, NODE,
                              ProxyOptions(localhost_nodeports=localhost_nodeports))
    if mode == "nftables":
        return NftTracer(render_nftables(ruleset), NODE.node_ips)
    return Tracer(render_iptables(ruleset), NODE.node_ips)


@dataclass(frozen=True)
class Expect:
    verdict: str
    targets: frozenset[str] = frozenset()
    masquerade: bool = False


def accept(eps, masquerade: bool) -> Expect:
    return Expect("ACCEPT", frozenset(f"{e.ip}:{TARGET}" for e in eps),
                  masquerade)


def expected(source: str, dest: str, policy: str, endpoint_set: str,
             localhost_nodeports: bool = False,
             mode: str = "iptables") -> Expect:
    """What service-semantics.md says happens (see the module docstring)."""
    nft = mode == "nftables"
    if nft and source == "localhost":
        # nftables mode: NodePorts only on the node's IPs (nodeport-ips),
        # never on 127/8 -- kube-proxy has no localhost NodePorts there.
        return Expect("NO-MATCH")
    eps = ENDPOINT_SETS[endpoint_set]
    # Ready endpoints, else serving+terminating ones; separately for local.
    cluster = [e for e in eps if e.ready] or \
        [e for e in eps if e.serving and e.terminating]
    local = [e for e in eps if e.local and e.ready] or \
        [e for e in eps if e.local and e.serving and e.terminating]
    if not cluster:
        # No endpoints: REJECT.  kube-proxy's filter rules for external IPs
        # and LB IPs hang off INPUT/FORWARD only, so the node's own
        # connections to those (non-local) addresses are left alone.
        # nftables mode differs on purpose: loadBalancerSourceRanges apply
        # even without endpoints (DROP before REJECT), and the no-endpoint
        # check also runs on the output hook (the node is REJECTed too).
        if nft and dest == "lb" and source not in ALLOWED_BY_SOURCE_RANGES:
            return Expect("DROP")
        if source in NODE_SOURCES and dest in ("externalip", "lb"):
            return Expect("REJECT" if nft else "NO-MATCH")
        return Expect("REJECT")
    if dest == "clusterip":
        chosen = local if policy == "itp-local" else cluster
        if not chosen:
            return Expect("DROP")  # iTP Local: only local ones are missing
        # Off-cluster sources (the node, clients) are masqueraded.
        return accept(chosen, masquerade=source not in POD_SOURCES)
    # External entries: NodePort, externalIP, LB IP.
    if dest == "lb" and source not in ALLOWED_BY_SOURCE_RANGES:
        return Expect("DROP")  # loadBalancerSourceRanges, pods included
    if source == "localhost" and not localhost_nodeports:
        # NodePorts are not served on 127/8 by default.
        if policy == "etp-local" and not local:
            return Expect("DROP")
        return Expect("NO-MATCH")
    if policy == "etp-local":
        if source in POD_SOURCES:
            return accept(cluster, masquerade=False)   # short-circuit
        if source in NODE_SOURCES:
            return accept(cluster, masquerade=True)    # node-originated
        if not local:
            return Expect("DROP")
        return accept(local, masquerade=False)         # client IP kept
    return accept(cluster, masquerade=True)            # Cluster: always SNAT


def packet(source: str, dest: str) -> tuple[str, str, int, bool]:
    """(src, dst, port, locally originated) of a cell's first packet."""
    src, local_origin = SOURCES[source]
    dst, port = DESTINATIONS[dest]
    if source == "localhost" and dest == "nodeport":
        dst = "127.0.0.1"
    return src, dst, port, local_origin


def paths(tracer: PacketTracer, source: str, dest: str) -> str:
    """Every branch of the cell's packet with the chains it went through
    (the message of a failing expectation)."""
    src, dst, port, local_origin = packet(source, dest)
    branches = tracer.branches(src, dst, port, "TCP", locally_originated=local_origin)
    return "\n".join([f"{source} -> {dest} ({src} -> {dst}:{port}) took:"] + [
        f"  p={b.probability:.2f} {b.verdict} dnat={b.packet.dnat}"
        f" masquerade={b.packet.masquerade}: {b.describe()}" for b in branches])


def observe(tracer: PacketTracer, source: str, dest: str) -> tuple[Expect, dict]:
    src, dst, port, local_origin = packet(source, dest)
    outcomes = tracer.trace(src, dst, port, "TCP",
                            locally_originated=local_origin)
    assert sum(o.probability for o in outcomes) == pytest.approx(1.0)
    verdicts = {o.verdict for o in outcomes}
    assert len(verdicts) == 1, paths(tracer, source, dest)
    masq = {o.masquerade for o in outcomes}
    assert len(masq) == 1, paths(tracer, source, dest)
    for o in outcomes:
        assert o.masquerade == o.masquerade_mark, f"{o}\n{paths(tracer, source, dest)}"
    shares = {o.dnat: o.probability for o in outcomes if o.dnat}
    return Expect(verdicts.pop(), frozenset(shares), masq.pop()), shares


CELLS = [
    (s, d, p, e)
    for s, d, p, e in itertools.product(SOURCES, DESTINATIONS, POLICIES,
                                        ENDPOINT_SETS)
    # 127.0.0.1 is never chosen as source address towards other addresses.
    if not (s == "localhost" and d != "nodeport")
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("source,dest,policy,endpoint_set", CELLS,
                         ids=["-".join(c) for c in CELLS])
def test_behaviour_table(source, dest, policy, endpoint_set, mode):
    tracer = tracer_for(policy, endpoint_set, mode=mode)
    got, shares = observe(tracer, source, dest)
    want = expected(source, dest, policy, endpoint_set, mode=mode)
    assert got == want, paths(tracer, source, dest)
    for target in want.targets:           # uniform spreading
        assert shares[target] == pytest.approx(1 / len(want.targets)), \
            paths(tracer, source, dest)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy,endpoint_set",
                         list(itertools.product(POLICIES, ENDPOINT_SETS)))
def test_localhost_nodeports_enabled(policy, endpoint_set, mode):
    tracer = tracer_for(policy, endpoint_set, localhost_nodeports=True,
                        mode=mode)
    got, _ = observe(tracer, "localhost", "nodeport")
    assert got == expected("localhost", "nodeport", policy, endpoint_set,
                           localhost_nodeports=True, mode=mode), \
        paths(tracer, "localhost", "nodeport")


L, R = f"192.168.1.10:{TARGET}", f"192.168.2.20:{TARGET}"
SPOT_CHECKS = [
    # (source, dest, policy, endpoints) -> literal expectation
    (("pod-this-node", "clusterip", "cluster", "both"),
     Expect("ACCEPT", frozenset({L, R}), False)),
    (("node", "clusterip", "cluster", "both"),
     Expect("ACCEPT", frozenset({L, R}), True)),
    (("external", "clusterip", "cluster", "remote"),
     Expect("ACCEPT", frozenset({R}), True)),
    (("pod-this-node", "clusterip", "itp-local", "remote"), Expect("DROP")),
    (("pod-this-node", "clusterip", "itp-local", "both"),
     Expect("ACCEPT", frozenset({L}), False)),
    (("pod-other-node", "clusterip", "cluster", "none"), Expect("REJECT")),
    (("external", "nodeport", "cluster", "local"),
     Expect("ACCEPT", frozenset({L}), True)),
    (("external", "nodeport", "etp-local", "both"),
     Expect("ACCEPT", frozenset({L}), False)),
    (("external", "nodeport", "etp-local", "remote"), Expect("DROP")),
    (("pod-other-node", "nodeport", "etp-local", "remote"),
     Expect("ACCEPT", frozenset({R}), False)),
    (("node", "externalip", "etp-local", "remote"),
     Expect("ACCEPT", frozenset({R}), True)),
    (("external", "externalip", "cluster", "none"), Expect("REJECT")),
    (("node", "lb", "cluster", "none"), Expect("NO-MATCH")),
    (("blocked", "lb", "cluster", "both"), Expect("DROP")),
    (("pod-this-node", "lb", "cluster", "both"), Expect("DROP")),
    (("blocked", "nodeport", "cluster", "both"),
     Expect("ACCEPT", frozenset({L, R}), True)),
    (("blocked", "externalip", "etp-local", "local"),
     Expect("ACCEPT", frozenset({L}), False)),
    (("external", "lb", "etp-local", "terminating"),
     Expect("ACCEPT", frozenset({f"192.168.1.11:{TARGET}"}), False)),
    (("pod-this-node", "clusterip", "cluster", "terminating"),
     Expect("ACCEPT", frozenset({f"192.168.1.11:{TARGET}",
                                 f"192.168.2.21:{TARGET}"}), False)),
    (("localhost", "nodeport", "cluster", "both"), Expect("NO-MATCH")),
]


# Cells where nftables mode differs on purpose (see ``expected``).
NFT_SPOT_CHECKS = {
    ("node", "lb", "cluster", "none"): Expect("REJECT"),
    ("blocked", "lb", "cluster", "none"): Expect("DROP"),
    ("pod-this-node", "lb", "cluster", "none"): Expect("DROP"),
    ("localhost", "nodeport", "cluster", "none"): Expect("NO-MATCH"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell,want", SPOT_CHECKS + [
    (cell, None) for cell in NFT_SPOT_CHECKS],
    ids=["-".join(c) for c, _ in SPOT_CHECKS] + [
        "nft-differs-" + "-".join(c) for c in NFT_SPOT_CHECKS])
def test_spot_checks(cell, want, mode):
    source, dest, policy, endpoint_set = cell
    if want is None or (mode == "nftables" and cell in NFT_SPOT_CHECKS):
        want = NFT_SPOT_CHECKS[cell] if mode == "nftables" else \
            expected(*cell)
    tracer = tracer_for(policy, endpoint_set, mode=mode)
    got, _ = observe(tracer, source, dest)
    assert got == want, paths(tracer, source, dest)
    assert expected(*cell, mode=mode) == want


@pytest.mark.parametrize("mode", MODES)
def test_hairpin_to_itself_is_masqueraded(mode):
    tracer = tracer_for("cluster", "both", mode=mode)
    outcomes = tracer.trace("192.168.1.10", CLUSTER_IP, PORT)
    by_target = {o.dnat: o for o in outcomes}
    assert by_target[L].masquerade is True        # back to itself: SNAT
    assert by_target[R].masquerade is False       # to the other pod: not


def test_health_check_port_accepted_only_under_local_policy():
    local = tracer_for("etp-local", "remote").trace("203.0.113.7",
                                                    "172.31.0.11", 32000)
    assert [o.verdict for o in local] == ["ACCEPT"]
    assert local[0].dnat is None
    cluster = tracer_for("cluster", "remote").trace("203.0.113.7",
                                                    "172.31.0.11", 32000)
    assert [o.verdict for o in cluster] == ["NO-MATCH"]


def test_other_port_or_protocol_on_cluster_ip_is_not_matched():
    tracer = tracer_for("cluster", "both")
    assert [o.verdict for o in tracer.trace("192.168.1.5", CLUSTER_IP, 81)] \
        == ["NO-MATCH"]
    assert [o.verdict for o in tracer.trace("192.168.1.5", CLUSTER_IP, PORT,
                                            "UDP")] == ["NO-MATCH"]


def test_nftables_rejects_wrong_port_and_drops_unallocated_service_ips():
    """kube-proxy's nftables mode on purpose (iptables mode: NO-MATCH)."""
    tracer = tracer_for("cluster", "both", mode="nftables")
    for dport, proto in ((81, "TCP"), (PORT, "UDP")):   # live ClusterIP
        assert [o.verdict for o in tracer.trace("192.168.1.5", CLUSTER_IP,
                                                dport, proto)] == ["REJECT"]
    # An address in the service CIDR (10.96.0.0/12) that no service has.
    assert [o.verdict for o in tracer.trace("192.168.1.5", "10.96.200.1",
                                            PORT)] == ["DROP"]
    assert [o.verdict for o in tracer.trace("172.31.0.11", "10.96.200.1",
                                            PORT, locally_originated=True)] \
        == ["DROP"]
    # Outside the service CIDR nothing of ours matches.
    assert [o.verdict for o in tracer.trace("192.168.1.5", "10.200.0.1",
                                            PORT)] == ["NO-MATCH"]
