"""Availability Zones in the cluster spec: defaults, placement, refusals, --zones."""
from __future__ import annotations

import copy
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from base.errors import SpecError
from topo.spec import load_spec, parse_spec, read_spec_data, with_zones

A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
THREE_ZONES = [{"name": A, "subnet": "172.31.0.0/20"}, {"name": B, "subnet": "172.31.16.0/20"},
               {"name": C, "subnet": "172.31.32.0/20"}]


def zoned(nodes=None, **network):
    """Spec data with three zones (and network fields changed)."""
    return {"network": {"zones": copy.deepcopy(THREE_ZONES), **network},
            "nodes": nodes if nodes is not None else [{"role": "control-plane"}, {}, {}, {}]}


def placed(spec):
    return [(n.name, str(n.address), n.zone) for n in spec.nodes]


def test_zones_default_the_vpc_region_names_and_addresses():
    spec = parse_spec(zoned())
    net = spec.network
    assert (str(net.vpc_subnet), net.region) == ("172.31.0.0/16", "us-east-1")
    assert [(z.name, str(z.subnet), str(z.router), str(z.elb_address)) for z in net.zones] == [
        (A, "172.31.0.0/20", "172.31.0.1", "172.31.0.5"),
        (B, "172.31.16.0/20", "172.31.16.1", "172.31.16.5"),
        (C, "172.31.32.0/20", "172.31.32.1", "172.31.32.5")]
    # round-robin in spec order; the address is the zone's base + 10 + node index,
    # and the name the EC2 name of the address
    assert placed(spec) == [("ip-172-31-0-10", "172.31.0.10", A),
                            ("ip-172-31-16-11", "172.31.16.11", B),
                            ("ip-172-31-32-12", "172.31.32.12", C),
                            ("ip-172-31-0-13", "172.31.0.13", A)]
    assert net.zone(B).subnet == ipaddress.ip_network("172.31.16.0/20")
    assert net.zone_index(C) == 2
    assert str(net.vpc_resolver) == "172.31.0.2" and net.inter_zone_latency == 0.0


def test_zone_subnets_default_to_the_vpcs_slash_20s():
    spec = parse_spec(zoned(zones=[{"name": "a"}, {"name": "b"}], vpcSubnet="10.0.0.0/16"))
    assert [str(z.subnet) for z in spec.network.zones] == ["10.0.0.0/20", "10.0.16.0/20"]


def test_a_node_names_its_zone_or_its_address_places_it():
    spec = parse_spec(zoned([
        {"role": "control-plane", "zone": C},
        {"name": "worker-b", "address": "172.31.17.4"},
        {"zone": A, "address": "172.31.4.27"}]))
    assert placed(spec) == [("ip-172-31-32-10", "172.31.32.10", C),
                            ("worker-b", "172.31.17.4", B),
                            ("ip-172-31-4-27", "172.31.4.27", A)]


def test_the_interzone_latency_is_read_in_seconds():
    for text, seconds in (("1ms", 0.001), ("500us", 0.0005), ("0.2s", 0.2), ("2.5 ms", 0.0025)):
        assert parse_spec(zoned(interZoneLatency=text)).network.inter_zone_latency == seconds


def test_labs_without_zones_are_unchanged():
    spec = load_spec()
    assert spec.network.zones == () and spec.network.region == ""
    assert [n.zone for n in spec.nodes] == [None, None, None]
    assert str(spec.network.vpc_subnet) == "172.31.0.0/20"
    assert str(spec.network.vpc_router) == "172.31.0.1"
    assert str(spec.network.elb_vpc_address) == "172.31.0.5"


def test_the_shipped_three_zone_lab():
    spec = load_spec(Path(__file__).resolve().parents[2] / "topo" / "clusters" / "zones.yaml")
    assert [z.name for z in spec.network.zones] == [A, B, C]
    assert placed(spec) == [("ip-172-31-0-10", "172.31.0.10", A),
                            ("ip-172-31-0-11", "172.31.0.11", A),
                            ("ip-172-31-16-12", "172.31.16.12", B),
                            ("ip-172-31-32-13", "172.31.32.13", C)]
    assert [n.role for n in spec.nodes] == ["control-plane", "worker", "worker", "worker"]


