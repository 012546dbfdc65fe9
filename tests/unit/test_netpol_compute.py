"""Per-node NetworkPolicy rules as data, and how the renderers write them."""

from __future__ import annotations

from agents.policy.compute import AllowRule, compute_node_rules
from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s
from agents.policy.render_iptables import render_iptables
from agents.policy.render_nft import render_nft
from agents.proxy.nft_table import apply_commands

NODES = (("n1", "172.31.0.11"), ("n2", "172.31.0.12"))
WEB1 = Pod("shop", "web-1", "192.168.1.10", "n1", (("app", "web"),), (("http", 8080, "TCP"),))
WEB2 = Pod("shop", "web-2", "192.168.1.11", "n1", (("app", "web"),), (("http", 8081, "TCP"),))
DB = Pod("shop", "db", "192.168.2.10", "n2", (("app", "db"),), (("pg", 5432, "TCP"),))
CLI = Pod("tools", "cli", "192.168.1.20", "n1", (("app", "cli"),))
OTHER = Pod("tools", "x", "192.168.2.20", "n2", (("app", "x"),), (("pg", 6432, "TCP"),))
PODS = (WEB1, WEB2, DB, CLI, OTHER)
NAMESPACES = (Namespace("shop", (("team", "shop"),)), Namespace("tools", (("team", "t"),)))


def pol(name, spec, ns="shop"):
    return policy_from_k8s({"metadata": {"namespace": ns, "name": name}, "spec": spec})


