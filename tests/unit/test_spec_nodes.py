"""Where a joining node goes, what a leaving one may be, and the spec file
that keeps both (topo/spec_nodes.py, the spec's podBlock field)."""
from __future__ import annotations

import ipaddress

import pytest

from base.errors import SpecError
from topo.plan import peer_route, plan_lab, plan_node, render_igw_chains, render_igw_rules
from topo.spec import load_spec, parse_spec, read_spec_data, with_zones
from topo.spec_nodes import join_node, leave_node, nodes_data


def reparsed(spec, data=None):
    """The spec as the lab's spec file gives it back after nodes came and went."""
    data = dict(data or read_spec_data(None))
    data["nodes"] = nodes_data(spec)
    return parse_spec(data)


def test_a_joining_node_takes_the_next_free_address_public_ip_and_pod_block():
    spec = join_node(load_spec())
    node = spec.nodes[-1]
    assert (node.name, node.role, str(node.address), str(node.public_ip), str(node.pod_block),
            node.zone) == ("ip-172-31-0-13", "worker", "172.31.0.13", "198.51.100.13",
                           "192.168.3.0/24", None)


def test_a_named_node_at_a_chosen_address():
    node = join_node(load_spec(), "big-worker", address="172.31.1.7").nodes[-1]
    assert (node.name, str(node.address)) == ("big-worker", "172.31.1.7")


def test_a_node_that_left_frees_its_block_and_the_others_keep_theirs():
    spec, gone = leave_node(load_spec(), "ip-172-31-0-11")
    assert str(gone.pod_block) == "192.168.1.0/24"
    spec = reparsed(spec)
    assert [(n.name, str(n.address), str(n.pod_block)) for n in spec.nodes] == [
        ("ip-172-31-0-10", "172.31.0.10", "192.168.0.0/24"),
        ("ip-172-31-0-12", "172.31.0.12", "192.168.2.0/24")]
    again = join_node(spec).nodes[-1]
    assert (str(again.address), str(again.pod_block)) == ("172.31.0.11", "192.168.1.0/24")


def test_the_spec_file_parses_back_to_the_same_nodes():
    spec = join_node(join_node(load_spec(), zone=None), "w9", address="172.31.2.9")
    spec, _ = leave_node(spec, "ip-172-31-0-12")
    assert reparsed(spec).nodes == spec.nodes


def test_with_zones_a_node_joins_the_zone_with_fewest_nodes():
    spec = load_spec(zones=3)
    spec = join_node(spec)     # every zone has one: the first
    assert (spec.nodes[-1].zone, str(spec.nodes[-1].address)) == ("us-east-1a", "172.31.0.11")
    spec = join_node(spec)
    assert spec.nodes[-1].zone == "us-east-1b"
    assert spec.nodes[-1].address in ipaddress.ip_network("172.31.16.0/20")
    spec = join_node(spec, zone="us-east-1c")
    node = spec.nodes[-1]
    assert node.name == f"ip-{str(node.address).replace('.', '-')}"
    assert reparsed(spec, with_zones(read_spec_data(None), 3)).nodes == spec.nodes


@pytest.mark.parametrize(("kwargs", "field", "says"), [
    ({"name": "ip-172-31-0-11"}, "name", "already exists"),
    ({"name": "Bad_Name"}, "name", ""),
    ({"address": "10.0.0.9"}, "address", "outside 172.31.0.0/20"),
    ({"address": "172.31.0.10"}, "address", "already used by node ip-172-31-0-10"),
    ({"address": "172.31.0.2"}, "address", "reserved"),
    ({"address": "not-an-ip"}, "address", "allowed: an IPv4 address"),
    ({"zone": "us-east-1a"}, "zone", "this lab has no zones"),
    ({"role": "control-plane"}, "role", "allowed: worker"),
])
def test_bad_joins_name_the_field(kwargs, field, says):
    with pytest.raises(SpecError) as err:
        join_node(load_spec(), **kwargs)
    assert err.value.field == field and says in err.value.message


def test_a_zone_that_does_not_exist_lists_the_zones():
    with pytest.raises(SpecError, match="zone: no zone 'us-west-2a'; allowed: us-east-1a, "
                                        "us-east-1b, us-east-1c"):
        join_node(load_spec(zones=3), zone="us-west-2a")


def test_the_control_plane_and_unknown_nodes_cannot_leave():
    with pytest.raises(SpecError, match="node: ip-172-31-0-10 is the control plane"):
        leave_node(load_spec(), "ip-172-31-0-10")
    with pytest.raises(SpecError, match="node: no node 'x'; nodes: ip-172-31-0-10"):
        leave_node(load_spec(), "x")


@pytest.mark.parametrize(("block", "says"), [
    ("192.168.1.0/25", "not a pod block"),
    ("10.0.0.0/24", "not a pod block"),
    ("192.168.5.0/24", "already used by another node"),    # nodes[0] has it
    ("nope", "IPv4 CIDR"),
])
def test_a_bad_pod_block_in_a_spec_names_the_field(block, says):
    """Blocks a spec names are kept; the other nodes take the free ones."""
    data = read_spec_data(None)
    data["nodes"][0]["podBlock"] = "192.168.5.0/24"
    data["nodes"][1]["podBlock"] = block
    with pytest.raises(SpecError, match=says) as err:
        parse_spec(data)
    assert err.value.field == "nodes[1].podBlock"


def test_a_joined_node_is_planned_as_if_it_had_been_there_from_the_start():
    spec = join_node(load_spec(zones=3), zone="us-east-1b")
    node = spec.nodes[-1]
    planned = next(h for h in plan_lab(spec).hosts if h.name == node.name)
    assert plan_node(spec, node, planned.host) == planned
    # Each old node learns the new block: directly in its zone, else via its router.
    assert [peer_route(spec, peer, node) for peer in spec.nodes[:3]] == [
        "192.168.3.0/24 via 172.31.0.1", "192.168.3.0/24 via 172.31.16.10",
        "192.168.3.0/24 via 172.31.32.1"]


def test_the_igw_chains_alone_are_the_rules_without_the_jumps():
    spec = join_node(load_spec())
    full, chains = render_igw_rules(spec).splitlines(), render_igw_chains(spec).splitlines()
    jumps = [line for line in full if line not in chains]
    assert jumps == ["-A PREROUTING -i eth1 -j IGW-INBOUND", "-A PREROUTING -j IGW-PREROUTING",
                     "-A POSTROUTING -j IGW-POSTROUTING", "-A FORWARD -j IGW-FORWARD"]
    assert "-A IGW-PREROUTING -d 198.51.100.13/32 -j DNAT --to-destination 172.31.0.13" in chains
