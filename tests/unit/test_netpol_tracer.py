"""The rendered NetworkPolicy rules, walked by the tracers, agree with the spec.

For a cluster of three namespaces on two nodes and a catalogue of policy
sets, every (source, destination, port, protocol) cell is traced through
the rules both renderers write for the nodes the packet crosses (the
source's node FORWARD for its egress, the destination's node FORWARD for
its ingress; one FORWARD pass when both pods share a node) and the tracer's
verdict must equal agents.policy.evaluate's, in iptables and nftables mode.
"""

from __future__ import annotations

import pytest

from agents.policy.compute import compute_node_rules
from agents.policy.evaluate import evaluate
from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s
from agents.policy.render_iptables import TOP, render_iptables
from agents.policy.render_nft import FAMILY_TABLE, render_nft
from agents.proxy.iptables_tracer import Tracer
from agents.proxy.nft_tracer import NftTracer
from probes.trace.rules import pod_interfaces, walk_iptables, walk_nftables

NODES = (("n1", "172.31.0.11"), ("n2", "172.31.0.12"))
NAMESPACES = (
    Namespace("frontend", (("env", "prod"), ("kubernetes.io/metadata.name", "frontend"),
                           ("team", "web"))),
    Namespace("backend", (("env", "prod"), ("kubernetes.io/metadata.name", "backend"),
                          ("team", "api"))),
    Namespace("ops", (("env", "dev"), ("kubernetes.io/metadata.name", "ops"),
                      ("team", "ops"))),
)
PODS = (
    Pod("frontend", "web-1", "192.168.1.10", "n1", (("app", "web"),), (("http", 80, "TCP"),)),
    Pod("frontend", "web-2", "192.168.2.10", "n2", (("app", "web"),), (("http", 80, "TCP"),)),
    Pod("backend", "api-1", "192.168.1.20", "n1", (("app", "api"), ("tier", "be")),
        (("http", 8080, "TCP"), ("metrics", 9090, "TCP"))),
    Pod("backend", "db-1", "192.168.2.20", "n2", (("app", "db"),), (("pg", 5432, "TCP"),)),
    Pod("ops", "tool-1", "192.168.1.30", "n1", (("app", "web"),)),
    Pod("ops", "dns-1", "192.168.2.30", "n2", (("app", "dns"),),
        (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))),
)
OUTSIDE = "203.0.113.5"
CELLS_PORTS = ((80, "TCP"), (8080, "TCP"), (9090, "TCP"), (5432, "TCP"), (53, "UDP"),
               (53, "TCP"), (1500, "TCP"), (80, "UDP"))


