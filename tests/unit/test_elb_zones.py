"""The ELB across Availability Zones, its pure parts: the config with zone
nodes, which targets each zone's node sends to, the NLB rules per VIP, the
DNS answer (a zone out, failing open), the cross-zone annotation, VIPs per
zone, and what `svclab lb status` shows."""
from __future__ import annotations

import pytest

from agents.elb.health import TargetHealth
from agents.elb.rules import listener_chain, parse_dnat_counts, render_rules
from agents.elb.status import healthy_nodes, lb_status, node_in_service, nodes_in_service
from base.elb_api import (
    ElbConfig,
    ElbConfigError,
    HealthCheck,
    Listener,
    LoadBalancer,
    Target,
    ZoneNode,
    config_to_json,
    dns_answer,
    parse_config,
)
from controlplane.cloud.lbconfig import (
    CROSS_ZONE_ANNOTATION,
    TYPE_ANNOTATION,
    LoadBalancerProblem,
    compute_load_balancer,
    target_nodes,
)
from controlplane.cloud.zones import (
    allocate_node_vips,
    enabled_zones,
    place,
    published_addresses,
)
from labd.elb import eni_source_routes, missing_rules, zone_enis
from labd.lb_status import render_lb_status
from topo.spec import default_spec_path, load_spec

CHECK = HealthCheck("TCP", 31000, interval=1.0, timeout=1.0, healthy_threshold=2,
                    unhealthy_threshold=2)
A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
ENIS = {A: "172.31.0.5", B: "172.31.16.5", C: "172.31.32.5"}
NODES = (ZoneNode(A, "203.0.113.11", ENIS[A]), ZoneNode(B, "203.0.113.12", ENIS[B]),
         ZoneNode(C, "203.0.113.13", ENIS[C]))
TARGETS = (Target("ip-172-31-0-11", "172.31.0.11", A),
           Target("ip-172-31-16-12", "172.31.16.12", B),
           Target("ip-172-31-16-14", "172.31.16.14", B),
           Target("ip-172-31-32-13", "172.31.32.13", C))


def zoned(flavour="nlb", cross_zone=False, targets=TARGETS, nodes=NODES):
    return LoadBalancer("default/web", "uid-1", "a1-0123456789abcdef.elb.us-east-1.amazonaws.com",
                        flavour, nodes[0].vip, (Listener(80, "TCP", 31000),), targets, CHECK,
                        zone_nodes=nodes, cross_zone=cross_zone)


def health(**states):
    """address -> TargetHealth in the given state ('healthy', 'unhealthy', 'initial')."""
    out = {}
    for target in TARGETS:
        state = states.get(target.address.replace(".", "_"), "healthy")
        h = TargetHealth(target.node, target.address)
        if state != "initial":
            for i in range(2):
                h = h.observe(state == "healthy", "ok" if state == "healthy" else "timeout",
                              1_700_000_000.0 + i, CHECK)
        out[target.address] = h
    return out


def down(*addresses):
    return health(**{a.replace(".", "_"): "unhealthy" for a in addresses})


# --- the config ------------------------------------------------------------------------

def test_a_config_with_zones_survives_its_json_round_trip():
    config = ElbConfig((zoned(cross_zone=True),))
    data = config_to_json(config)
    assert data["loadBalancers"][0]["zoneNodes"][1] == {
        "zone": B, "vip": "203.0.113.12", "eni": "172.31.16.5"}
    assert data["loadBalancers"][0]["targets"][0]["zone"] == A
    assert data["loadBalancers"][0]["crossZone"] is True
    assert parse_config(data) == config


def test_a_config_without_zones_parses_as_one_node_without_a_zone():
    data = config_to_json(ElbConfig((zoned(nodes=NODES[:1]),)))
    lb = data["loadBalancers"][0]
    for key in ("zoneNodes", "crossZone"):
        del lb[key]                         # a file written before zones existed
    for target in lb["targets"]:
        del target["zone"]
    (parsed,) = parse_config(data).load_balancers
    assert parsed.zone_nodes == () and parsed.nodes == (ZoneNode(None, "203.0.113.11", None),)
    assert parsed.targets_for(parsed.nodes[0]) == parsed.targets      # every target


