"""A pod's `ip` lines sent as our own rtnetlink requests make what `ip -batch` makes.

In throwaway namespaces (root): the lines topo/plan.py writes for a pod (its
veth, loopback, /32 and routes in the pod; the veth's end and /32 route on
the node) go once through topo/rtnetlink.py and once through `ip -batch`,
into two pairs of namespaces; `ip` itself then lists links, addresses and
routes of each, and the listings must be the same.  A refused request names
its line and the kernel's reason, as `ip` does.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from contextlib import contextmanager

import pytest

from base.errors import CommandError
from base.waiting import wait_until
from topo import rtnetlink
from topo.netns import call_in_netns, netns_inode, own_netns_inode
from topo.plan import plan_pod
from topo.pod_sandbox import POD_INTERFACE, run_ip_batch
from topo.spec import parse_spec

pytestmark = pytest.mark.root
SPEC = parse_spec({"nodes": [{"name": "ip-172-31-0-10", "role": "control-plane"},
                             {"name": "ip-172-31-0-11"}], "clients": []})
IP = ipaddress.IPv4Address("192.168.1.23")


@contextmanager
def holder(netns: str):
    """A process in the named netns, to address it by PID as the lab does."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "600"])
    try:
        wait_until(f"a process in {netns}", lambda: netns_inode(proc.pid) != own_netns_inode())
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def pod_lines(node_pid: int) -> tuple[list[str], list[str]]:
    plan = plan_pod(SPEC, 1, "p1", "web-0", "default", IP)
    first = f"link add dev {POD_INTERFACE} type veth peer name {plan.link.intf1} netns {node_pid}"
    return [first, *plan.pod.ip_batch], list(plan.node_batch)


def by_netlink(lines: list[str]) -> None:
    requests = rtnetlink.requests(lines)
    assert requests is not None, f"a pod line is not one rtnetlink knows: {lines}"
    rtnetlink.apply(requests, "test")


def listing(netns: str) -> dict:
    def ip(*args: str):
        out = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, text=True,
                             check=True).stdout
        return json.loads(out or "[]")
    links = [{k: link.get(k) for k in ("ifname", "flags", "mtu", "operstate", "link_type")}
             | {"kind": (link.get("linkinfo") or {}).get("info_kind")}
             for link in ip("-d", "link", "show")]
    addrs = [(a["ifname"], [(i["local"], i["prefixlen"], i.get("scope")) for i in a["addr_info"]])
             for a in ip("-4", "addr", "show")]
    routes = ip("-4", "route", "show", "table", "all")
    return {"links": links, "addrs": addrs, "routes": routes}


def build(netns_pair: tuple[str, str], send) -> tuple[dict, dict]:
    node_ns, pod_ns = netns_pair
    with holder(node_ns) as node_pid, holder(pod_ns) as pod_pid:
        in_pod, on_node = pod_lines(node_pid)
        call_in_netns(pod_pid, lambda: send(in_pod))
        call_in_netns(node_pid, lambda: send(on_node))
    # operstate follows the carrier a moment later (the kernel's linkwatch)
    for netns in (node_ns, pod_ns):
        wait_until(f"veth up in {netns}", lambda ns=netns: all(
            link["operstate"] == "UP" for link in listing(ns)["links"] if link["kind"]))
    return listing(node_ns), listing(pod_ns)


def test_every_pod_line_is_one_rtnetlink_knows_and_makes_what_ip_makes(netns_maker):
    ours = build((netns_maker(), netns_maker()), by_netlink)
    theirs = build((netns_maker(), netns_maker()), lambda lines: run_ip_batch(lines, "test"))
    assert ours == theirs
    node, pod = ours
    assert any(r.get("dst") == "default" and r.get("gateway") == "169.254.1.1"
               for r in pod["routes"])
    assert ("eth0", [(str(IP), 32, "global")]) in pod["addrs"]
    assert any(r.get("dst") == str(IP) and r.get("scope") == "link" for r in node["routes"])
    assert {link["ifname"]: link["operstate"] for link in pod["links"]}["eth0"] == "UP"


def test_a_refused_request_names_its_line_and_the_kernels_reason(netns):
    with holder(netns) as pid:
        lines = ["link set dev lo up", "addr add 192.168.1.5/32 dev lo"]
        call_in_netns(pid, lambda: by_netlink(lines))
        with pytest.raises(CommandError) as again:
            call_in_netns(pid, lambda: by_netlink(lines[1:]))
        with pytest.raises(CommandError) as missing:
            call_in_netns(pid, lambda: by_netlink(["route add 10.0.0.0/8 dev nope0"]))
    assert "addr add 192.168.1.5/32 dev lo" in str(again.value)
    assert "File exists" in str(again.value)
    assert 'Cannot find device "nope0"' in str(missing.value)