def pol(ns, name, selector=None, ingress=None, egress=None, types=None):
    spec = {"podSelector": {"matchLabels": selector} if selector else {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types:
        spec["policyTypes"] = types
    return policy_from_k8s({"metadata": {"namespace": ns, "name": name}, "spec": spec})


DNS_EGRESS = {"to": [{"namespaceSelector": {"matchLabels": {"team": "ops"}},
                      "podSelector": {"matchLabels": {"app": "dns"}}}],
              "ports": [{"port": 53, "protocol": "UDP"}, {"port": "dns-tcp"}]}
CATALOGUE = {
    "no policy": (),
    "default deny ingress": (pol("backend", "deny-in", ingress=[]),),
    "default deny egress, DNS allowed": (
        pol("frontend", "deny-out", types=["Egress"]),
        pol("frontend", "allow-dns", egress=[DNS_EGRESS], types=["Egress"])),
    "allow same namespace": (
        pol("backend", "same-ns", ingress=[{"from": [{"podSelector": {}}]}]),),
    "namespaceSelector": (
        pol("backend", "from-web", {"app": "api"}, ingress=[{
            "from": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}],
            "ports": [{"port": 8080}]}]),),
    "pod AND namespace in one peer": (
        pol("backend", "and", {"app": "db"}, ingress=[{"from": [{
            "namespaceSelector": {"matchLabels": {"env": "dev"}},
            "podSelector": {"matchLabels": {"app": "web"}}}]}]),),
    "pod OR namespace in two peers": (
        pol("backend", "or", {"app": "db"}, ingress=[{"from": [
            {"namespaceSelector": {"matchLabels": {"env": "dev"}}},
            {"podSelector": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["be"]}]}}]}]),),
    "ipBlock with except": (
        pol("frontend", "cidr", ingress=[{"from": [
            {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.2.0/24"]}},
            {"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 80}]}]),
        pol("ops", "egress-cidr", egress=[{"to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["192.168.1.0/24"]}}]}],
            types=["Egress"])),
    "named ports both ways": (
        pol("backend", "named-in", {"app": "api"}, ingress=[{"ports": [{"port": "http"}]}]),
        pol("frontend", "named-out", egress=[
            {"ports": [{"port": "http"}]},
            {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": "http"}]},
            {"to": [{"ipBlock": {"cidr": "192.168.2.0/24", "except": ["192.168.2.10/32"]}}],
             "ports": [{"port": "pg"}, {"port": "dns", "protocol": "UDP"}]}],
            types=["Egress"])),
    "endPort ranges": (
        pol("ops", "range-in", {"app": "web"}, ingress=[{
            "ports": [{"port": 1000, "endPort": 2000}, {"port": 53, "protocol": "UDP"}]}]),
        pol("ops", "range-out", egress=[{"ports": [{"port": 1400, "endPort": 1600},
                                                   {"port": 5000, "endPort": 5432}]}])),
    "multiple policies union, both directions": (
        pol("backend", "db-from-api", {"app": "db"}, ingress=[{
            "from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
            "ports": [{"port": 5432}]}]),
        pol("backend", "db-from-ops", {"app": "db"}, ingress=[{
            "from": [{"namespaceSelector": {"matchExpressions": [
                {"key": "team", "operator": "NotIn", "values": ["web", "api"]}]}}]}]),
        pol("backend", "api-out", {"app": "api"}, egress=[{
            "to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
            "ports": [{"port": "pg"}]}, DNS_EGRESS], types=["Egress"]),
        pol("backend", "db-no-egress", {"app": "db"}, types=["Egress"])),
    "deny all plus allow all": (
        pol("frontend", "deny", ingress=[], egress=[], types=["Ingress", "Egress"]),
        pol("frontend", "allow", ingress=[{}], egress=[{}], types=["Ingress", "Egress"])),
    "exists / does not exist": (
        pol("backend", "exists", ingress=[{"from": [{
            "namespaceSelector": {},
            "podSelector": {"matchExpressions": [
                {"key": "tier", "operator": "DoesNotExist"},
                {"key": "app", "operator": "Exists"}]}}]}]),),
}
ALLOW_EVERYTHING = ("no policy", "deny all plus allow all")
ENDPOINTS = (*PODS, "172.31.0.11", "172.31.0.12", OUTSIDE)


def node_of(end):
    if isinstance(end, Pod):
        return end.node
    return {ip: name for name, ip in NODES}.get(end)


def ip_of(end):
    return end.ip if isinstance(end, Pod) else end


class Nodes:
    """Each node's tracer over the rules rendered for it, in one mode."""

    def __init__(self, cluster: Cluster, mode: str):
        self.tracers = {}
        for node, node_ip in NODES:
            rules = compute_node_rules(cluster, node)
            ifaces = {p.ip: p.iface for p in cluster.pods if p.node == node}
            if mode == "iptables":
                text = render_iptables(rules).replace(
                    "COMMIT", f"-I FORWARD 1 -j {TOP}\nCOMMIT")
                self.tracers[node] = Tracer(text, (node_ip,), ifaces)
            else:
                self.tracers[node] = NftTracer("", (node_ip,), interfaces=ifaces,
                                               tables={FAMILY_TABLE: render_nft(rules)})

    def allowed(self, src, dst, port, proto) -> bool:
        passes = []
        if isinstance(src, Pod):
            passes.append((src.node, False))
        elif node_of(src):
            passes.append((node_of(src), True))            # the node's own packet
        if isinstance(dst, Pod) and dst.node not in [n for n, _ in passes]:
            passes.append((dst.node, False))
        verdicts = []
        for node, local in passes:
            [branch] = self.tracers[node].branches(ip_of(src), ip_of(dst), port, proto,
                                                   locally_originated=local)
            verdicts.append(branch.verdict)
        assert set(verdicts) <= {"DROP", "NO-MATCH"}
        return "DROP" not in verdicts


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
@pytest.mark.parametrize("name", list(CATALOGUE))
def test_tracer_agrees_with_evaluator_on_every_cell(name, mode):
    cluster = Cluster(PODS, NAMESPACES, CATALOGUE[name], NODES)
    nodes = Nodes(cluster, mode)
    wrong = []
    denied = 0
    for src in ENDPOINTS:
        for dst in ENDPOINTS:
            if src is dst or not (isinstance(src, Pod) or isinstance(dst, Pod)):
                continue
            for port, proto in CELLS_PORTS:
                expected = evaluate(cluster, src, dst, port, proto)
                denied += not expected.allowed
                if nodes.allowed(src, dst, port, proto) != expected.allowed:
                    wrong.append((ip_of(src), ip_of(dst), port, proto, expected))
    assert wrong == []
    assert (denied == 0) == (name in ALLOW_EVERYTHING)      # the cells exercise drops


def test_a_drop_names_the_pod_and_an_allow_names_the_policy_rule():
    cluster = Cluster(PODS, NAMESPACES, CATALOGUE["namespaceSelector"], NODES)
    for mode in ("iptables", "nftables"):
        tracer = Nodes(cluster, mode).tracers["n1"]
        [ok] = tracer.branches("192.168.2.10", "192.168.1.20", 8080)
        assert any("backend/from-web ingress rule 0" in r for r in ok.rules())
        [dropped] = tracer.branches("192.168.1.30", "192.168.1.20", 8080)
        assert dropped.verdict == "DROP"
        assert "drop: no policy allowed it (ingress of backend/api-1)" in dropped.rules()[-1]
        assert "cali-tw-" + PODS[2].iface in dropped.chains()


# --- `svclab trace` over live-format text (probes/trace/rules.py) -------------------
# Captured from the kernel (nft list table / iptables-save in a throwaway netns)
# after applying the renderers' output for policy a/web: pods a/p1 (app=web,
# 192.168.1.2, selected) and a/p2 (192.168.1.3) on this node, b/q (192.168.2.2)
# elsewhere; ingress from every namespace on TCP 80 and all UDP, egress UDP 53.
LIVE_NFT = """\
table ip svclab-netpol {
    chain cali-pi-11950f84eb84 {
        ip saddr { 192.168.1.2/31, 192.168.2.2 } tcp dport 80 meta mark set meta mark | 0x00010000 comment "a/web ingress rule 0"
        ip saddr { 192.168.1.2/31, 192.168.2.2 } meta l4proto udp meta mark set meta mark | 0x00010000 comment "a/web ingress rule 0"
        meta mark & 0x00010000 == 0x00010000 return
    }

    chain cali-po-c4cc342ac310 {
        udp dport 53 meta mark set meta mark | 0x00010000 comment "a/web egress rule 0"
        meta mark & 0x00010000 == 0x00010000 return
    }

    chain cali-fw-cali4bacc8283e8 {
        meta mark set meta mark & 0xfffeffff
        jump cali-po-c4cc342ac310 comment "policy a/web"
        meta mark & 0x00010000 == 0x00010000 return comment "allowed by a/web"
        drop comment "drop: no policy allowed it (egress of a/p1)"
    }

    chain cali-tw-cali4bacc8283e8 {
        meta mark set meta mark & 0xfffeffff
        jump cali-pi-11950f84eb84 comment "policy a/web"
        meta mark & 0x00010000 == 0x00010000 return comment "allowed by a/web"
        drop comment "drop: no policy allowed it (ingress of a/p1)"
    }

    chain cali-from-wl-dispatch {
        iifname "cali4bacc8283e8" goto cali-fw-cali4bacc8283e8
    }

    chain cali-to-wl-dispatch {
        oifname "cali4bacc8283e8" goto cali-tw-cali4bacc8283e8
    }

    chain cali-FORWARD {
        ct state established,related accept comment "svclab netpol: established"
        iifname "cali*" jump cali-from-wl-dispatch
        oifname "cali*" jump cali-to-wl-dispatch
    }

    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        jump cali-FORWARD
    }
}
"""  # noqa: E501  (nft list output as written)
LIVE_IPTABLES = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:cali-FORWARD - [0:0]
:cali-from-wl-dispatch - [0:0]
:cali-fw-cali4bacc8283e8 - [0:0]
:cali-pi-11950f84eb84 - [0:0]
:cali-po-c4cc342ac310 - [0:0]
:cali-s-9c9f877683c8 - [0:0]
:cali-to-wl-dispatch - [0:0]
:cali-tw-cali4bacc8283e8 - [0:0]
-A FORWARD -j cali-FORWARD
-A cali-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "svclab netpol: established" -j ACCEPT
-A cali-FORWARD -i cali+ -j cali-from-wl-dispatch
-A cali-FORWARD -o cali+ -j cali-to-wl-dispatch
-A cali-from-wl-dispatch -i cali4bacc8283e8 -g cali-fw-cali4bacc8283e8
-A cali-fw-cali4bacc8283e8 -j MARK --set-xmark 0x0/0x10000
-A cali-fw-cali4bacc8283e8 -m comment --comment "policy a/web" -j cali-po-c4cc342ac310
-A cali-fw-cali4bacc8283e8 -m mark --mark 0x10000/0x10000 -m comment --comment "allowed by a/web" -j RETURN
-A cali-fw-cali4bacc8283e8 -m comment --comment "drop: no policy allowed it (egress of a/p1)" -j DROP
-A cali-pi-11950f84eb84 -m comment --comment "a/web ingress"
-A cali-pi-11950f84eb84 -j cali-s-9c9f877683c8
-A cali-pi-11950f84eb84 -p tcp -m mark --mark 0x20000/0x20000 -m tcp --dport 80 -m comment --comment "a/web ingress rule 0" -j MARK --set-xmark 0x10000/0x10000
-A cali-pi-11950f84eb84 -p udp -m mark --mark 0x20000/0x20000 -m comment --comment "a/web ingress rule 0" -j MARK --set-xmark 0x10000/0x10000
-A cali-pi-11950f84eb84 -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-po-c4cc342ac310 -m comment --comment "a/web egress"
-A cali-po-c4cc342ac310 -p udp -m udp --dport 53 -m comment --comment "a/web egress rule 0" -j MARK --set-xmark 0x10000/0x10000
-A cali-po-c4cc342ac310 -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-s-9c9f877683c8 -j MARK --set-xmark 0x0/0x20000
-A cali-s-9c9f877683c8 -s 192.168.1.2/31 -j MARK --set-xmark 0x20000/0x20000
-A cali-s-9c9f877683c8 -s 192.168.2.2/32 -j MARK --set-xmark 0x20000/0x20000
-A cali-to-wl-dispatch -o cali4bacc8283e8 -g cali-tw-cali4bacc8283e8
-A cali-tw-cali4bacc8283e8 -j MARK --set-xmark 0x0/0x10000
-A cali-tw-cali4bacc8283e8 -m comment --comment "policy a/web" -j cali-pi-11950f84eb84
-A cali-tw-cali4bacc8283e8 -m mark --mark 0x10000/0x10000 -m comment --comment "allowed by a/web" -j RETURN
-A cali-tw-cali4bacc8283e8 -m comment --comment "drop: no policy allowed it (ingress of a/p1)" -j DROP
COMMIT
"""  # noqa: E501  (iptables-save lines as written)
ROUTES = """default via 172.31.0.1 dev eth0
172.31.0.0/20 dev eth0 proto kernel scope link src 172.31.0.11
192.168.1.2 dev cali4bacc8283e8 scope link
192.168.1.3 dev cali0123456789a scope link
"""
EMPTY_KUBE_PROXY = "table ip kube-proxy {\n}\n"


def live_walks(src, dst, port, proto="tcp"):
    interfaces = pod_interfaces(ROUTES)
    return {
        "iptables": walk_iptables(LIVE_IPTABLES, ("172.31.0.11",), src, dst, port, proto,
                                  interfaces=interfaces),
        "nftables": walk_nftables(EMPTY_KUBE_PROXY, ("172.31.0.11",), src, dst, port, proto,
                                  interfaces=interfaces, policy_listing=LIVE_NFT),
    }


def test_pod_interfaces_reads_the_pod_routes():
    assert pod_interfaces(ROUTES) == {"192.168.1.2": "cali4bacc8283e8",
                                      "192.168.1.3": "cali0123456789a"}


@pytest.mark.parametrize("src,dst,port,proto,verdict,policy", [
    ("192.168.2.2", "192.168.1.2", 80, "tcp", "NO-MATCH",
     ("ingress: allowed by a/web ingress rule 0 (cali-pi-11950f84eb84)",)),
    ("192.168.2.2", "192.168.1.2", 5353, "udp", "NO-MATCH",
     ("ingress: allowed by a/web ingress rule 0 (cali-pi-11950f84eb84)",)),
    ("203.0.113.5", "192.168.1.2", 80, "tcp", "DROP",
     ("drop: no policy allowed it (ingress of a/p1) [policies: a/web] "
      "(cali-tw-cali4bacc8283e8)",)),
    ("192.168.1.2", "203.0.113.5", 80, "tcp", "DROP",
     ("drop: no policy allowed it (egress of a/p1) [policies: a/web] "
      "(cali-fw-cali4bacc8283e8)",)),
    ("192.168.1.2", "192.168.1.3", 53, "udp", "NO-MATCH",
     ("egress: allowed by a/web egress rule 0 (cali-po-c4cc342ac310)",)),
    ("192.168.1.3", "192.168.2.2", 80, "tcp", "NO-MATCH", ()),      # not isolated
])
def test_trace_names_the_policy_rule_that_allowed_or_the_chain_that_dropped(
        src, dst, port, proto, verdict, policy):
    for mode, branches in live_walks(src, dst, port, proto).items():
        [branch] = branches
        assert (mode, branch.verdict, branch.policy) == (mode, verdict, policy)
