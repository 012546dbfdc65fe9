"""capture.json: interfaces from `ip -j addr`, veth peers from the link plan, tcpdump counts."""
from __future__ import annotations

import json

import pytest

from probes.capture.meta import (
    HostCapture,
    Interface,
    PacketStats,
    Peer,
    host_label,
    lab_links,
    parse_ip_addr,
    parse_link_type,
    parse_tcpdump_stats,
    pcap_name,
    peers_of,
    render_capture_json,
)
from topo.plan import LinkPlan, cali_name
from topo.state import HostRecord, LabState

IP_ADDR_POD = json.dumps([
    {"ifindex": 1, "ifname": "lo", "link_type": "loopback", "address": "00:00:00:00:00:00",
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifindex": 2, "link_index": 4, "ifname": "eth0", "link_type": "ether",
     "address": "a6:8e:1a:df:dc:b4", "link_netnsid": 0,
     "addr_info": [{"family": "inet", "local": "192.168.1.50", "prefixlen": 32}]},
])

STATE = LabState(name="lab1", daemon_pid=1, daemon_start=1, hosts={
    "vpc": HostRecord("vpc", "bridge", "vpc", 9, 1, 9),
    "n1": HostRecord("n1", "node", "ip-172-31-0-11", 10, 1, 10, addresses=["172.31.0.11"]),
    "p1": HostRecord("p1", "pod", "web-1", 11, 1, 11, namespace="default",
                     node="ip-172-31-0-11", addresses=["192.168.1.50"]),
    "p2": HostRecord("p2", "pod", "db", 12, 1, 12, namespace="team-a",
                     node="ip-172-31-0-11", addresses=["192.168.1.60"]),
})
STATIC = [LinkPlan("n1", "eth0", "vpc", "vpc-eth2")]


def test_interfaces_from_ip_addr_with_peer():
    interfaces = parse_ip_addr(IP_ADDR_POD, {"eth0": Peer("ip-172-31-0-11", "caliabc")})
    assert interfaces == (
        Interface("lo", 1, "00:00:00:00:00:00", ("127.0.0.1/8",), "loopback"),
        Interface("eth0", 2, "a6:8e:1a:df:dc:b4", ("192.168.1.50/32",), "ether",
                  Peer("ip-172-31-0-11", "caliabc"), peer_ifindex=4))


def test_parse_ip_addr_refuses_garbage():
    with pytest.raises(ValueError, match="not JSON"):
        parse_ip_addr("Device not found")


def test_pod_veths_pair_node_cali_interfaces_with_pod_eth0():
    links = lab_links(STATIC, STATE)
    assert peers_of("p1", links, STATE) == {
        "eth0": Peer("ip-172-31-0-11", cali_name("default", "web-1"))}
    assert peers_of("n1", links, STATE) == {
        "eth0": Peer("vpc", "vpc-eth2"),
        cali_name("default", "web-1"): Peer("web-1", "eth0"),
        cali_name("team-a", "db"): Peer("team-a/db", "eth0")}


def test_labels_and_pcap_names():
    assert host_label(STATE.hosts["p2"]) == "team-a/db"
    assert host_label(STATE.hosts["p1"]) == "web-1"
    assert pcap_name("team-a/db") == "team-a.db.pcap"
    assert pcap_name("ip-172-31-0-11") == "ip-172-31-0-11.pcap"


def test_tcpdump_exit_statistics_and_link_type():
    stderr = ("tcpdump: data link type LINUX_SLL2\n"
              "tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), "
              "snapshot length 262144 bytes\n"
              "1000 packets captured\n1002 packets received by filter\n"
              "0 packets dropped by kernel\n")
    assert parse_tcpdump_stats(stderr) == PacketStats(1000, 1002, 0)
    assert parse_link_type(stderr) == "LINUX_SLL2"
    assert parse_tcpdump_stats("1 packet captured\n") == PacketStats(1, None, None)
    assert parse_tcpdump_stats("tcpdump: killed\n") == PacketStats()


def test_capture_json_lists_hosts_interfaces_and_counts():
    host = HostCapture(
        label="web-1", host="p1", kind="pod", namespace="default", node="ip-172-31-0-11",
        pcap="web-1.pcap", link_type="LINUX_SLL2", packets=PacketStats(10, 10, 0),
        interfaces=parse_ip_addr(IP_ADDR_POD, peers_of("p1", lab_links(STATIC, STATE), STATE)))
    document = json.loads(render_capture_json(
        "lab1", "tcp port 80", "any", "2024-01-01T00:00:00.000+00:00",
        "2024-01-01T00:00:05.000+00:00", [host]))
    assert document["lab"] == "lab1" and document["filter"] == "tcp port 80"
    [entry] = document["hosts"]
    assert {k: entry[k] for k in ("name", "kind", "namespace", "node", "pcap")} == {
        "name": "web-1", "kind": "pod", "namespace": "default", "node": "ip-172-31-0-11",
        "pcap": "web-1.pcap"}
    assert entry["packets"] == {"captured": 10, "received_by_filter": 10,
                                "dropped_by_kernel": 0}
    assert entry["interfaces"][1] == {
        "name": "eth0", "ifindex": 2, "mac": "a6:8e:1a:df:dc:b4", "kind": "ether",
        "addresses": ["192.168.1.50/32"], "peer_ifindex": 4,
        "peer": {"host": "ip-172-31-0-11", "interface": cali_name("default", "web-1")}}
