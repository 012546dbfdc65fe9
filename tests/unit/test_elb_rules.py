"""Rendering of the ELB host's netfilter rules (NLB DNAT, security group)."""
from __future__ import annotations

import pytest

from agents.elb.rules import (
    Present,
    listener_chain,
    parse_present,
    ranges_chain,
    removal_rules,
    render_rules,
)
from base.elb_api import ElbConfigError, HealthCheck, Listener, LoadBalancer, Target, parse_config

CHECK = HealthCheck("TCP", 31000)
TARGETS = (Target("n1", "172.31.0.11"), Target("n2", "172.31.0.12"),
           Target("n3", "172.31.0.13"))


def lb(flavour="nlb", key="default/web", vip="203.0.113.11", targets=TARGETS, ranges=None,
       listeners=(Listener(80, "TCP", 31000),)):
    return LoadBalancer(key=key, uid="u-" + key, hostname=f"{key.replace('/', '-')}.elb",
                        flavour=flavour, vip=vip, listeners=listeners, targets=targets,
                        health_check=CHECK, source_ranges=ranges or ("0.0.0.0/0",))


def lines(text):
    return text.splitlines()


def test_nlb_listener_dnats_each_new_flow_to_one_target_in_service():
    one = lb()
    text = render_rules([one], {one.key: ("172.31.0.11", "172.31.0.12", "172.31.0.13")})
    chain = listener_chain(one, 80, "TCP")
    assert "-A PREROUTING -j ELB-PREROUTING" in lines(text)
    jump = [l for l in lines(text) if l.startswith("-A ELB-PREROUTING")]
    assert len(jump) == 1 and "-d 203.0.113.11/32 -p tcp -m tcp --dport 80" in jump[0]
    assert jump[0].endswith(f"-j {chain}")
    dnat = [l for l in lines(text) if l.startswith(f"-A {chain}")]
    assert len(dnat) == 3
    assert "--probability 0.33333333333" in dnat[0] and "172.31.0.11:31000" in dnat[0]
    assert "--probability 0.50000000000" in dnat[1] and "172.31.0.12:31000" in dnat[1]
    assert "statistic" not in dnat[2] and dnat[2].endswith("--to-destination 172.31.0.13:31000")


def test_only_targets_in_service_get_flows_and_udp_listeners_work_alike():
    one = lb(listeners=(Listener(53, "UDP", 31053),))
    text = render_rules([one], {one.key: ("172.31.0.12",)})
    chain = listener_chain(one, 53, "UDP")
    dnat = [l for l in lines(text) if l.startswith(f"-A {chain}")]
    assert len(dnat) == 1 and dnat[0].endswith("--to-destination 172.31.0.12:31053")
    assert any("-p udp -m udp --dport 53" in l for l in lines(text))


def test_classic_listeners_get_a_security_group_but_no_dnat():
    classic = lb(flavour="classic")
    text = render_rules([classic], {classic.key: ("172.31.0.11",)})
    assert not any("DNAT" in l for l in lines(text))
    assert any(l.startswith("-A ELB-FIREWALL -d 203.0.113.11/32 -p tcp -m tcp --dport 80")
               and l.endswith("-j ACCEPT") for l in lines(text))
    # anything else to the VIP is dropped, after the listeners
    firewall = [l for l in lines(text) if l.startswith("-A ELB-FIREWALL")]
    assert firewall[-1].endswith("-j DROP") and "not a listener" in firewall[-1]


def test_source_ranges_accept_listed_cidrs_and_drop_the_rest():
    limited = lb(ranges=("203.0.113.100/32", "10.0.0.0/8"))
    text = render_rules([limited], {limited.key: ("172.31.0.11",)})
    fw = ranges_chain(limited)
    body = [l for l in lines(text) if l.startswith(f"-A {fw}")]
    assert body[0] == f"-A {fw} -s 203.0.113.100/32 -j ACCEPT"
    assert body[1] == f"-A {fw} -s 10.0.0.0/8 -j ACCEPT"
    assert body[2].endswith("-j DROP")
    assert any(l.startswith("-A ELB-FIREWALL") and l.endswith(f"-j {fw}") for l in lines(text))


def test_nlb_without_targets_drops():
    empty = lb(targets=())
    text = render_rules([empty], {})
    assert any("no targets" in l and l.endswith("-j DROP") for l in lines(text))


def test_jumps_are_added_once_and_stale_chains_are_flushed_and_deleted():
    one = lb()
    old = lb(key="default/old", vip="203.0.113.12")
    old_chain = listener_chain(old, 80, "TCP")
    present = Present(nat_chains=frozenset({"ELB-PREROUTING", old_chain}),
                      mangle_chains=frozenset({"ELB-FIREWALL"}), nat_jump=True,
                      mangle_jump=True)
    text = render_rules([one], {one.key: ("172.31.0.11",)}, present)
    assert "-A PREROUTING -j ELB-PREROUTING" not in text
    assert "--ctstate NEW -j ELB-FIREWALL" not in text
    nat = lines(text)[lines(text).index("*nat"):]
    assert f":{old_chain} - [0:0]" in nat and nat[-2:] == [f"-X {old_chain}", "COMMIT"]


def test_parse_present_and_removal():
    nat = ("*nat\n:PREROUTING ACCEPT [0:0]\n:ELB-PREROUTING - [0:0]\n:ELB-L-ABC - [0:0]\n"
           "-A PREROUTING -j ELB-PREROUTING\nCOMMIT\n")
    mangle = ("*mangle\n:ELB-FIREWALL - [0:0]\n"
              "-A PREROUTING -m conntrack --ctstate NEW -j ELB-FIREWALL\nCOMMIT\n")
    present = parse_present(nat, mangle)
    assert present == Present(frozenset({"ELB-PREROUTING", "ELB-L-ABC"}),
                              frozenset({"ELB-FIREWALL"}), True, True)
    text = removal_rules(present)
    assert "-D PREROUTING -j ELB-PREROUTING" in text and "-X ELB-L-ABC" in text


def test_config_errors_name_the_field():
    with pytest.raises(ElbConfigError, match=r"loadBalancers\[0\]\.listeners\[0\]\.protocol"):
        parse_config({"version": 1, "loadBalancers": [{
            "key": "a/b", "hostname": "h", "flavour": "classic", "vip": "203.0.113.11",
            "listeners": [{"port": 53, "protocol": "UDP", "nodePort": 31000}],
            "targets": [], "healthCheck": {"protocol": "TCP", "port": 1, "interval": 1,
                                           "timeout": 1, "healthyThreshold": 2,
                                           "unhealthyThreshold": 2}}]})