BAD = [
    # (what is wrong, spec data, field named, words in the message)
    ("overlapping zone subnets",
     zoned(zones=[{"name": A, "subnet": "172.31.0.0/20"}, {"name": B, "subnet": "172.31.8.0/21"}]),
     "network.zones[1].subnet", "overlaps network.zones[0].subnet 172.31.0.0/20 (us-east-1a)"),
    ("zone subnet outside the VPC",
     zoned(zones=[{"name": A, "subnet": "172.31.0.0/20"}, {"name": B, "subnet": "10.0.0.0/20"}]),
     "network.zones[1].subnet", "outside network.vpcSubnet 172.31.0.0/16"),
    ("zone subnet outside an explicit VPC",
     zoned(vpcSubnet="172.31.0.0/20"), "network.zones[1].subnet", "outside network.vpcSubnet"),
    ("duplicate zone names",
     zoned(zones=[{"name": A, "subnet": "172.31.0.0/20"}, {"name": A, "subnet": "172.31.16.0/20"}]),
     "network.zones[1].name", "duplicate zone name 'us-east-1a'"),
    ("bad zone name", zoned(zones=[{"name": "US_EAST"}]), "network.zones[0].name", "DNS-1123"),
    ("no zones", zoned(zones=[]), "network.zones", "1 to 6 zones"),
    ("seven zones", zoned(zones=[{"name": f"z{i}"} for i in range(7)]), "network.zones",
     "1 to 6 zones"),
    ("zone subnet too small", zoned(zones=[{"name": A, "subnet": "172.31.0.0/29"}]),
     "network.zones[0].subnet", "/28 or larger"),
    ("unknown zone field", zoned(zones=[{"name": A, "cidr": "172.31.0.0/20"}]),
     "network.zones[0].cidr", "allowed: name, subnet"),
    ("node in an unknown zone", zoned([{"role": "control-plane", "zone": "us-east-1d"}]),
     "nodes[0].zone", "allowed: us-east-1a, us-east-1b, us-east-1c"),
    ("node address outside its zone",
     zoned([{"role": "control-plane", "zone": B, "address": "172.31.0.20"}]),
     "nodes[0].address", "outside zone us-east-1b's subnet 172.31.16.0/20"),
    ("node address in no zone", zoned([{"role": "control-plane", "address": "172.31.200.9"}]),
     "nodes[0].address", "in no zone's subnet"),
    ("zone on a node without zones",
     {"nodes": [{"name": "a", "role": "control-plane", "zone": A}]},
     "nodes[0].zone", "this lab has no zones"),
    ("region without zones", {"network": {"region": "us-west-2"},
                              "nodes": [{"name": "a", "role": "control-plane"}]},
     "network.region", "only in a lab with zones"),
    ("latency without zones", {"network": {"interZoneLatency": "1ms"},
                               "nodes": [{"name": "a", "role": "control-plane"}]},
     "network.interZoneLatency", "only in a lab with zones"),
    ("latency without a unit", zoned(interZoneLatency="1"), "network.interZoneLatency",
     "a delay with a unit"),
    ("latency a number", zoned(interZoneLatency=1), "network.interZoneLatency", "us, ms or s"),
    ("latency words", zoned(interZoneLatency="fast"), "network.interZoneLatency", "e.g. 1ms"),
    ("latency negative", zoned(interZoneLatency="-1ms"), "network.interZoneLatency", "e.g. 1ms"),
    ("latency zero", zoned(interZoneLatency="0ms"), "network.interZoneLatency",
     "greater than 0"),
    ("latency too long", zoned(interZoneLatency="2s"), "network.interZoneLatency",
     "at most 1s"),
    ("bad region", zoned(region="US East"), "network.region", "DNS-1123"),
    ("client named like a zone bridge", {**zoned(), "clients": [{"name": "az2"}]},
     "clients[0].name", "already taken"),
    ("duplicate default names", zoned([{"role": "control-plane"},
                                       {"name": "ip-172-31-16-12", "zone": A}, {"zone": B}]),
     "nodes[2].name", "duplicate node name"),
]


@pytest.mark.parametrize("what,data,field,words", BAD, ids=[b[0] for b in BAD])
def test_bad_zone_specs_name_the_field(what, data, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.field == field, str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5, 4095])
def test_aws_reserves_addresses_in_every_zone_subnet(offset):
    """First four, .5 (the ELB's ENI in the zone) and the last, in each zone."""
    address = ipaddress.ip_address("172.31.16.0") + offset
    with pytest.raises(SpecError) as err:
        parse_spec(zoned([{"role": "control-plane", "zone": B, "address": str(address)}]))
    assert err.value.field == "nodes[0].address" and "reserved" in str(err.value)
    assert parse_spec(zoned([{"role": "control-plane", "zone": B,
                              "address": "172.31.16.4"}])).nodes[0].zone == B


# --- svclab up --zones N ----------------------------------------------------------