WEB_IN = pol("web-in", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
    {"from": [{"namespaceSelector": {"matchLabels": {"team": "t"}}}],
     "ports": [{"port": 80}, {"port": 81}, {"port": 1000, "endPort": 2000},
               {"port": 53, "protocol": "UDP"}]},
    {"ports": [{"port": "http"}]},
    {"from": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.128/25"]}}]},
    {"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}]}]})
WEB_OUT = pol("web-out", {"podSelector": {"matchLabels": {"app": "web"}},
                          "policyTypes": ["Egress"], "egress": [
    {"to": [{"namespaceSelector": {}}], "ports": [{"port": "pg"}]}]})


def cluster(*policies):
    return Cluster(PODS, NAMESPACES, policies, NODES)


def test_workloads_say_isolation_and_share_policy_chains():
    rules = compute_node_rules(cluster(WEB_IN, WEB_OUT), "n1")
    by_name = {w.name: w for w in rules.workloads}
    assert set(by_name) == {"web-1", "web-2", "cli"}               # local pods only
    assert by_name["cli"].ingress is None and by_name["cli"].egress is None
    web1 = by_name["web-1"]
    assert (web1.iface, web1.ip) == (WEB1.iface, "192.168.1.10")
    assert web1.ingress == by_name["web-2"].ingress                # one shared chain
    [chain_in] = web1.ingress
    [chain_out] = web1.egress
    assert chain_in.startswith("cali-pi-") and chain_out.startswith("cali-po-")
    assert len(chain_in) <= 28
    assert rules.counts() == {"workloads": 3, "isolated_ingress": 2, "isolated_egress": 2,
                              "policy_chains": 2, "allow_rules": 7}


def test_ingress_rules_resolve_peers_ports_and_named_ports_per_local_pod():
    rules = compute_node_rules(cluster(WEB_IN), "n1")
    [chain] = rules.chains
    assert chain.policy == "shop/web-in" and chain.direction == "Ingress"
    assert chain.rules == (
        AllowRule("shop/web-in", "Ingress", 0, "TCP", ((80, 81), (1000, 2000)),
                  ("192.168.1.20/32", "192.168.2.20/32")),
        AllowRule("shop/web-in", "Ingress", 0, "UDP", ((53, 53),),
                  ("192.168.1.20/32", "192.168.2.20/32")),
        AllowRule("shop/web-in", "Ingress", 1, "TCP", ((8080, 8080),), None,
                  ("192.168.1.10",)),
        AllowRule("shop/web-in", "Ingress", 1, "TCP", ((8081, 8081),), None,
                  ("192.168.1.11",)),
        AllowRule("shop/web-in", "Ingress", 2, None, (), ("10.0.0.0/25",)),
    )                                      # rule 3 selects nobody: allows nothing
    assert chain.rules[0].comment == "shop/web-in ingress rule 0"


def test_egress_named_ports_resolve_per_peer_pod():
    rules = compute_node_rules(cluster(WEB_OUT), "n1")
    [chain] = rules.chains
    assert chain.rules == (
        AllowRule("shop/web-out", "Egress", 0, "TCP", ((5432, 5432),), ("192.168.2.10/32",)),
        AllowRule("shop/web-out", "Egress", 0, "TCP", ((6432, 6432),), ("192.168.2.20/32",)),
    )


def test_a_node_without_selected_pods_has_no_chains():
    rules = compute_node_rules(cluster(WEB_IN, WEB_OUT), "n2")
    assert rules.chains == ()
    assert all(w.ingress is None and w.egress is None for w in rules.workloads)


def test_iptables_rendering_comments_every_allow_and_drop_and_deletes_stale_chains():
    rules = compute_node_rules(cluster(WEB_IN), "n1")
    text = render_iptables(rules, frozenset({"cali-pi-0123456789ab", "KUBE-SVC-X",
                                             "cali-FORWARD"}))
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert "-X cali-pi-0123456789ab" in lines
    assert not any("KUBE-SVC-X" in line for line in lines)
    assert "-X cali-FORWARD" not in lines
    allows = [line for line in lines if "--set-xmark 0x10000/0x10000" in line]
    assert allows and all('--comment "shop/web-in ingress rule ' in line for line in allows)
    # the two peer pods are a shared address-set chain, tested by its mark bit
    [set_chain] = sorted({line.split()[1] for line in lines if line.startswith("-A cali-s-")})
    assert [line for line in lines if line.startswith(f"-A {set_chain} -s")] == [
        f"-A {set_chain} -s {ip}/32 -j MARK --set-xmark 0x20000/0x20000"
        for ip in ("192.168.1.20", "192.168.2.20")]
    assert allows[0].startswith("-A cali-pi-")
    assert ("-m mark --mark 0x20000/0x20000 -p tcp -m multiport --dports 80:81,1000:2000"
            in allows[0])
    assert any(line.endswith(f"-j {set_chain}") for line in lines)
    drops = [line for line in lines if line.endswith("-j DROP")]
    assert len(drops) == 2
    assert all("drop: no policy allowed it (ingress of shop/web-" in d for d in drops)


def test_iptables_multiport_lists_are_split_at_fifteen_ports():
    ports = [{"port": p} for p in range(100, 140, 2)]               # 20 single ports
    policy = pol("many", {"podSelector": {}, "ingress": [{"ports": ports}]})
    text = render_iptables(compute_node_rules(cluster(policy), "n1"))
    dports = [line.split("--dports ")[1].split()[0] for line in text.splitlines()
              if "--dports" in line]
    assert [len(d.split(",")) for d in dports] == [15, 5]


def test_nft_rendering_replaces_the_table_and_loads_in_the_table_model():
    rules = compute_node_rules(cluster(WEB_IN, WEB_OUT), "n1")
    text = render_nft(rules)
    assert text.splitlines()[:3] == ["add table ip svclab-netpol",
                                     "delete table ip svclab-netpol",
                                     "add table ip svclab-netpol"]
    table = apply_commands(text, name="ip svclab-netpol")
    assert table.base["forward"].hook == "forward" and table.base["forward"].priority == -10
    assert set(table.chains) >= {"cali-FORWARD", "cali-from-wl-dispatch",
                                 "cali-to-wl-dispatch", f"cali-tw-{WEB1.iface}"}
    assert len(table.chains[rules.chains[0].name]) == 5 + 3     # allows + a return per rule
    assert ("ip saddr { 192.168.1.20/32, 192.168.2.20/32 } meta l4proto udp th dport 53 "
            'mark set mark or 0x10000 comment "shop/web-in ingress rule 0" ;') in text
