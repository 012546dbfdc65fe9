"""Cluster spec validation: good specs become data, bad ones name the field."""
from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest
import yaml

from base.errors import SpecError
from topo.spec import load_spec, parse_spec

DEFAULT_NODES = [{"name": "ip-172-31-0-10", "role": "control-plane"},
                 {"name": "ip-172-31-0-11"}]


def spec_with(**changes):
    data = {"nodes": [dict(n) for n in DEFAULT_NODES]}
    data.update(changes)
    return data


def test_default_spec_is_the_seed_cluster():
    spec = load_spec()
    assert [(n.name, n.role, str(n.address), str(n.public_ip), str(n.pod_block))
            for n in spec.nodes] == [
        ("ip-172-31-0-10", "control-plane", "172.31.0.10", "198.51.100.10", "192.168.0.0/24"),
        ("ip-172-31-0-11", "worker", "172.31.0.11", "198.51.100.11", "192.168.1.0/24"),
        ("ip-172-31-0-12", "worker", "172.31.0.12", "198.51.100.12", "192.168.2.0/24"),
    ]
    assert [(c.name, str(c.address)) for c in spec.clients] == [("client", "203.0.113.100")]
    assert [(o.name, str(o.address), o.ports) for o in spec.outside] == [
        ("db.example.com", "203.0.113.50", ((5432, "TCP"), (80, "TCP")))]
    assert spec.proxy_mode == "iptables" and spec.switch == "linuxbridge"
    assert str(spec.network.vpc_resolver) == "172.31.0.2"
    assert spec.network.node_port_range == (30000, 32767)


def test_explicit_addresses_and_proxy_mode_override():
    spec = parse_spec(spec_with(
        proxyMode="nftables",
        nodes=[{"name": "cp", "role": "control-plane", "address": "172.31.4.27",
                "publicIP": "198.51.100.99", "staticPods": 3}]))
    node = spec.nodes[0]
    assert (str(node.address), str(node.public_ip), node.static_pods) == (
        "172.31.4.27", "198.51.100.99", 3)
    assert spec.proxy_mode == "nftables"
    assert load_spec(proxy_mode="nftables").proxy_mode == "nftables"


BAD_SPECS = [
    # (what is wrong, spec data, field named, words in the message)
    ("unknown top field", spec_with(nodez=[]), "nodez", "allowed: apiVersion"),
    ("unknown node field", spec_with(nodes=[{"name": "a", "role": "control-plane",
                                              "adress": "172.31.0.9"}]),
     "nodes[0].adress", "allowed: name, role, address"),
    ("bad node name", spec_with(nodes=[{"name": "Node_1", "role": "control-plane"}]),
     "nodes[0].name", "DNS-1123"),
    ("duplicate node", spec_with(nodes=[{"name": "a", "role": "control-plane"},
                                        {"name": "a"}]), "nodes[1].name", "duplicate"),
    ("unknown role", spec_with(nodes=[{"name": "a", "role": "master"}]),
     "nodes[0].role", "allowed: control-plane, worker"),
    ("no control plane", spec_with(nodes=[{"name": "a"}]), "nodes", "control-plane"),
    ("overlapping CIDRs", spec_with(network={"podCIDR": "172.31.0.0/16"}),
     "network.podCIDR", "overlaps"),
    ("service CIDR overlaps pods", spec_with(network={"serviceCIDR": "192.168.128.0/20"}),
     "network.serviceCIDR", "overlaps"),
    ("public range not documentation", spec_with(network={"publicIPs": "8.8.8.0/24"}),
     "network.publicIPs", "documentation"),
    ("vpc not private", spec_with(network={"vpcSubnet": "100.64.0.0/20"}),
     "network.vpcSubnet", "private"),
    ("bad CIDR", spec_with(network={"podCIDR": "192.168.0.1/16"}),
     "network.podCIDR", "host bits"),
    ("too many pods", spec_with(nodes=[{"name": "a", "role": "control-plane",
                                         "staticPods": 300}]),
     "nodes[0].staticPods", "at most 254"),
    ("pods negative", spec_with(nodes=[{"name": "a", "role": "control-plane",
                                         "staticPods": -1}]),
     "nodes[0].staticPods", ">= 0"),
    ("address outside VPC", spec_with(nodes=[{"name": "a", "role": "control-plane",
                                               "address": "10.0.0.5"}]),
     "nodes[0].address", "outside 172.31.0.0/20"),
    ("AWS-reserved address", spec_with(nodes=[{"name": "a", "role": "control-plane",
                                                 "address": "172.31.0.2"}]),
     "nodes[0].address", "reserved"),
    ("bad proxy mode", spec_with(proxyMode="ipvs"), "proxyMode",
     "allowed: iptables, nftables"),
    ("bad switch", spec_with(switch="ovs-dpdk"), "switch", "allowed: linuxbridge, ovs"),
    ("bad nodeport range", spec_with(network={"nodePortRange": "32767-30000"}),
     "network.nodePortRange", "LOW < HIGH"),
    ("more nodes than blocks", spec_with(network={"podBlockPrefix": 16}),
     "nodes", "blocks"),
    ("client name taken", spec_with(clients=[{"name": "igw"}]), "clients[0].name",
     "already taken"),
    ("client on an ELB VIP", spec_with(clients=[{"name": "c", "address": "203.0.113.12"}]),
     "clients[0].address", "reserved"),
    ("bad time factor", spec_with(timeFactor=0), "timeFactor", "greater than 0"),
    ("client outside internet", spec_with(clients=[{"name": "c", "address": "198.51.100.7"}]),
     "clients[0].address", "outside 203.0.113.0/24"),
    ("not a mapping", ["nodes"], "spec", "mapping"),
    ("outside name without domain", spec_with(outside=[{"name": "db"}]), "outside[0].name",
     "public DNS name"),
    ("outside bad port", spec_with(outside=[{"name": "db.example.com", "ports": ["99999"]}]),
     "outside[0].ports[0]", "PORT[/TCP|/UDP]"),
    ("outside address clash", spec_with(clients=[{"name": "c", "address": "203.0.113.60"}],
                                        outside=[{"name": "a.example.com",
                                                  "address": "203.0.113.60"}]),
     "outside[0].address", "already used"),
]


@pytest.mark.parametrize("what,data,field,words", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_specs_name_the_field(what, data, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.field == field, str(err.value)
    assert words in str(err.value)


def test_cli_rejects_a_bad_spec_with_exit_2_and_creates_no_state(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(spec_with(network={"podCIDR": "172.31.0.0/16"})))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "svclab.cli", "up", "-f", str(spec)],
                          capture_output=True, text=True,
                          env={"SVCLAB_RUN_DIR": str(run_dir), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "network.podCIDR" in proc.stderr and "overlaps network.vpcSubnet" in proc.stderr
    assert not run_dir.exists()


def test_unreadable_and_invalid_yaml_files_are_usage_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("nodes: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)


def test_pod_blocks_follow_node_order():
    spec = parse_spec(spec_with(network={"podCIDR": "10.244.0.0/16", "podBlockPrefix": 26}))
    assert [n.pod_block for n in spec.nodes] == [
        ipaddress.ip_network("10.244.0.0/26"), ipaddress.ip_network("10.244.0.64/26")]