@pytest.mark.parametrize("change, field", [
    (lambda lb: lb.update(vip="203.0.113.12"), "loadBalancers[0].vip"),
    (lambda lb: lb["zoneNodes"][2].update(zone=A), "loadBalancers[0].zoneNodes"),
    (lambda lb: lb["zoneNodes"][2].update(eni="nope"), "loadBalancers[0].zoneNodes[2].eni"),
    (lambda lb: lb.update(crossZone="yes"), "loadBalancers[0].crossZone"),
    (lambda lb: lb["targets"][0].update(zone=3), "loadBalancers[0].targets[0].zone"),
])
def test_a_broken_zone_field_is_named(change, field):
    data = config_to_json(ElbConfig((zoned(),)))
    change(data["loadBalancers"][0])
    with pytest.raises(ElbConfigError) as err:
        parse_config(data)
    assert err.value.field == field


def test_two_load_balancers_cannot_share_a_zone_vip():
    other = LoadBalancer("default/other", "uid-2", "other.elb", "nlb", "203.0.113.20",
                         (Listener(80, "TCP", 31001),), (), CHECK,
                         zone_nodes=(ZoneNode(A, "203.0.113.20", ENIS[A]),
                                     ZoneNode(B, "203.0.113.12", ENIS[B])))
    with pytest.raises(ElbConfigError, match="duplicate vip"):
        parse_config(config_to_json(ElbConfig((zoned(), other))))


# --- who sends to whom -------------------------------------------------------------------

def test_cross_zone_off_each_node_sends_only_to_healthy_targets_in_its_zone():
    lb = zoned()
    serving = nodes_in_service(lb, down("172.31.16.14"))
    assert serving == {"203.0.113.11": ("172.31.0.11",), "203.0.113.12": ("172.31.16.12",),
                       "203.0.113.13": ("172.31.32.13",)}


def test_cross_zone_on_every_node_sends_to_every_healthy_target():
    lb = zoned(cross_zone=True)
    serving = nodes_in_service(lb, down("172.31.32.13"))
    wanted = ("172.31.0.11", "172.31.16.12", "172.31.16.14")
    assert serving == dict.fromkeys(("203.0.113.11", "203.0.113.12", "203.0.113.13"), wanted)


def test_a_target_in_a_zone_the_elb_is_not_in_gets_nothing():
    stray = TARGETS + (Target("ip-10", "172.31.48.10", "us-east-1d"),
                       Target("ip-11", "172.31.0.99", None))
    for cross_zone in (False, True):
        lb = zoned(cross_zone=cross_zone, targets=stray)
        reached = {t.address for n in lb.nodes for t in lb.targets_for(n)}
        assert reached == {t.address for t in TARGETS}


def test_an_all_unhealthy_nlb_fails_open_within_each_nodes_reach_and_classic_sends_nothing():
    everything = down(*(t.address for t in TARGETS))
    assert node_in_service(zoned(), NODES[1], everything) == ("172.31.16.12", "172.31.16.14")
    assert node_in_service(zoned(cross_zone=True), NODES[1], everything) == tuple(
        sorted(t.address for t in TARGETS))
    assert node_in_service(zoned("classic"), NODES[1], everything) == ()
    # one zone's targets down is not failing open: that node has nothing
    assert node_in_service(zoned(), NODES[2], down("172.31.32.13")) == ()


def test_initial_targets_get_nothing_and_do_not_fail_open():
    starting = health(**{t.address.replace(".", "_"): "initial" for t in TARGETS})
    assert nodes_in_service(zoned(), starting) == dict.fromkeys(
        ("203.0.113.11", "203.0.113.12", "203.0.113.13"), ())


# --- the NLB rules per VIP ---------------------------------------------------------------

