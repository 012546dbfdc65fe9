"""The nft renderer: kube-proxy's layout line by line, determinism, partial sync.

The kube-proxy lines below are copied from the expected output of
kube-proxy's own pkg/proxy/nftables TestOverallNFTablesRules (same services,
same node), so svclab's table reads like a real node's; the renderer writes
a chain's rules and a map's elements in blocks, which ``expand`` reads back
as kube-proxy's one-object commands.  Partial renders are
checked by applying them in the pure nft table model (agents.proxy.nft_table)
on top of a full render and comparing with the full render of the new state.
"""

from __future__ import annotations

import random

import pytest

from agents.proxy import (
    NodeInfo,
    ProxyOptions,
    compute_ruleset,
    endpoint_slice_from_k8s,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.nfnetlink import removals_as_text
from agents.proxy.nft_render import (
    TableState,
    hash_and_truncate,
    intact_chains,
    plan_ruleset,
    render_created,
    render_full,
    render_nftables,
    render_partial,
)
from agents.proxy.nft_table import apply_commands, expand

NODE = NodeInfo("test-node", ("192.168.0.2",), "10.0.0.0/8", "172.30.0.0/16")
LIBERAL = ProxyOptions(conntrack_tcp_liberal=True)


def kube_proxy_objects():
    """The services and slices of kube-proxy's TestOverallNFTablesRules."""
    p80 = {"name": "p80", "port": 80}
    services = [
        service_dict("svc1", "ns1", cluster_ip="172.30.0.41", ports=[p80]),
        service_dict("svc2", "ns2", cluster_ip="172.30.0.42",
                     type="LoadBalancer", etp="Local",
                     ports=[{**p80, "nodePort": 3001}],
                     external_ips=["192.168.99.22"],
                     health_check_node_port=30000,
                     ingress=[{"ip": "1.2.3.4"}]),
        service_dict("svc3", "ns3", cluster_ip="172.30.0.43", type="NodePort",
                     ports=[{**p80, "nodePort": 3003}]),
        service_dict("svc4", "ns4", cluster_ip="172.30.0.44", type="NodePort",
                     external_ips=["192.168.99.33"],
                     ports=[{**p80, "targetPort": 80}]),
        service_dict("svc5", "ns5", cluster_ip="172.30.0.45",
                     type="LoadBalancer", ports=[{**p80, "nodePort": 3002}],
                     ingress=[{"ip": "5.6.7.8"}],
                     source_ranges=["203.0.113.0/25"],
                     affinity_timeout=10800),
        service_dict("svc6", "ns6", cluster_ip="172.30.0.46",
                     ports=[{**p80, "targetPort": 80}]),
    ]
    slices = [
        slice_dict("svc1", "ns1", ports=[p80],
                   endpoints=[endpoint("10.180.0.1", None)]),
        slice_dict("svc2", "ns2", ports=[p80],
                   endpoints=[endpoint("10.180.0.2", None)]),
        slice_dict("svc3", "ns3", ports=[p80],
                   endpoints=[endpoint("10.180.0.3", None)]),
        slice_dict("svc4", "ns4", ports=[p80],
                   endpoints=[endpoint("10.180.0.4", None),
                              endpoint("10.180.0.5", NODE.name)]),
        slice_dict("svc5", "ns5", ports=[p80],
                   endpoints=[endpoint("10.180.0.3", None)]),
    ]
    return ([service_from_k8s(s) for s in services],
            [endpoint_slice_from_k8s(s) for s in slices])


K = "add rule ip kube-proxy "
KUBE_PROXY_LINES = [
    'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
    'add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active '
    'ClusterIPs" ; }',
    "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . "
    'inet_service : verdict ; comment "ClusterIP, ExternalIP and '
    'LoadBalancer IP traffic" ; }',
    "add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook "
    "prerouting priority -110 ; }",
    "add chain ip kube-proxy nat-prerouting { type nat hook prerouting "
    "priority -100 ; }",
    K + 'cluster-ips-check ip daddr @cluster-ips reject comment "Reject '
    'traffic to invalid ports of ClusterIPs"',
    K + "cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment \"Drop "
    'traffic to unallocated ClusterIPs"',
    K + "filter-prerouting-pre-dnat ct state new jump firewall-check",
    K + "filter-forward ct state new jump service-endpoints-check",
    K + "filter-forward ct state new jump cluster-ips-check",
    K + "filter-input ct state new jump nodeport-endpoints-check",
    K + "filter-output ct state new jump cluster-ips-check",
    K + "mark-for-masquerade mark set mark or 0x4000",
    K + "masquerading mark and 0x4000 == 0 return",
    K + "masquerading mark set mark xor 0x4000",
    K + "masquerading masquerade fully-random",
    K + "nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . "
    "th dport vmap @no-endpoint-nodeports",
    K + "services ip daddr . meta l4proto . th dport vmap @service-ips",
    K + "services ip daddr @nodeport-ips meta l4proto . th dport vmap "
    "@service-nodeports",
    "add element ip kube-proxy nodeport-ips { 192.168.0.2 }",
    # svc1
    K + "service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != "
    "10.0.0.0/8 jump mark-for-masquerade",
    K + "service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : "
    "goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }",
    K + "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr "
    "10.180.0.1 jump mark-for-masquerade",
    K + "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp "
    "dnat to 10.180.0.1:80",
    "add element ip kube-proxy cluster-ips { 172.30.0.41 }",
    "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto "
    "service-ULMVA6XW-ns1/svc1/tcp/p80 }",
    # svc2: eTP Local without local endpoints
    K + 'external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto '
    'service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"',
    K + "external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local jump "
    'mark-for-masquerade comment "masquerade local traffic"',
    K + "external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto "
    'service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"',
    "add element ip kube-proxy service-nodeports { tcp . 3001 : goto "
    "external-42NFTM6N-ns2/svc2/tcp/p80 }",
    'add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment '
    '"ns2/svc2:p80" : drop }',
    'add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 '
    'comment "ns2/svc2:p80" : drop }',
    # svc3, svc4
    K + "external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade",
    K + "external-4AT6LBPK-ns3/svc3/tcp/p80 goto "
    "service-4AT6LBPK-ns3/svc3/tcp/p80",
    K + "service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : "
    "goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto "
    "endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }",
    "add element ip kube-proxy service-ips { 192.168.99.33 . tcp . 80 : "
    "goto external-LAUZTJTB-ns4/svc4/tcp/p80 }",
    # svc5: affinity, source ranges
    "add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 "
    "{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }",
    K + "service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr "
    "@affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto "
    "endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80",
    K + "endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update "
    "@affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }",
    K + "firewall-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr != { 203.0.113.0/25 } "
    "drop",
    "add element ip kube-proxy service-nodeports { tcp . 3002 : goto "
    "external-HVFWP5L3-ns5/svc5/tcp/p80 }",
    # svc6: no endpoints
    "add element ip kube-proxy cluster-ips { 172.30.0.46 }",
]


def kube_proxy_ruleset(options=LIBERAL):
    return compute_ruleset(*kube_proxy_objects(), NODE, options)


def commands(text: str) -> list[str]:
    return [command for _, command in expand(text)]


@pytest.mark.parametrize("line", KUBE_PROXY_LINES)
def test_renders_kube_proxys_lines(line):
    assert line in commands(render_nftables(kube_proxy_ruleset()))


def test_no_endpoint_service_rejects_through_reject_chain():
    text = render_nftables(kube_proxy_ruleset())
    assert ('add element ip kube-proxy no-endpoint-services { 172.30.0.46 . '
            'tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }') \
        in commands(text)
    assert "svc6/tcp" not in text            # no chains for it


def test_chains_come_with_their_rules_and_maps_with_their_elements():
    """The shapes nft 1.0 applies without listing the table's chains."""
    text = render_nftables(kube_proxy_ruleset())
    assert ("add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__"
            "10.180.0.1/80 { ip saddr 10.180.0.1 jump mark-for-masquerade ; "
            "meta l4proto tcp dnat to 10.180.0.1:80 ; }") in text.splitlines()
    assert ('add set ip kube-proxy cluster-ips { type ipv4_addr ; comment '
            '"Active ClusterIPs" ; elements = { 172.30.0.41 , 172.30.0.42 , ')\
        in text
    assert not any(line.startswith(("add rule", "add element"))
                   for line in text.splitlines())


def test_names_are_kube_proxys_hash_and_truncate():
    assert hash_and_truncate("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    long = hash_and_truncate("a" * 300)
    assert len(long) == 240 and long.endswith("...")


def test_every_command_names_only_our_table():
    for line in render_nftables(kube_proxy_ruleset()).splitlines():
        assert line.split()[2:4] == ["ip", "kube-proxy"], line


def test_invalid_drop_unless_conntrack_is_liberal():
    strict = render_nftables(kube_proxy_ruleset(ProxyOptions()))
    assert "add rule ip kube-proxy filter-forward ct state invalid drop" \
        in commands(strict)
    assert "ct state invalid" not in render_nftables(kube_proxy_ruleset())


def test_output_is_deterministic_whatever_the_input_order():
    services, slices = kube_proxy_objects()
    first = render_nftables(compute_ruleset(services, slices, NODE))
    random.Random(7).shuffle(services)
    random.Random(8).shuffle(slices)
    assert render_nftables(compute_ruleset(services, slices, NODE)) == first


def bench_ruleset(n_services: int, per_service: int, large_at: int = 1000,
                  changed: dict | None = None):
    services, slices = [], []
    for i in range(n_services):
        services.append(service_dict(
            f"s{i}", "b", cluster_ip=f"172.30.{i // 250}.{i % 250 + 1}",
            ports=[{"name": "p", "port": 80, "targetPort": 8080}],
            affinity_timeout=60 if i % 5 == 0 else None))
        ips = (changed or {}).get(i) or [
            f"10.1.{i}.{j + 1}" for j in range(per_service)]
        slices.append(slice_dict(f"s{i}", "b",
                                 ports=[{"name": "p", "port": 8080}],
                                 endpoints=[endpoint(ip, "n") for ip in ips]))
    return compute_ruleset([service_from_k8s(s) for s in services],
                           [endpoint_slice_from_k8s(s) for s in slices],
                           NODE, ProxyOptions(large_cluster_endpoints=large_at))


def test_large_clusters_spread_without_anonymous_sets():
    text = render_nftables(bench_ruleset(2, 3, large_at=5))
    assert " vmap {" not in text
    assert ("numgen random mod 3 0 goto endpoint-" in text
            and "numgen random mod 2 0 goto endpoint-" in text)


@pytest.mark.parametrize("large_at", [1000, 5])
def test_partial_render_reaches_the_full_render(large_at):
    before = bench_ruleset(6, 3, large_at)
    # s1: one endpoint replaced; s5 (affinity) shrinks; s2 gone entirely.
    after_ports = bench_ruleset(6, 3, large_at, changed={
        1: ["10.1.1.1", "10.1.1.2", "10.1.99.9"], 5: ["10.1.5.1"]})
    after = type(after_ports)(after_ports.node, after_ports.options, tuple(
        sp for sp in after_ports.service_ports if sp.name.service != "s2"),
        after_ports.health_checks)
    changed = {("b", "s1"), ("b", "s2"), ("b", "s5")}
    old = plan_ruleset(before).services
    partial = render_partial(plan_ruleset(after, frozenset(changed)),
                             old=old, changed=changed)
    untouched = ("b/s0/", "b/s3/", "b/s4/", "172.30.0.1 ", "172.30.0.4 ",
                 "172.30.0.5 ")                  # s0, s3, s4 and their IPs
    for line in partial.text.splitlines():
        assert not any(u in line for u in untouched), line
    assert any("s2/tcp" in c for c in partial.stale_chains)
    assert any("10.1.5.3" in s for s in partial.stale_sets)
    assert "delete" not in partial.text         # removals go over netlink
    removed = {op.name for op in partial.removals if not hasattr(op, "keys")}
    assert removed == set(partial.stale_chains) | set(partial.stale_sets)
    # applied as the backend does (text, then removals) the table is the
    # one a full render of the new state makes
    table = apply_commands(render_nftables(before))
    apply_commands(partial.text, table)
    apply_commands(removals_as_text(partial.removals, "ip kube-proxy"), table)
    assert table == apply_commands(render_nftables(after))
    assert apply_commands(partial.as_text(),
                          apply_commands(render_nftables(before))) == table


def test_removals_delete_referrers_before_what_they_refer_to():
    before, after = bench_ruleset(3, 2), bench_ruleset(2, 2)
    partial = render_partial(plan_ruleset(after, frozenset({("b", "s2")})),
                             old=plan_ruleset(before).services,
                             changed={("b", "s2")})
    assert partial.text == ""
    kinds = [type(op).__name__ for op in partial.removals]
    assert kinds == ["DeleteElements"] * 2 + ["DeleteChain"] * 3
    assert [(op.container, op.keys, op.types)
            for op in partial.removals[:2]] == [
        ("cluster-ips", ("172.30.0.3",), "ipv4_addr"),
        ("service-ips", ("172.30.0.3 . tcp . 80",),
         "ipv4_addr . inet_proto . inet_service")]
    chains = [op.name for op in partial.removals[2:]]
    assert chains[0].startswith("service-")
    assert all(c.startswith("endpoint-") for c in chains[1:])


def test_unchanged_service_gives_an_empty_partial_render():
    rs = bench_ruleset(3, 2)
    old = plan_ruleset(rs).services
    assert render_partial(plan_ruleset(rs, frozenset({("b", "s1")})),
                          old=old, changed={("b", "s1")}).text == ""


def test_changed_affinity_timeout_redeclares_the_sets():
    rs = bench_ruleset(1, 2)
    old = plan_ruleset(rs).services
    key = ("b", "s0")
    longer = {key: type(old[key])(old[key].elements, old[key].chains, tuple(
        type(s)(s.name, s.timeout_s + 1) for s in old[key].affinity_sets))}
    text = render_partial(plan_ruleset(rs, frozenset({key})), old=longer,
                          changed={key}).text
    assert text.count("add set ip kube-proxy affinity-") == 2
    assert "timeout 60s" in text


def test_chains_made_ahead_are_not_written_again():
    plan = plan_ruleset(bench_ruleset(4, 2))
    ahead = [plan.services[("b", "s1")], plan.services[("b", "s3")]]
    created = frozenset(c.name for o in ahead for c in o.chains)
    table = apply_commands(render_created(ahead, plan))
    assert set(table.chains) >= created
    final = render_full(plan, created=created)
    assert not any(name in final.text for name in created
                   if name.startswith("endpoint-"))
    apply_commands(final.text, table)
    assert table == apply_commands(render_nftables(bench_ruleset(4, 2)))


def test_full_render_deletes_stale_chains_and_sets_it_is_told_about():
    existing = TableState(
        chains=frozenset({"services", "service-XXXXXXXX-b/gone/tcp/p"}),
        sets=frozenset({"cluster-ips", "affinity-XXXXXXXX-b/gone/tcp/p__1/2"}))
    text = render_full(plan_ruleset(bench_ruleset(1, 1)), existing).text
    assert "delete chain ip kube-proxy service-XXXXXXXX-b/gone/tcp/p" in text
    assert "delete set ip kube-proxy affinity-XXXXXXXX-b/gone/tcp/p__1/2" \
        in text
    assert "delete chain ip kube-proxy services" not in text
    assert "flush set ip kube-proxy affinity-" not in text  # affinity kept


def test_an_endpoint_that_comes_back_is_written_again():
    """A partial sync deletes a gone endpoint's chain; when the endpoint
    comes back, its chain is declared anew."""
    three, two = bench_ruleset(2, 3), bench_ruleset(2, 2)
    key = {("b", "s1")}
    table = apply_commands(render_nftables(three))
    gone = render_partial(plan_ruleset(two, frozenset(key)),
                          old=plan_ruleset(three).services, changed=key)
    apply_commands(gone.as_text(), table)
    [chain] = gone.stale_chains
    assert chain not in table.chains
    back = render_partial(plan_ruleset(three, frozenset(key)),
                          old=plan_ruleset(two).services, changed=key)
    assert f"add chain ip kube-proxy {chain}" in back.text
    apply_commands(back.as_text(), table)
    assert table == apply_commands(render_nftables(three))


def test_a_resync_leaves_endpoint_chains_whose_name_says_it_all():
    """kube-proxy's restart shortcut (kubernetes#130119): an endpoint chain
    in the table holds what its name implies, unless affinity changed."""
    rs = bench_ruleset(6, 2)                 # s0 and s5 have affinity
    plan = plan_ruleset(rs)
    table = apply_commands(render_nftables(rs))
    existing = TableState(frozenset(table.chains), frozenset(table.sets))
    s0, s1 = plan.services[("b", "s0")], plan.services[("b", "s1")]
    assert intact_chains(s1, existing) == {
        c.name for c in s1.chains if c.name.startswith("endpoint-")}
    assert len(intact_chains(s0, existing)) == 2
    no_sets = TableState(existing.chains, frozenset())   # affinity changed
    assert intact_chains(s0, no_sets) == frozenset()
    kept = frozenset().union(*(intact_chains(o, existing)
                               for o in plan.services.values()))
    full = render_full(plan, existing, kept)
    written = {line.split()[4] for line in full.text.splitlines()
               if line.startswith(("add chain", "flush chain"))}
    assert len(kept) == 12 and not written & kept
    assert "service-" + hash_and_truncate("b/s1/tcp/p") in written
    apply_commands(full.text, table)
    assert table == apply_commands(render_nftables(rs))


def test_planning_a_few_services_finds_exactly_their_ports():
    """Partial plans find the changed services' ports by bisection over the
    sorted rule set: names that prefix others (s1, s1-a, s10), several named
    ports, an unnamed port and other namespaces must not confuse it."""
    names = ["s1", "s1-a", "s10", "s1x", "s2", "a", "z"]
    services, slices = [], []
    for i, name in enumerate(names):
        ports = ([{"port": 80, "targetPort": 8080}] if name == "a" else
                 [{"name": "http", "port": 80, "targetPort": 8080},
                  {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                  {"name": "h", "port": 81, "targetPort": 8081}])
        for ns in ("b", "b-x"):
            services.append(service_dict(name, ns, cluster_ip=f"172.30.{i}.{len(ns)}",
                                         ports=ports))
            slices.append(slice_dict(name, ns, ports=[
                {"name": p.get("name"), "port": p["targetPort"],
                 "protocol": p.get("protocol", "TCP")} for p in ports],
                endpoints=[endpoint(f"10.1.{i}.{len(ns)}", "n")]))
    rs = compute_ruleset([service_from_k8s(s) for s in services],
                         [endpoint_slice_from_k8s(s) for s in slices], NODE)
    everything = plan_ruleset(rs).services
    rng = random.Random(7)
    keys = sorted(everything)
    for _ in range(30):
        only = frozenset(rng.sample(keys, rng.randint(1, 4)))
        assert plan_ruleset(rs, only).services == {k: everything[k] for k in only}
