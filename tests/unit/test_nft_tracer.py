"""The nft tracer: refuses what it does not understand, and traces what it does.

It must behave like nft where it matters to the tests built on it: unknown
statements and commands raise, rules to missing chains raise, deleting
elements that are not there or chains that are still in use raises.
"""

from __future__ import annotations

import pytest

from agents.proxy import (
    NodeInfo,
    ProxyOptions,
    TracerError,
    compute_ruleset,
    endpoint_slice_from_k8s,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.nft_render import render_nftables
from agents.proxy.nft_table import apply_commands
from agents.proxy.nft_tracer import NftTracer

NODE = NodeInfo("n1", ("172.31.0.11",), "192.168.0.0/16", "10.96.0.0/12")
HEAD = ('add table ip kube-proxy\n'
        'add chain ip kube-proxy c\n')


def rendered(n_endpoints=3, affinity=None, large_at=1000, **svc):
    service = service_dict("web", "shop", cluster_ip="10.96.0.20",
                           ports=[{"name": "http", "port": 80}],
                           affinity_timeout=affinity, **svc)
    eps = [endpoint(f"192.168.1.{10 + i}", "n1") for i in range(n_endpoints)]
    es = slice_dict("web", "shop", ports=[{"name": "http", "port": 80}],
                    endpoints=eps)
    rs = compute_ruleset([service_from_k8s(service)],
                         [endpoint_slice_from_k8s(es)], NODE,
                         ProxyOptions(large_cluster_endpoints=large_at))
    return render_nftables(rs)


@pytest.mark.parametrize("rule", [
    "counter", "log prefix \"x\"", "ip saddr 1.2.3.4 counter accept",
    "tcp dport 80 accept", "ct state established accept extra",
    "fib daddr type unicast accept", "numgen random mod 2 5 accept"])
def test_unknown_statements_raise(rule):
    with pytest.raises(TracerError):
        NftTracer(HEAD + f"add rule ip kube-proxy c {rule}\n")


@pytest.mark.parametrize("text", [
    "add rule ip kube-proxy missing accept\n",
    "add rule ip kube-proxy c goto missing\n",
    "delete element ip kube-proxy m { 1.2.3.4 . tcp . 80 }\n",
    "add element ip kube-proxy nosuch { 1.2.3.4 }\n",
    "insert rule ip kube-proxy c accept\n",
    "add rule ip other c accept\n",
    "delete chain ip kube-proxy c\nadd chain ip kube-proxy d\n"
    "add rule ip kube-proxy d jump d\ndelete chain ip kube-proxy d\n",
])
def test_what_nft_would_refuse_raises(text):
    base = HEAD + ("add map ip kube-proxy m { type ipv4_addr . inet_proto . "
                   "inet_service : verdict ; }\n")
    with pytest.raises(TracerError):
        apply_commands(base + text)


def test_chain_referenced_by_a_map_element_cannot_be_deleted():
    text = HEAD + ("add map ip kube-proxy m { type inet_proto . inet_service"
                   " : verdict ; }\n"
                   "add element ip kube-proxy m { tcp . 80 : goto c }\n")
    table = apply_commands(text)
    with pytest.raises(TracerError):
        apply_commands("delete chain ip kube-proxy c\n", table)
    apply_commands("delete element ip kube-proxy m { tcp . 80 }\n"
                   "delete chain ip kube-proxy c\n", table)
    assert "c" not in table.chains


@pytest.mark.parametrize("large_at", [1000, 1])
def test_spreads_uniformly_in_both_dispatch_forms(large_at):
    tracer = NftTracer(rendered(3, large_at=large_at), NODE.node_ips)
    outcomes = tracer.trace("192.168.2.5", "10.96.0.20", 80)
    assert {o.dnat: o.probability for o in outcomes} == pytest.approx(
        {f"192.168.1.{i}:80": 1 / 3 for i in (10, 11, 12)})
    assert all(o.verdict == "ACCEPT" and not o.masquerade for o in outcomes)


def test_affinity_sticks_and_is_recorded():
    text = rendered(3, affinity=300)
    tracer = NftTracer(text, NODE.node_ips)
    sets = sorted(line.split()[4] for line in text.splitlines()
                  if line.startswith("add set ip kube-proxy affinity-"))
    assert len(sets) == 3 and all(" timeout 300s " in line for line in
                                  text.splitlines() if "add set" in line
                                  and "affinity-" in line)
    fresh = tracer.trace("192.168.2.5", "10.96.0.20", 80)
    assert {o.recent_set for o in fresh} == {(s,) for s in sets}
    sticky = tracer.trace("192.168.2.5", "10.96.0.20", 80,
                          recent=frozenset({sets[1]}))
    assert len(sticky) == 1 and sticky[0].probability == pytest.approx(1)
    assert sticky[0].recent_set == (sets[1],)
    assert sets[1].endswith(sticky[0].dnat.replace(":", "/"))


def test_node_traffic_to_cluster_ip_is_masqueraded():
    tracer = NftTracer(rendered(1), NODE.node_ips)
    [out] = tracer.trace("172.31.0.11", "10.96.0.20", 80,
                         locally_originated=True)
    assert out.verdict == "ACCEPT" and out.masquerade and out.masquerade_mark


def test_health_check_node_port_needs_no_rule_in_nftables_mode():
    """nft has no default-drop chain of ours: the port is simply not
    matched (iptables mode adds an ACCEPT in KUBE-NODEPORTS)."""
    text = rendered(1, type="LoadBalancer", etp="Local",
                    health_check_node_port=32000,
                    ingress=[{"ip": "203.0.113.9"}])
    assert "32000" not in text
    [out] = NftTracer(text, NODE.node_ips).trace("203.0.113.7",
                                                 "172.31.0.11", 32000)
    assert out.verdict == "NO-MATCH"


def test_partial_transaction_can_be_applied_on_top():
    tracer = NftTracer(rendered(2), NODE.node_ips)
    tracer.apply("flush chain ip kube-proxy services\n")
    [out] = tracer.trace("192.168.2.5", "10.96.0.20", 80)
    # no dispatch any more: the live ClusterIP rejects the connection
    assert out.verdict == "REJECT"