def test_each_vip_dnats_only_to_what_its_node_sends_to():
    lb = zoned()
    serving = {(lb.key, vip): targets for vip, targets in nodes_in_service(lb, health()).items()}
    text = render_rules([lb], {}, serving=serving).splitlines()
    for node, wanted in zip(NODES, (["172.31.0.11"], ["172.31.16.12", "172.31.16.14"],
                                    ["172.31.32.13"])):
        chain = listener_chain(lb, 80, "TCP", node.vip)
        jump = [l for l in text if l.startswith("-A ELB-PREROUTING") and l.endswith(chain)]
        assert len(jump) == 1 and f"-d {node.vip}/32" in jump[0] and node.zone in jump[0]
        dnat = [l.split("--to-destination ")[1] for l in text if l.startswith(f"-A {chain} ")]
        assert dnat == [f"{a}:31000" for a in wanted]
    assert sum(l.startswith("-A ELB-FIREWALL") and "not a listener" in l for l in text) == 3


def test_a_zone_node_without_targets_in_reach_drops():
    lb = zoned(targets=TARGETS[:3])                 # nothing registered in us-east-1c
    text = render_rules([lb], {}, serving={}).splitlines()
    dropped = [l for l in text if "no targets" in l and l.startswith("-A ELB-FIREWALL")]
    assert len(dropped) == 1 and "-d 203.0.113.13/32" in dropped[0] and C in dropped[0]
    assert dropped[0].endswith("-j DROP")
    cross = render_rules([zoned(targets=TARGETS[:3], cross_zone=True)], {}, serving={})
    assert "no targets" not in cross


def test_a_lab_without_zones_renders_as_before():
    lb = zoned(nodes=(ZoneNode(None, "203.0.113.11", None),))
    single = LoadBalancer(lb.key, lb.uid, lb.hostname, "nlb", "203.0.113.11", lb.listeners,
                          tuple(Target(t.node, t.address) for t in TARGETS), CHECK)
    addresses = tuple(t.address for t in TARGETS)
    assert listener_chain(single, 80, "TCP") == listener_chain(single, 80, "TCP",
                                                               "203.0.113.11")
    text = render_rules([single], {single.key: addresses})
    assert text.count("--to-destination") == 4 and "us-east-1" not in text


def test_dnat_counters_are_read_per_chain_and_target():
    lb = zoned()
    chain = listener_chain(lb, 80, "TCP", "203.0.113.12")
    save = "\n".join((
        "*nat", f":{chain} - [0:0]",
        f'[7:420] -A {chain} -p tcp -m comment --comment "target 172.31.16.12" -m statistic '
        "--mode random --probability 0.50000000000 -j DNAT --to-destination 172.31.16.12:31000",
        f'[5:300] -A {chain} -p tcp -m comment --comment "target 172.31.16.14" '
        "-j DNAT --to-destination 172.31.16.14:31000",
        "[9:540] -A KUBE-SEP-X -p tcp -j DNAT --to-destination 192.168.1.5:80", "COMMIT"))
    assert parse_dnat_counts(save) == {chain: {"172.31.16.12": 7, "172.31.16.14": 5}}


# --- DNS -----------------------------------------------------------------------------------

def test_dns_answers_one_address_per_zone_node_with_a_healthy_target():
    lb = zoned()
    assert dns_answer(lb, healthy_nodes(lb, health())) == (
        "203.0.113.11", "203.0.113.12", "203.0.113.13")


def test_a_zone_whose_targets_are_unhealthy_leaves_dns_unless_cross_zone_is_on():
    gone_c = down("172.31.32.13")
    assert dns_answer(zoned(), healthy_nodes(zoned(), gone_c)) == (
        "203.0.113.11", "203.0.113.12")
    # cross-zone on: every node can send to a healthy target elsewhere
    lb = zoned(cross_zone=True)
    assert dns_answer(lb, healthy_nodes(lb, gone_c)) == lb.vips


def test_dns_fails_open_when_no_zone_has_a_healthy_target():
    lb = zoned()
    everything = down(*(t.address for t in TARGETS))
    assert healthy_nodes(lb, everything) == frozenset()
    assert dns_answer(lb, frozenset()) == lb.vips


