"""Lab planning as data: addresses, routes and rules each host gets."""
from __future__ import annotations

import ipaddress

import pytest

from topo.plan import cali_name, outside_dns_records, plan_lab, plan_pod, render_plan
from topo.spec import load_spec


def hosts_by_name(plan):
    return {h.host: h for h in plan.hosts}


def test_every_host_lives_behind_a_bridge_in_its_own_namespace():
    plan = plan_lab(load_spec())
    assert [(h.host, h.kind, h.name) for h in plan.hosts] == [
        ("vpc", "bridge", "vpc"), ("inet", "bridge", "inet"), ("igw", "router", "igw"),
        ("n0", "node", "ip-172-31-0-10"), ("n1", "node", "ip-172-31-0-11"),
        ("n2", "node", "ip-172-31-0-12"), ("client", "client", "client"),
        ("elb", "loadbalancer", "elb"), ("o0", "outside", "db.example.com")]
    links = {(l.host1, l.intf1, l.host2) for l in plan.links}
    assert links == {("igw", "eth0", "vpc"), ("igw", "eth1", "inet"), ("n0", "eth0", "vpc"),
                     ("n1", "eth0", "vpc"), ("n2", "eth0", "vpc"),
                     ("client", "eth0", "inet"), ("elb", "eth0", "vpc"),
                     ("elb", "eth1", "inet"), ("o0", "eth0", "inet")}
    # Linux interface names are at most 15 characters.
    assert all(len(l.intf1) <= 15 and len(l.intf2) <= 15 for l in plan.links)


def test_nodes_route_each_others_pod_blocks_without_overlay():
    node = hosts_by_name(plan_lab(load_spec()))["n1"]
    assert node.ip_batch == (
        "link set dev lo up", "addr add 172.31.0.11/20 dev eth0", "link set dev eth0 up",
        "route add default via 172.31.0.1", "route add blackhole 192.168.1.0/24",
        "route add 192.168.0.0/24 via 172.31.0.10", "route add 192.168.2.0/24 via 172.31.0.12",
        # replies to NLB flows go back through the ELB (client IP preserved)
        "rule add fwmark 0x1000000/0x1000000 table 105 priority 105",
        "route add default via 172.31.0.5 dev eth0 table 105")
    assert ("net.ipv4.ip_forward", "1") in node.sysctls
    assert "-A cali-nat-outgoing -s 192.168.0.0/16 ! -d 192.168.0.0/16" in node.iptables


def test_igw_maps_public_ips_one_to_one_and_drops_the_rest():
    igw = hosts_by_name(plan_lab(load_spec()))["igw"]
    rules = igw.iptables.splitlines()
    for private, public in (("172.31.0.10", "198.51.100.10"), ("172.31.0.12", "198.51.100.12")):
        assert (f"-A IGW-PREROUTING -d {public}/32 -j DNAT --to-destination {private}"
                in rules)
        assert (f"-A IGW-POSTROUTING -o eth1 -s {private}/32 -j SNAT --to-source {public}"
                in rules)
    assert "-A IGW-INBOUND -d 198.51.100.0/24 -j RETURN" in rules
    assert rules.index("-A IGW-INBOUND -d 198.51.100.0/24 -j RETURN") < rules.index(
        '-A IGW-INBOUND -m comment --comment "no public IP: dropped" -j DROP')
    assert igw.iptables.count("COMMIT") == 3


def test_pod_is_a_calico_style_slash_32_behind_proxy_arp():
    spec = load_spec()
    plan = plan_pod(spec, 1, "p7", "web-1", "shop", ipaddress.IPv4Address("192.168.1.9"))
    veth = cali_name("shop", "web-1")
    assert veth.startswith("cali") and len(veth) == 15
    assert plan.link == type(plan.link)("n1", veth, "p7", "eth0")
    assert plan.pod.ip_batch[1:] == (
        "addr add 192.168.1.9/32 dev eth0", "link set dev eth0 up",
        "route add 169.254.1.1 dev eth0 scope link",
        "route add default via 169.254.1.1 dev eth0")
    assert plan.node_batch == (f"link set dev {veth} up",
                               f"route add 192.168.1.9/32 dev {veth} scope link")
    assert (f"net.ipv4.conf.{veth}.proxy_arp", "1") in plan.node_sysctls
    assert (f"net.ipv4.neigh.{veth}.proxy_delay", "0") in plan.node_sysctls
    # as containerd writes a pod's resolv.conf: search, nameserver, options
    assert plan.pod.resolv_conf == ("search shop.svc.cluster.local svc.cluster.local "
                                    "cluster.local\nnameserver 10.96.0.10\n"
                                    "options ndots:5\n")


def test_pod_ip_must_come_from_its_nodes_block():
    with pytest.raises(ValueError, match="outside ip-172-31-0-11's block"):
        plan_pod(load_spec(), 1, "p1", "x", "default", ipaddress.IPv4Address("192.168.2.9"))


def test_dry_run_render_names_every_host_and_link():
    text = render_plan(plan_lab(load_spec()))
    assert "n0 (node ip-172-31-0-10)" in text
    assert "client:eth0 <-> inet:inet-eth2" in text


def test_igw_hosts_the_resolvers_and_public_dns_knows_outside_and_ec2_names():
    spec = load_spec()
    igw = hosts_by_name(plan_lab(spec))["igw"]
    assert "addr add 172.31.0.2/20 dev eth0" in igw.ip_batch
    assert "addr add 203.0.113.53/24 dev eth1" in igw.ip_batch
    records = outside_dns_records(spec)
    assert records["db.example.com"] == ["203.0.113.50"]
    assert records["ip-172-31-0-11.ec2.internal"] == ["172.31.0.11"]
    assert records["ec2-198-51-100-11.compute-1.amazonaws.com"] == ["198.51.100.11"]
