"""End to end: `probe spread` and `capture` in a lab of their own.

Without Services (the proxy agent comes later) the spread targets pod IPs:
every connection to one pod is answered by that pod and shows the source
pod's own address; a capture on the source pod, its node and the destination
pod during 1,000 connections holds every SYN of the probe, none lost.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from labd.control import ControlClient
from labtools import wait_open, workload
from probes.capture.probe import Capture, CaptureFilterError, CaptureInterfaceError, capture_for
from probes.reach import Probe
from probes.spread.probe import spread
from topo.cleanup import processes_in_netns
from topo.plan import cali_name
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]

NODES = ["ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"]
SERVERS = {  # name -> (node, ip)
    "web-0": (NODES[0], "192.168.0.50"),
    "web-1": (NODES[1], "192.168.1.50"),
    "web-2": (NODES[2], "192.168.2.50"),
}
PROBER, PROBER_NODE, PROBER_IP = "prober", NODES[0], "192.168.0.60"
SYN_ONLY = "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and dst port 80"


@pytest.fixture(scope="module")
def pods(lab):
    control = ControlClient(lab.name)
    for name, (node, ip) in SERVERS.items():
        control.add_pod(name, node, ip=ip, command=workload(name, ip, "80/TCP", "5353/UDP"))
    control.add_pod(PROBER, PROBER_NODE, ip=PROBER_IP)
    for _, ip in SERVERS.values():
        wait_open(lab.name, PROBER, Probe(ip, 80, "tcp"))
    return SERVERS


def test_spread_to_one_pod_is_answered_by_that_pod_seeing_the_source_pod(lab, pods):
    progress = []
    result = spread(lab.name, PROBER, None, "192.168.1.50", 80, "tcp", count=3000,
                    timeout=5.0, concurrency=200, on_progress=progress.append,
                    progress_every=0.2)
    assert result.failures == {}
    assert [(e.ip, e.pod, e.node, e.count, e.sources) for e in result.endpoints] == [
        ("192.168.1.50", "web-1", NODES[1], 3000, {PROBER_IP: 3000})]
    assert result.by_node == {NODES[1]: 3000}
    assert result.sent_from == {PROBER_IP: 3000}
    # 3000 new connections, each from a bound local address; a local port may come
    # round again once the server closed first (no TIME_WAIT on the client side).
    assert len(result.records) == 3000 and all(r.local for r in result.records)
    assert result.fit is None and result.rate > 0
    assert all("/3000 done" in line for line in progress)


def test_spread_per_target_and_over_all_targets(lab, pods):
    for name, (node, ip) in pods.items():
        result = spread(lab.name, PROBER, "default", ip, 80, count=300, timeout=5.0)
        assert [(e.pod, e.node, e.count) for e in result.endpoints] == [(name, node, 300)]
    ips = [ip for _, ip in pods.values()]
    result = spread(lab.name, PROBER, None, ips, 80, count=900, timeout=5.0)
    assert result.by_node == {node: 300 for node, _ in pods.values()}
    assert result.fits_expected() is True
    skewed = spread(lab.name, PROBER, None, ips, 80, count=900, timeout=5.0,
                    expected={"web-0": 0.8, "web-1": 0.1, "web-2": 0.1})
    assert skewed.fits_expected() is False
    assert "NOT consistent" in skewed.describe()


def test_udp_spread_is_answered_with_the_source_seen(lab, pods):
    result = spread(lab.name, PROBER, None, "192.168.2.50", 5353, "udp", count=300,
                    timeout=5.0, concurrency=20)
    assert result.failures == {}
    assert [(e.pod, e.count, e.sources) for e in result.endpoints] == [
        ("web-2", 300, {PROBER_IP: 300})]


def test_failures_are_classified(lab, pods):
    refused = spread(lab.name, PROBER, None, "192.168.1.50", 81, count=50, timeout=5.0)
    assert (refused.ok, refused.failures) == (0, {"refused": 50})
    # No pod at this address: the node's blackhole route drops the SYNs silently.
    silent = spread(lab.name, PROBER, None, "192.168.2.99", 80, count=5, timeout=0.5)
    assert (silent.ok, silent.failures) == (0, {"timeout": 5})


def syn_keys(packets) -> collections.Counter:
    return collections.Counter(
        (p[IP].src, p[TCP].sport, p[IP].dst, p[TCP].dport, p[TCP].seq) for p in packets)


def test_capture_on_three_hosts_loses_no_syn_of_1000_connections(lab, pods, tmp_path):
    hosts = [(PROBER, None), (PROBER_NODE, None), ("web-1", "default")]
    with Capture(lab.name, hosts, tmp_path, SYN_ONLY):
        result = spread(lab.name, PROBER, None, "192.168.1.50", 80, count=1000, timeout=5.0)
    assert result.ok == 1000
    # A local port may come round again once the server closed first (no TIME_WAIT
    # on the prober's side): ports are counted, and a SYN is told by its sequence.
    probe_ports = collections.Counter(int(r.local.rsplit(":", 1)[1]) for r in result.records)
    assert sum(probe_ports.values()) == 1000

    manifest = json.loads((tmp_path / "capture.json").read_text())
    by_name = {h["name"]: h for h in manifest["hosts"]}
    assert set(by_name) == {PROBER, PROBER_NODE, "web-1"}
    assert (by_name[PROBER]["kind"], by_name[PROBER]["node"]) == ("pod", PROBER_NODE)
    assert by_name[PROBER_NODE]["kind"] == "node"
    assert manifest["filter"] == SYN_ONLY

    for name, expected_copies in ((PROBER, 1), ("web-1", 1), (PROBER_NODE, 2)):
        entry = by_name[name]
        packets = rdpcap(str(tmp_path / entry["pcap"]))
        keys = syn_keys(packets)
        # every connection's SYN, only SYNs; none retransmitted (a retransmission
        # repeats its sequence number)
        assert collections.Counter(key[1] for key in keys) == probe_ports, name
        assert set(keys.values()) == {expected_copies}, name
        assert entry["packets"]["captured"] == len(packets) == 1000 * expected_copies
        assert entry["packets"]["dropped_by_kernel"] == 0

    # The node forwards each SYN: in on the source pod's veth, out on eth0.
    node = by_name[PROBER_NODE]
    ifnames = {i["ifindex"]: i["name"] for i in node["interfaces"]}
    node_packets = rdpcap(str(tmp_path / node["pcap"]))
    per_interface = collections.Counter(ifnames[p.ifindex] for p in node_packets)
    assert per_interface == {cali_name("default", PROBER): 1000, "eth0": 1000}
    veth = next(i for i in node["interfaces"] if i["name"] == cali_name("default", PROBER))
    assert veth["peer"] == {"host": PROBER, "interface": "eth0"}
    pod_eth0 = next(i for i in by_name[PROBER]["interfaces"] if i["name"] == "eth0")
    assert pod_eth0["addresses"] == [f"{PROBER_IP}/32"]
    assert pod_eth0["peer"] == {"host": PROBER_NODE, "interface": veth["name"]}
    assert no_tcpdump_left(lab.name)


def test_capture_with_a_bad_filter_fails_loudly_and_leaves_nothing(lab, pods, tmp_path):
    with pytest.raises(CaptureFilterError, match="--filter"):
        with Capture(lab.name, [(PROBER, None), (PROBER_NODE, None)], tmp_path,
                     "tcp port eighty"):
            pytest.fail("the block must not run when tcpdump refused the filter")
    assert list(Path(tmp_path).iterdir()) == []
    assert no_tcpdump_left(lab.name)


def test_capture_for_a_duration_on_one_interface(lab, pods, tmp_path):
    hosts = capture_for(0.5, lab.name, [("web-2", None)], tmp_path, "udp", interfaces="eth0")
    assert [(h.label, h.kind, h.node, h.packets.captured) for h in hosts] == [
        ("web-2", "pod", NODES[2], 0)]
    assert len(rdpcap(str(tmp_path / "web-2.pcap"))) == 0
    assert json.loads((tmp_path / "capture.json").read_text())["interface"] == "eth0"
    with pytest.raises(CaptureInterfaceError, match="eth9"):
        capture_for(0.5, lab.name, [("web-2", None)], tmp_path / "x", interfaces="eth9")
    assert no_tcpdump_left(lab.name)


def no_tcpdump_left(lab_name: str) -> bool:
    state = read_state(LabPaths(lab_name))
    procs = processes_in_netns({h.netns for h in state.hosts.values()})
    names = []
    for proc in procs:
        try:
            names.append(Path(f"/proc/{proc.pid}/comm").read_text().strip())
        except FileNotFoundError:
            continue
    return "tcpdump" not in names
