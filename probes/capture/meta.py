"""What capture.json says about each captured host: pure data and parsing.

A pcap alone says "ifindex 3"; a user needs "ip-172-31-0-11's cali1a2b...,
the veth to pod web-1".  This module turns `ip -j addr` output, the lab's
link plan and tcpdump's exit statistics into plain records, and renders the
capture.json document -- no processes, no files, so unit tests cover it all.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from topo.plan import LinkPlan, cali_name
from topo.state import HostRecord, LabState

_STAT_LINE = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel)\s*$")
_LINK_TYPE = re.compile(r"link-type (\S+)")


@dataclass(frozen=True)
class Peer:
    host: str           # the lab name of the host at the other end
    interface: str


@dataclass(frozen=True)
class Interface:
    name: str
    ifindex: int
    mac: str | None
    addresses: tuple[str, ...]      # CIDR notation
    kind: str | None                # link_type from ip (ether, loopback, ...)
    peer: Peer | None = None        # the other end of a veth, from the lab's link plan
    peer_ifindex: int | None = None  # the kernel's link_index (ifindex in the peer's netns)


@dataclass(frozen=True)
class PacketStats:
    captured: int | None = None
    received_by_filter: int | None = None
    dropped_by_kernel: int | None = None


@dataclass(frozen=True)
class HostCapture:
    """One captured host: who it is, where its pcap is, what tcpdump counted."""

    label: str                      # lab name (pods: NAMESPACE/NAME outside default)
    host: str                       # Mininet host name
    kind: str
    namespace: str | None
    node: str | None
    pcap: str                       # file name inside the capture folder
    interfaces: tuple[Interface, ...] = ()
    link_type: str | None = None
    packets: PacketStats = field(default_factory=PacketStats)


def host_label(record: HostRecord) -> str:
    if record.kind == "pod" and record.namespace not in (None, "default"):
        return f"{record.namespace}/{record.name}"
    return record.name


def pcap_name(label: str) -> str:
    """File name for a host's pcap: NAMESPACE/NAME becomes NAMESPACE.NAME."""
    return label.replace("/", ".") + ".pcap"


def parse_ip_addr(text: str, peers: Mapping[str, Peer] | None = None) -> tuple[Interface, ...]:
    """`ip -j addr` output -> interfaces; peers maps interface name -> its peer."""
    peers = peers or {}
    try:
        links = json.loads(text)
    except ValueError as err:
        raise ValueError(f"ip -j addr: not JSON: {text[:80]!r}") from err
    interfaces = []
    for link in links:
        addresses = tuple(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", ())
                          if "local" in a)
        interfaces.append(Interface(
            name=link["ifname"], ifindex=int(link["ifindex"]), mac=link.get("address"),
            addresses=addresses, kind=link.get("link_type"), peer=peers.get(link["ifname"]),
            peer_ifindex=link.get("link_index")))
    return tuple(interfaces)


def lab_links(static_links: Iterable[LinkPlan], state: LabState) -> list[LinkPlan]:
    """Every veth of the lab: the static plan's links plus one per pod (node cali* <-> eth0)."""
    links = list(static_links)
    node_hosts = {r.name: r.host for r in state.hosts.values() if r.kind == "node"}
    for record in state.hosts.values():
        if record.kind == "pod" and record.node in node_hosts:
            links.append(LinkPlan(node_hosts[record.node],
                                  cali_name(record.namespace or "default", record.name),
                                  record.host, "eth0"))
    return links


def peers_of(host: str, links: Iterable[LinkPlan], state: LabState) -> dict[str, Peer]:
    """Interface name -> Peer (lab names) for Mininet host `host`."""
    def label(mn_host: str) -> str:
        record = state.hosts.get(mn_host)
        return host_label(record) if record else mn_host
    peers = {}
    for link in links:
        if link.host1 == host:
            peers[link.intf1] = Peer(label(link.host2), link.intf2)
        elif link.host2 == host:
            peers[link.intf2] = Peer(label(link.host1), link.intf1)
    return peers


def parse_tcpdump_stats(stderr: str) -> PacketStats:
    """tcpdump's exit lines ('N packets captured', ...) -> PacketStats."""
    found = {}
    for line in stderr.splitlines():
        match = _STAT_LINE.match(line.strip())
        if match:
            found[match.group(2).replace(" ", "_")] = int(match.group(1))
    return PacketStats(captured=found.get("captured"),
                       received_by_filter=found.get("received_by_filter"),
                       dropped_by_kernel=found.get("dropped_by_kernel"))


def parse_link_type(stderr: str) -> str | None:
    match = _LINK_TYPE.search(stderr)
    return match.group(1).rstrip(",") if match else None


def render_capture_json(lab: str, packet_filter: str | None, interface: str,
                        started: str, stopped: str | None,
                        hosts: Iterable[HostCapture]) -> str:
    """The capture.json document beside the pcaps."""
    document = {
        "lab": lab, "filter": packet_filter, "interface": interface,
        "started": started, "stopped": stopped,
        "hosts": [{
            "name": h.label, "host": h.host, "kind": h.kind, "namespace": h.namespace,
            "node": h.node, "pcap": h.pcap, "link_type": h.link_type,
            "packets": asdict(h.packets),
            "interfaces": [{
                "name": i.name, "ifindex": i.ifindex, "mac": i.mac, "kind": i.kind,
                "addresses": list(i.addresses),
                "peer": asdict(i.peer) if i.peer else None,
                "peer_ifindex": i.peer_ifindex} for i in h.interfaces],
        } for h in hosts]}
    return json.dumps(document, indent=2) + "\n"


__all__ = ["Peer", "Interface", "PacketStats", "HostCapture", "host_label", "pcap_name",
           "parse_ip_addr", "lab_links", "peers_of", "parse_tcpdump_stats", "parse_link_type",
           "render_capture_json"]
