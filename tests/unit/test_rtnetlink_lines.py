"""Which `ip` lines go as our own rtnetlink requests, and which fall back to `ip -batch`."""
from __future__ import annotations

import ipaddress

from topo import rtnetlink
from topo.plan import plan_pod
from topo.spec import parse_spec

SPEC = parse_spec({"nodes": [{"name": "ip-172-31-0-10", "role": "control-plane"},
                             {"name": "ip-172-31-0-11"}], "clients": []})


def test_every_line_of_a_pod_plan_is_a_request():
    plan = plan_pod(SPEC, 1, "p1", "web-0", "default", ipaddress.IPv4Address("192.168.1.9"))
    lines = ["link add dev eth0 type veth peer name cali1 netns 4242", *plan.pod.ip_batch,
             *plan.node_batch]
    requests = rtnetlink.requests(lines)
    assert requests is not None
    assert [type(r).__name__ for r in requests] == [
        "VethAdd", "LinkUp", "AddrAdd", "LinkUp", "RouteAdd", "RouteAdd", "LinkUp", "RouteAdd"]
    veth = requests[0]
    assert (veth.name, veth.peer, veth.peer_netns_pid) == ("eth0", "cali1", 4242)
    default = requests[5]
    assert str(default.destination) == "0.0.0.0/0" and str(default.gateway) == "169.254.1.1"
    host_route = requests[-1]
    assert str(host_route.destination) == "192.168.1.9/32" and host_route.gateway is None


def test_any_other_line_sends_the_whole_script_to_ip():
    for line in ("link set dev eth0 mtu 1400", "route add 10.0.0.0/8 via 172.31.0.1",
                 "addr add 192.168.1.9 dev eth0", "route add 10.0.0.0/8 dev eth0 metric 5",
                 "link add dev br0 type bridge", "route add 10.0.0.0/33 dev eth0",
                 "link add dev eth0 type veth peer name cali1 netns node1"):
        assert rtnetlink.request(line) is None, line
        assert rtnetlink.requests(["link set dev lo up", line]) is None
