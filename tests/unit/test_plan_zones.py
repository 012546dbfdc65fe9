"""The lab plan with zones: one bridge per zone, the igw as the VPC's router,
nodes routing by zone, the ELB's ENIs; and labs without zones unchanged."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from controlplane.api.bootstrap import node_object
from topo.apihost import cluster_info
from topo.elb import Eni, elb_enis, node_return_path_routes, node_return_path_rules
from topo.network import inter_zone_latency_notice
from topo.plan import describe_zones, plan_lab, render_plan
from topo.spec import load_spec, parse_spec
from topo.state import LabPaths

CLUSTERS = Path(__file__).resolve().parents[2] / "topo" / "clusters"
ZONES_YAML = CLUSTERS / "zones.yaml"
N0, N1, N2, N3 = "172.31.0.10", "172.31.0.11", "172.31.16.12", "172.31.32.13"


def hosts_by_name(plan):
    return {h.host: h for h in plan.hosts}


@pytest.fixture(scope="module")
def spec():
    return load_spec(ZONES_YAML)


@pytest.fixture(scope="module")
def plan(spec):
    return plan_lab(spec)


# SHA-256 of `render_plan(plan_lab(spec))` captured before zones existed, with
# one deliberate change since: each host's `sysctl net.ipv6.conf.default.
# disable_ipv6=1` line is gone (writing `all` sets it; checked: putting the
# line back gives the old hashes a8e87be5... and 1eb284ad...).
BEFORE_ZONES = {
    "default.yaml": "983607c4fa9914cdf8ad83f2705fe1b3c28db7ce2e33ed118b9f1ed8d5322625",
    "ten-by-ten.yaml": "1f8629214c5d0db3de4f1992e05c56e828299d955226a3fe9d49cbb0a6cb6eab",
}


@pytest.mark.parametrize("path", sorted(BEFORE_ZONES))
def test_a_lab_without_zones_plans_exactly_as_before(path):
    plan = plan_lab(load_spec(CLUSTERS / path))
    text = render_plan(plan)
    assert hashlib.sha256(text.encode()).hexdigest() == BEFORE_ZONES[path], text
    assert plan.bridges == ("vpc", "inet") and plan.zones == () and plan.igw_tc == ()


def test_one_bridge_per_zone_and_every_host_on_its_zones(plan):
    assert plan.bridges == ("az1", "az2", "az3", "inet")
    kinds = [(h.host, h.kind) for h in plan.hosts if h.kind == "bridge"]
    assert kinds == [("az1", "bridge"), ("az2", "bridge"), ("az3", "bridge"), ("inet", "bridge")]
    links = {(l.host1, l.intf1): l.host2 for l in plan.links}
    assert links == {
        ("igw", "eth0"): "az1", ("igw", "eth1"): "inet", ("igw", "eth2"): "az2",
        ("igw", "eth3"): "az3",
        ("n0", "eth0"): "az1", ("n1", "eth0"): "az1", ("n2", "eth0"): "az2",
        ("n3", "eth0"): "az3", ("client", "eth0"): "inet",
        ("elb", "eth0"): "az1", ("elb", "eth1"): "inet", ("elb", "eth2"): "az2",
        ("elb", "eth3"): "az3"}
    # bridge ports are unique per bridge
    ports = [(l.host2, l.intf2) for l in plan.links]
    assert len(ports) == len(set(ports))


def test_the_igw_is_the_router_of_every_zone_and_routes_pod_blocks_to_nodes(plan):
    igw = hosts_by_name(plan)["igw"]
    assert igw.ip_batch == (
        "link set dev lo up",
        "addr add 172.31.0.1/20 dev eth0", "addr add 172.31.0.2/20 dev eth0",   # resolver
        "link set dev eth0 up",
        "addr add 203.0.113.1/24 dev eth1", "addr add 203.0.113.53/24 dev eth1",
        "link set dev eth1 up",
        "addr add 172.31.16.1/20 dev eth2", "link set dev eth2 up",
        "addr add 172.31.32.1/20 dev eth3", "link set dev eth3 up",
        f"route add 192.168.0.0/24 via {N0}", f"route add 192.168.1.0/24 via {N1}",
        f"route add 192.168.2.0/24 via {N2}", f"route add 192.168.3.0/24 via {N3}")
    assert ("net.ipv4.ip_forward", "1") in igw.sysctls


def test_the_vpc_resolver_outside_every_zone_stays_on_the_igw():
    spec = parse_spec({"network": {"vpcSubnet": "10.0.0.0/16",
                                   "zones": [{"name": "a", "subnet": "10.0.16.0/20"},
                                             {"name": "b", "subnet": "10.0.32.0/20"}]},
                       "nodes": [{"role": "control-plane"}]})
    igw = hosts_by_name(plan_lab(spec))["igw"]
    assert "addr add 10.0.0.2/32 dev eth0" in igw.ip_batch
    assert "addr add 10.0.16.1/20 dev eth0" in igw.ip_batch


def test_igw_forwards_between_zones_and_still_drops_the_internet_to_pods(plan):
    rules = hosts_by_name(plan)["igw"].iptables.splitlines()
    drop = rules.index('-A IGW-FORWARD -m comment --comment "not translated: dropped" -j DROP')
    for intf, zone in (("eth0", "us-east-1a"), ("eth2", "us-east-1b"), ("eth3", "us-east-1c")):
        rule = (f'-A IGW-FORWARD -i {intf} ! -o eth1 -m comment --comment '
                f'"VPC route table: {zone} to the VPC" -j ACCEPT')
        assert rule in rules and rules.index(rule) < drop
    # nothing accepts new, untranslated traffic from the internet side
    assert not [r for r in rules if "-A IGW-FORWARD -i eth1" in r]
    assert '-A IGW-INBOUND -m comment --comment "no public IP: dropped" -j DROP' in rules
    # 1:1 NAT and hairpin from any zone interface
    assert f"-A IGW-PREROUTING -d 198.51.100.12/32 -j DNAT --to-destination {N2}" in rules
    assert f"-A IGW-POSTROUTING -o eth1 -s {N2}/32 -j SNAT --to-source 198.51.100.12" in rules
    assert (f"-A IGW-POSTROUTING ! -o eth1 -s {N2}/32 -d 172.31.0.0/16 -m conntrack "
            "--ctstate DNAT -j SNAT --to-source 198.51.100.12") in rules
    assert f"-A IGW-FORWARD -i eth2 -o eth1 -s {N2}/32 -j ACCEPT" in rules
    assert f"-A IGW-FORWARD -i eth3 -o eth1 -s {N3}/32 -j ACCEPT" in rules


def test_nodes_route_same_zone_peers_directly_and_other_zones_via_their_router(plan):
    hosts = hosts_by_name(plan)
    assert hosts["n1"].ip_batch[:8] == (
        "link set dev lo up", f"addr add {N1}/20 dev eth0", "link set dev eth0 up",
        "route add default via 172.31.0.1", "route add blackhole 192.168.1.0/24",
        f"route add 192.168.0.0/24 via {N0}",             # same zone: the peer itself
        "route add 192.168.2.0/24 via 172.31.0.1",        # other zones: own router
        "route add 192.168.3.0/24 via 172.31.0.1")
    assert hosts["n2"].ip_batch[:4] == (
        "link set dev lo up", f"addr add {N2}/20 dev eth0", "link set dev eth0 up",
        "route add default via 172.31.16.1")
    assert {line for line in hosts["n2"].ip_batch if line.startswith("route add 192")} == {
        "route add 192.168.0.0/24 via 172.31.16.1", "route add 192.168.1.0/24 via 172.31.16.1",
        "route add 192.168.3.0/24 via 172.31.16.1"}
    assert hosts["n3"].resolv_conf == "search ec2.internal\nnameserver 172.31.0.2\n"


def test_the_elb_has_an_eni_in_every_zone(spec, plan):
    assert elb_enis(spec) == (
        Eni("us-east-1a", "eth0", spec.network.zones[0].elb_address, 20, "0a:e1:ac:1f:00:05"),
        Eni("us-east-1b", "eth2", spec.network.zones[1].elb_address, 20, "0a:e1:ac:1f:10:05"),
        Eni("us-east-1c", "eth3", spec.network.zones[2].elb_address, 20, "0a:e1:ac:1f:20:05"))
    elb = hosts_by_name(plan)["elb"]
    for intf, address, mac in (("eth0", "172.31.0.5", "0a:e1:ac:1f:00:05"),
                               ("eth2", "172.31.16.5", "0a:e1:ac:1f:10:05"),
                               ("eth3", "172.31.32.5", "0a:e1:ac:1f:20:05")):
        assert f"link set dev {intf} address {mac}" in elb.ip_batch
        assert f"addr add {address}/20 dev {intf}" in elb.ip_batch
    assert elb.ip_batch[-1] == "route add default via 203.0.113.1 dev eth1"
    assert elb.addresses == ("172.31.0.5", "203.0.113.10", "172.31.16.5", "172.31.32.5")


def test_without_zones_the_elb_has_one_eni_on_eth0():
    spec = load_spec()
    (eni,) = elb_enis(spec)
    assert (eni.zone, eni.interface, str(eni.address), eni.prefixlen, eni.mac) == (
        None, "eth0", "172.31.0.5", 20, "0a:e1:ac:1f:00:05")


def test_each_node_returns_nlb_replies_to_its_own_zones_eni(spec):
    node_c = spec.nodes[3]
    rules = node_return_path_rules(spec, node_c)
    assert "-i eth0 -m mac --mac-source 0a:e1:ac:1f:20:05" in rules
    assert node_return_path_routes(spec, node_c)[1] == (
        "route add default via 172.31.32.5 dev eth0 table 105")
    node_a = spec.nodes[1]
    assert "--mac-source 0a:e1:ac:1f:00:05" in node_return_path_rules(spec, node_a)


def test_interzone_latency_is_netem_on_the_igws_zone_interfaces(spec, plan):
    assert plan.igw_tc == ("qdisc add dev eth0 root netem delay 1000us",
                           "qdisc add dev eth2 root netem delay 1000us",
                           "qdisc add dev eth3 root netem delay 1000us")
    data = {"network": {"zones": [{"name": "a"}, {"name": "b"}], "interZoneLatency": "250us"},
            "nodes": [{"role": "control-plane"}]}
    assert plan_lab(parse_spec(data)).igw_tc == (
        "qdisc add dev eth0 root netem delay 250us", "qdisc add dev eth2 root netem delay 250us")
    del data["network"]["interZoneLatency"]
    assert plan_lab(parse_spec(data)).igw_tc == ()


def test_dry_run_shows_zones_routes_enis_and_latency(plan):
    text = render_plan(plan)
    assert text.startswith("zones of region us-east-1 in VPC 172.31.0.0/16\n")
    assert ("  us-east-1c 172.31.32.0/20: bridge az3, router 172.31.32.1 (igw eth3), ELB ENI "
            "172.31.32.5 (elb eth3, 0a:e1:ac:1f:20:05); ip-172-31-32-13\n") in text
    assert "  inter-zone latency 1ms (netem on the igw's zone interfaces" in text
    assert "  tc qdisc add dev eth2 root netem delay 1000us  (if the kernel has netem)" in text
    assert "  ip route add 192.168.3.0/24 via 172.31.32.13" in text
    assert "  elb:eth3 <-> az3:az3-eth3" in text


def test_zone_summary_lists_each_zones_nodes(spec):
    lines = describe_zones(spec)
    assert lines[1].endswith("; ip-172-31-0-10, ip-172-31-0-11")
    assert describe_zones(load_spec()) == ()


def test_nodes_carry_zone_and_region_labels_only_with_zones(spec):
    info = cluster_info(spec)
    assert [(n["name"], n["zone"], n["region"]) for n in info["nodes"]] == [
        ("ip-172-31-0-10", "us-east-1a", "us-east-1"),
        ("ip-172-31-0-11", "us-east-1a", "us-east-1"),
        ("ip-172-31-16-12", "us-east-1b", "us-east-1"),
        ("ip-172-31-32-13", "us-east-1c", "us-east-1")]
    labels = node_object(info["nodes"][2])["metadata"]["labels"]
    assert labels["topology.kubernetes.io/zone"] == "us-east-1b"
    assert labels["topology.kubernetes.io/region"] == "us-east-1"
    assert labels["failure-domain.beta.kubernetes.io/zone"] == "us-east-1b"
    assert labels["failure-domain.beta.kubernetes.io/region"] == "us-east-1"
    plain = cluster_info(load_spec())["nodes"][0]
    assert "zone" not in plain and "region" not in plain
    assert not [k for k in node_object(plain)["metadata"]["labels"]
                if "zone" in k or "region" in k]


def test_the_latency_notice_is_what_the_lab_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("SVCLAB_RUN_DIR", str(tmp_path))
    paths = LabPaths("z1")
    assert inter_zone_latency_notice(paths) is None
    (paths.files / "igw").mkdir(parents=True)
    (paths.files / "igw" / "inter-zone-latency.txt").write_text("inter-zone latency not "
                                                                "emulated: no netem\n")
    assert inter_zone_latency_notice(paths) == "inter-zone latency not emulated: no netem"