def test_zones_transform_spreads_the_seed_cluster_and_renames_its_nodes():
    data = read_spec_data()
    before = copy.deepcopy(data)
    spec = parse_spec(with_zones(data, 3))
    assert data == before                      # pure: the input is left alone
    assert str(spec.network.vpc_subnet) == "172.31.0.0/16"
    assert [z.name for z in spec.network.zones] == [A, B, C]
    assert [str(z.subnet) for z in spec.network.zones] == [
        "172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]
    assert placed(spec) == [("ip-172-31-0-10", "172.31.0.10", A),
                            ("ip-172-31-16-11", "172.31.16.11", B),
                            ("ip-172-31-32-12", "172.31.32.12", C)]
    # what the seed cluster has besides nodes stays
    assert [o.name for o in spec.outside] == ["db.example.com"]
    assert load_spec(zones=3) == spec


def test_one_zone_keeps_the_seed_subnet_and_names():
    spec = load_spec(zones=1)
    assert str(spec.network.vpc_subnet) == "172.31.0.0/20"
    assert placed(spec) == [("ip-172-31-0-10", "172.31.0.10", A),
                            ("ip-172-31-0-11", "172.31.0.11", A),
                            ("ip-172-31-0-12", "172.31.0.12", A)]


@pytest.mark.parametrize("count", [1, 2, 4, 5, 6])
def test_zones_are_named_and_laid_out_like_the_default_vpc(count):
    zones = parse_spec(with_zones({"nodes": [{"name": "cp", "role": "control-plane"}]},
                                  count)).network.zones
    assert [z.name for z in zones] == [f"us-east-1{c}" for c in "abcdef"[:count]]
    assert [str(z.subnet) for z in zones] == [f"172.31.{16 * i}.0/20" for i in range(count)]


def test_zones_transform_keeps_explicit_names_and_addresses_that_fit():
    spec = parse_spec(with_zones({"nodes": [
        {"name": "cp", "role": "control-plane"},
        {"name": "w1", "address": "172.31.4.27"},
        {"name": "ip-172-31-0-99"}]}, 2))
    assert placed(spec) == [("cp", "172.31.0.10", A), ("w1", "172.31.4.27", A),
                            ("ip-172-31-0-99", "172.31.0.12", A)]


ZONES_BAD = [
    ("zero zones", {"nodes": []}, 0, "--zones", "allowed: 1 to 6"),
    ("seven zones", {"nodes": []}, 7, "--zones", "allowed: 1 to 6"),
    ("spec with zones", zoned(), 2, "--zones", "lists network.zones already"),
    ("address in no zone", {"nodes": [{"name": "a", "role": "control-plane"},
                                      {"name": "b", "address": "172.31.40.9"}]}, 2,
     "nodes[1].address", "in none of the subnets of --zones 2"),
    ("VPC elsewhere", {"network": {"vpcSubnet": "10.0.0.0/16"}, "nodes": []}, 3,
     "network.vpcSubnet", "cannot hold the subnets of --zones 3"),
]


@pytest.mark.parametrize("what,data,count,field,words", ZONES_BAD, ids=[b[0] for b in ZONES_BAD])
def test_zones_transform_refuses_what_does_not_fit(what, data, count, field, words):
    with pytest.raises(SpecError) as err:
        with_zones(data, count)
    assert err.value.field == field, str(err.value)
    assert words in str(err.value)


def _cli(*args, run_dir):
    return subprocess.run([sys.executable, "-m", "svclab.cli", *args], capture_output=True,
                          text=True, env={"SVCLAB_RUN_DIR": str(run_dir), "PATH": "/usr/bin:/bin"})


def test_cli_dry_run_with_zones_shows_the_zones(tmp_path):
    proc = _cli("up", "--zones", "3", "--dry-run", run_dir=tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "us-east-1b 172.31.16.0/20: bridge az2, router 172.31.16.1 (igw eth2)" in proc.stdout
    assert "n1 (node ip-172-31-16-11)" in proc.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,words", [
    (["--zones", "9"], "--zones: invalid value 9; allowed: 1 to 6"),
    (["--zones", "x"], "invalid int value"),
])
def test_cli_refuses_bad_zone_counts_with_exit_2(tmp_path, args, words):
    proc = _cli("up", *args, run_dir=tmp_path / "run")
    assert proc.returncode == 2 and words in proc.stderr
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_bad_zone_spec_before_starting_anything(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(zoned([{"role": "control-plane", "zone": "us-east-1z"}])))
    proc = _cli("up", "-f", str(spec), run_dir=tmp_path / "run")
    assert proc.returncode == 2
    assert "nodes[0].zone: unknown zone 'us-east-1z'" in proc.stderr
    assert not (tmp_path / "run").exists()
