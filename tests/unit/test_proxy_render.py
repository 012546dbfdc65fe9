"""compute_ruleset + render_iptables: layout, features, stale chains."""

from __future__ import annotations

import random

import pytest

from agents.proxy import (
    NodeInfo,
    ProxyOptions,
    compute_ruleset,
    endpoint_slice_from_k8s,
    names,
    parse_iptables_save,
    render_iptables,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_tracer import Tracer

NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",))
OTHER = "ip-172-31-0-12"


def render(services, slices, options=ProxyOptions(), current=None):
    rs = compute_ruleset([service_from_k8s(s) for s in services],
                         [endpoint_slice_from_k8s(s) for s in slices],
                         NODE, options)
    return render_iptables(rs, current) if current else render_iptables(rs)


def web(n_endpoints=2, **kw):
    svc = service_dict("web", "shop", cluster_ip="10.96.0.20", **kw)
    es = slice_dict("web", "shop", endpoints=[
        endpoint(f"192.168.{1 + i % 2}.{10 + i}", NODE.name if i % 2 == 0
                 else OTHER) for i in range(n_endpoints)])
    return svc, es


def trace(text, src, dst, port, proto="TCP", **kw):
    return Tracer(text, NODE.node_ips).trace(src, dst, port, proto, **kw)


def chains_in(text):
    return {line[1:].split()[0] for line in text.splitlines()
            if line.startswith(":")}


def test_output_is_deterministic_whatever_the_input_order():
    services, slices = [], []
    for i in range(20):
        svc, es = web(3)
        svc["metadata"]["name"] = es["metadata"]["labels"][
            "kubernetes.io/service-name"] = f"web{i}"
        svc["spec"]["clusterIP"] = f"10.96.1.{i}"
        services.append(svc)
        slices.append(es)
    first = render(services, slices)
    for seed in range(3):
        rng = random.Random(seed)
        s2, e2 = services[:], slices[:]
        rng.shuffle(s2)
        rng.shuffle(e2)
        assert render(s2, e2) == first


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_spreading_is_uniform(n):
    svc, es = web(n)
    text = render([svc], [es])
    outcomes = trace(text, "192.168.1.5", "10.96.0.20", 80)
    assert len(outcomes) == n
    for o in outcomes:
        assert o.probability == pytest.approx(1 / n, abs=1e-9)
    stats = [line for line in text.splitlines() if "--probability" in line]
    assert [s.split("--probability ")[1].split()[0] for s in stats] == [
        "%0.10f" % (1 / (n - i)) for i in range(n - 1)]


def test_session_affinity_rules_and_stickiness():
    svc, es = web(3, affinity_timeout=600)
    text = render([svc], [es])
    svc_chain = names.cluster_chain("shop/web:http", "TCP")
    rules = [line for line in text.splitlines()
             if line.startswith(f"-A {svc_chain} ")]
    recent = [i for i, r in enumerate(rules) if "--rcheck" in r]
    stats = [i for i, r in enumerate(rules) if "--probability" in r]
    assert len(recent) == 3 and max(recent) < min(stats)   # checks first
    assert all("--seconds 600 --reap" in rules[i] for i in recent)
    fresh = trace(text, "192.168.1.5", "10.96.0.20", 80)
    assert len(fresh) == 3
    for o in fresh:          # the SEP chain records the client in its list
        assert o.recent_set == (names.endpoint_chain(
            "shop/web:http", "TCP", o.dnat),)
    remembered = fresh[1]
    again = trace(text, "192.168.1.5", "10.96.0.20", 80,
                  recent=frozenset(remembered.recent_set))
    assert [(o.dnat, o.probability) for o in again] == [(remembered.dnat, 1.0)]


def test_multi_port_service_gets_independent_chains():
    svc = service_dict("app", cluster_ip="10.96.0.30", ports=[
        {"name": "http", "port": 80}, {"name": "metrics", "port": 9100}])
    es = slice_dict("app", ports=[{"name": "http", "port": 8080},
                                  {"name": "metrics", "port": 9101}],
                    endpoints=[endpoint("192.168.1.10", NODE.name)])
    text = render([svc], [es])
    assert {names.cluster_chain("default/app:http", "tcp"),
            names.cluster_chain("default/app:metrics", "tcp")} <= chains_in(text)
    assert [o.dnat for o in trace(text, "192.168.1.5", "10.96.0.30", 80)] \
        == ["192.168.1.10:8080"]
    assert [o.dnat for o in trace(text, "192.168.1.5", "10.96.0.30", 9100)] \
        == ["192.168.1.10:9101"]


def test_same_port_on_tcp_and_udp_is_independent():
    svc = service_dict("dns", "kube-system", cluster_ip="10.96.0.10", ports=[
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])
    es = slice_dict("dns", "kube-system", ports=[
        {"name": "dns", "port": 5353, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 5300, "protocol": "TCP"}],
        endpoints=[endpoint("192.168.1.3", NODE.name)])
    text = render([svc], [es])
    assert "-m udp -p udp -d 10.96.0.10 --dport 53" in text
    assert [o.dnat for o in trace(text, "192.168.1.5", "10.96.0.10", 53,
                                  "UDP")] == ["192.168.1.3:5353"]
    assert [o.dnat for o in trace(text, "192.168.1.5", "10.96.0.10", 53,
                                  "TCP")] == ["192.168.1.3:5300"]


def test_named_target_ports_differ_per_pod():
    svc = service_dict("web", cluster_ip="10.96.0.40",
                       ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    slices = [slice_dict("web", name="web-a", ports=[{"name": "http",
                                                      "port": 8080}],
                         endpoints=[endpoint("192.168.1.10", NODE.name)]),
              slice_dict("web", name="web-b", ports=[{"name": "http",
                                                      "port": 9090}],
                         endpoints=[endpoint("192.168.2.20", OTHER)])]
    outcomes = trace(render([svc], slices), "192.168.1.5", "10.96.0.40", 80)
    assert {o.dnat: o.probability for o in outcomes} == pytest.approx(
        {"192.168.1.10:8080": 0.5, "192.168.2.20:9090": 0.5})


@pytest.mark.parametrize("svc", [
    service_dict("headless", cluster_ip="None"),
    service_dict("extname", cluster_ip=None, type="ExternalName",
                 external_name="db.example.com", ports=[]),
    service_dict("other-proxy", cluster_ip="10.96.0.50",
                 labels={"service.kubernetes.io/service-proxy-name": "x"}),
    service_dict("labelled-headless", cluster_ip="10.96.0.51",
                 labels={"service.kubernetes.io/headless": ""}),
])
def test_skipped_services_leave_no_trace(svc):
    name = svc["metadata"]["name"]
    es = slice_dict(name, endpoints=[endpoint("192.168.1.10", NODE.name)])
    text = render([svc], [es])
    assert name not in text
    assert not [c for c in chains_in(text) if names.is_service_chain(c)]


@pytest.mark.parametrize("ingress,expect_rule", [
    ({"hostname": "a1b2c3-123456789.us-east-1.elb.amazonaws.com"}, False),
    ({"ip": "203.0.113.100", "ipMode": "Proxy"}, False),
    ({"ip": "203.0.113.100", "ipMode": "VIP"}, True),
    ({"ip": "203.0.113.100"}, True),
])
def test_load_balancer_ingress_rules(ingress, expect_rule):
    svc, es = web(type="LoadBalancer",
                  ports=[{"name": "http", "port": 80, "nodePort": 30080}],
                  ingress=[ingress])
    text = render([svc], [es])
    assert ("loadbalancer IP" in text) is expect_rule
    outcome = trace(text, "203.0.113.7", "203.0.113.100", 80)
    assert {o.verdict for o in outcome} == (
        {"ACCEPT"} if expect_rule else {"NO-MATCH"})
    # the NodePort works in every case
    assert {o.verdict for o in trace(text, "203.0.113.7", "172.31.0.11",
                                     30080)} == {"ACCEPT"}


def test_stale_chains_are_deleted_and_foreign_ones_untouched():
    old_svc, old_es = web(3, type="NodePort",
                          ports=[{"name": "http", "port": 80,
                                  "nodePort": 30080}])
    old_text = render([old_svc], [old_es])
    foreign = ("*nat\n:CALICO-NAT - [0:0]\n-A PREROUTING -j CALICO-NAT\n"
               "-A CALICO-NAT -j RETURN\nCOMMIT\n"
               "*filter\n:KUBE-FIREWALL - [0:0]\nCOMMIT\n")
    current = parse_iptables_save(old_text + foreign)
    new_svc, new_es = web(1)                     # fewer endpoints, no NodePort
    new_text = render([new_svc], [new_es], current=current)
    old_chains = {c for c in chains_in(old_text) if names.is_service_chain(c)}
    new_active = {c for c in chains_in(render([new_svc], [new_es]))
                  if names.is_service_chain(c)}
    deleted = {line[3:] for line in new_text.splitlines()
               if line.startswith("-X ")}
    assert deleted == old_chains - new_active
    assert deleted and names.external_chain("shop/web:http", "tcp") in deleted
    assert "CALICO" not in new_text
    assert "KUBE-FIREWALL" not in new_text
    assert not [line for line in new_text.splitlines()
                if line.startswith("-I ")]         # jumps exist already


def test_jumps_inserted_only_when_missing():
    svc, es = web(1)
    text = render([svc], [es])
    inserted = [line for line in text.splitlines() if line.startswith("-I ")]
    assert len(inserted) == 12
    assert '-I PREROUTING -m comment --comment "kubernetes service portals"' \
        ' -j KUBE-SERVICES' in inserted
    partial = parse_iptables_save(
        "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -m comment --comment "
        '"kubernetes service portals" -j KUBE-SERVICES\nCOMMIT\n')
    again = [line for line in render([svc], [es], current=partial).splitlines()
             if line.startswith("-I ")]
    assert len(again) == 11 and not any("PREROUTING" in j for j in again)


def test_large_cluster_mode_drops_endpoint_comments():
    svc, es = web(3)
    small = render([svc], [es])
    large = render([svc], [es], ProxyOptions(large_cluster_endpoints=2))
    sep = names.endpoint_chain("shop/web:http", "tcp", "192.168.1.10:8080")
    assert f"-A {sep} -m comment --comment shop/web:http -s 192.168.1.10" in small
    assert f"-A {sep} -s 192.168.1.10 -j KUBE-MARK-MASQ" in large
    assert '"shop/web:http cluster IP"' in large     # entry comments stay
    assert trace(small, "192.168.1.5", "10.96.0.20", 80) == \
        trace(large, "192.168.1.5", "10.96.0.20", 80)


def test_masquerade_all_and_unknown_cluster_cidr():
    svc, es = web(1)
    everything = render([svc], [es], ProxyOptions(masquerade_all=True))
    assert {o.masquerade for o in trace(everything, "192.168.1.5",
                                        "10.96.0.20", 80)} == {True}
    plain = render([svc], [es])
    assert {o.masquerade for o in trace(plain, "192.168.1.5",
                                        "10.96.0.20", 80)} == {False}
    assert {o.masquerade for o in trace(plain, "203.0.113.7",
                                        "10.96.0.20", 80)} == {True}
    # Without a pod CIDR kube-proxy cannot tell pods from clients: no SNAT
    # rule for off-cluster sources at all.
    rs = compute_ruleset([service_from_k8s(svc)],
                         [endpoint_slice_from_k8s(es)],
                         NodeInfo(NODE.name, NODE.node_ips, cluster_cidr=None))
    blind = render_iptables(rs)
    assert "! -s" not in blind
    assert {o.masquerade for o in trace(blind, "203.0.113.7",
                                        "10.96.0.20", 80)} == {False}


def test_random_fully_is_optional():
    svc, es = web(1)
    assert "-j MASQUERADE --random-fully" in render([svc], [es])
    assert "--random-fully" not in render([svc], [es],
                                          ProxyOptions(random_fully=False))


def test_health_checks_report_local_ready_endpoints():
    svc, es = web(3, type="LoadBalancer", etp="Local",
                  health_check_node_port=32000,
                  ports=[{"name": "http", "port": 80, "nodePort": 30080}])
    rs = compute_ruleset([service_from_k8s(svc)],
                         [endpoint_slice_from_k8s(es)], NODE)
    (hc,) = rs.health_checks
    assert (hc.node_port, hc.namespace, hc.service, hc.local_endpoints) == (
        32000, "shop", "web", 2)