def test_the_controller_publishes_from_the_agents_report():
    lb = zoned()
    report = lb_status(lb, down("172.31.0.11"), (), {}, {})
    assert [n["inDns"] for n in report["zoneNodes"]] == [False, True, True]
    assert published_addresses(lb, report) == ("203.0.113.12", "203.0.113.13")
    assert published_addresses(lb, None) == lb.vips          # not reported on yet
    assert published_addresses(lb, {**report, "uid": "an-older-one"}) == lb.vips
    nothing = lb_status(lb, down(*(t.address for t in TARGETS)), (), {}, {})
    assert published_addresses(lb, nothing) == lb.vips         # fail open


# --- the Service side ------------------------------------------------------------------------

def service(annotations=None):
    return {"metadata": {"name": "web", "namespace": "default", "uid": "uid-1",
                         "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer",
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]}}


def node(name, ip, zone=None, excluded=False):
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    if excluded:
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    return {"metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


K8S_NODES = [node("ip-172-31-0-10", "172.31.0.10", A, excluded=True),
             node("ip-172-31-16-12", "172.31.16.12", B),
             node("ip-172-31-32-13", "172.31.32.13", C)]


@pytest.mark.parametrize("flavour", [{}, {TYPE_ANNOTATION: "nlb"}])
def test_cross_zone_is_off_unless_the_annotation_says_true(flavour):
    lb = compute_load_balancer(service(flavour), K8S_NODES, "203.0.113.11", 0.1)
    assert lb.cross_zone is False
    for value, wanted in (("true", True), ("True", True), ("1", True), ("false", False),
                          ("F", False), ("", False)):
        annotated = service({**flavour, CROSS_ZONE_ANNOTATION: value})
        assert compute_load_balancer(annotated, K8S_NODES, "v", 0.1).cross_zone is wanted


def test_a_bad_cross_zone_value_names_the_annotation_and_the_allowed_values():
    with pytest.raises(LoadBalancerProblem) as err:
        compute_load_balancer(service({CROSS_ZONE_ANNOTATION: "yes"}), K8S_NODES, "v", 0.1)
    assert CROSS_ZONE_ANNOTATION in str(err.value) and "'yes'" in str(err.value)
    assert "allowed: true or false" in str(err.value)


def test_targets_carry_their_nodes_zone_label():
    assert target_nodes(K8S_NODES) == (Target("ip-172-31-16-12", "172.31.16.12", B),
                                       Target("ip-172-31-32-13", "172.31.32.13", C))
    assert target_nodes([node("n", "172.31.0.11")]) == (Target("n", "172.31.0.11", None),)


def test_enabled_zones_are_the_elbs_zones_where_nodes_are():
    assert enabled_zones(K8S_NODES, ENIS) == (A, B, C)      # the control plane counts
    assert enabled_zones(K8S_NODES[1:], ENIS) == (B, C)
    assert enabled_zones([node("x", "172.31.0.9", "eu-west-1a")], ENIS) == ()
    assert enabled_zones(K8S_NODES, {}) == ()                # a lab without zones


def test_each_zone_node_gets_a_vip_and_a_new_lb_gets_all_or_none():
    pool = [f"203.0.113.{i}" for i in range(11, 18)]        # 7 addresses
    zones = (A, B, C)
    first = allocate_node_vips([("one", zones), ("two", zones)], {}, pool)
    assert [first[("one", z)] for z in zones] == pool[:3]
    assert [first[("two", z)] for z in zones] == pool[3:6]
    # a third LB needs 3, 1 is free: it gets none (stays pending)
    third = allocate_node_vips([("one", zones), ("two", zones), ("three", zones)], first, pool)
    assert not any(k[0] == "three" for k in third) and third == first
    # "one" goes; "three" gets its addresses, lowest first
    after = allocate_node_vips([("two", zones), ("three", zones)], third, pool)
    assert [after[("three", z)] for z in zones] == [pool[0], pool[1], pool[2]]
    # an LB that has nodes keeps them and gets what is free for a new zone
    grown = allocate_node_vips([("two", (A, B, C, "us-east-1d"))], after, pool[:6])
    assert grown == {**{k: v for k, v in after.items() if k[0] == "two"},
                     ("two", "us-east-1d"): pool[0]}


def test_place_gives_the_lb_its_zone_nodes_or_its_single_vip():
    lb = compute_load_balancer(service(), K8S_NODES, "0.0.0.0", 0.1)
    vips = {("uid-1", A): "203.0.113.21", ("uid-1", B): "203.0.113.22"}
    placed = place(lb, (A, B, C), vips, ENIS)
    assert placed.vip == "203.0.113.21" and placed.zone_nodes == (
        ZoneNode(A, "203.0.113.21", ENIS[A]), ZoneNode(B, "203.0.113.22", ENIS[B]))
    single = place(lb, (None,), {("uid-1", None): "203.0.113.30"}, {})
    assert single.vip == "203.0.113.30" and single.zone_nodes == ()
    assert place(lb, (A,), {}, ENIS) is None


# --- svclab lb status -------------------------------------------------------------------------

def test_status_shows_zone_nodes_a_zone_column_and_what_each_node_sends_to():
    lb = zoned()
    state = down("172.31.32.13")
    row = lb_status(lb, state, ("172.31.0.11", "172.31.16.12", "172.31.16.14"), {}, {},
                    nlb_counted=True, node_sent={"203.0.113.12": {"172.31.16.12": 4}})
    lines = render_lb_status([row]).splitlines()
    assert "VIPs 203.0.113.11,203.0.113.12,203.0.113.13" in lines[1]
    assert lines[3] == ("  cross-zone load balancing off; DNS answers 203.0.113.11, "
                        "203.0.113.12")
    assert lines[4].split() == ["ZONE", "VIP", "ENI", "IN-DNS", "CONNS", "SENDS-TO"]
    assert lines[5].split() == [A, "203.0.113.11", "172.31.0.5", "yes", "0", "ip-172-31-0-11"]
    assert lines[6].split() == [B, "203.0.113.12", "172.31.16.5", "yes", "4",
                                "ip-172-31-16-12,ip-172-31-16-14"]
    assert lines[7].split() == [C, "203.0.113.13", "172.31.32.5", "no", "0", "-"]
    assert lines[8].split()[:4] == ["NODE", "ZONE", "ADDRESS", "STATE"]
    assert lines[12].split()[:4] == ["ip-172-31-32-13", C, "172.31.32.13", "unhealthy"]


def test_status_says_when_dns_fails_open():
    lb = zoned("classic")
    row = lb_status(lb, down(*(t.address for t in TARGETS)), (), {}, {})
    text = render_lb_status([row])
    assert "no zone has a healthy target: DNS answers every zone (fails open)" in text
    assert "DNS answers 203.0.113.11, 203.0.113.12, 203.0.113.13" in text


# --- the elb host in the lab ---------------------------------------------------------------

def test_the_elb_host_sends_what_leaves_an_eni_through_that_zones_subnet():
    spec = load_spec(default_spec_path().parent / "zones.yaml")
    assert zone_enis(spec) == ((A, ENIS[A]), (B, ENIS[B]), (C, ENIS[C]))
    routes = eni_source_routes(spec)
    assert routes[3:6] == ["rule add from 172.31.16.5 table 111 priority 111",
                           "route replace 172.31.16.0/20 dev eth2 src 172.31.16.5 table 111",
                           "route replace default via 172.31.16.1 dev eth2 table 111"]
    # a restarted daemon adds no rule twice
    shown = "0:\tfrom all lookup local\n110:\tfrom 172.31.0.5 lookup 110\n"
    assert missing_rules(routes, shown) == routes[1:]
    # a lab without zones: no ENI list, no source routes
    assert zone_enis(load_spec()) == () and eni_source_routes(load_spec()) == []
