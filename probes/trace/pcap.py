"""Read the pcaps of a capture folder into CapturedPackets for the trace.

tcpdump on `any` writes LINUX_SLL2 frames: each carries the interface index
and whether the packet was outgoing, which with capture.json's interface
list gives "ip-172-31-0-11 eth0 in".  Only IPv4 TCP, UDP and ICMP errors are
kept; everything else in a pcap is skipped (the capture filter already
narrows it to the trace's ports).
"""
from __future__ import annotations

from pathlib import Path

from probes.capture.meta import HostCapture
from probes.trace.flow import AddrPort, CapturedPacket, IcmpError

PACKET_OUTGOING = 4


def read_capture(folder: Path, hosts: list[HostCapture]) -> list[CapturedPacket]:
    packets: list[CapturedPacket] = []
    for host in hosts:
        names = {i.ifindex: i.name for i in host.interfaces}
        packets += read_pcap(folder / host.pcap, host.label, names)
    return packets


def read_pcap(path: Path, host: str, interfaces: dict[int, str]) -> list[CapturedPacket]:
    import scapy.layers.inet  # noqa: F401  (binds IP under SLL2 before the first frame)
    from scapy.layers.l2 import CookedLinuxV2
    from scapy.utils import PcapReader
    out = []
    with PcapReader(str(path)) as reader:
        for frame in reader:
            if CookedLinuxV2 in frame:
                cooked = frame[CookedLinuxV2]
                interface = interfaces.get(int(cooked.ifindex), f"if{cooked.ifindex}")
                direction = "out" if int(cooked.pkttype) == PACKET_OUTGOING else "in"
            else:
                interface, direction = "?", "in"
            packet = convert(frame, host, interface, direction, float(frame.time))
            if packet is not None:
                out.append(packet)
    return out


def convert(frame, host: str, interface: str, direction: str,
            ts: float) -> CapturedPacket | None:
    """A scapy frame -> CapturedPacket (None for what a trace does not follow)."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
    if IP not in frame:
        return None
    ip = frame[IP]
    if ip.haslayer(ICMP) and not ip.haslayer(IPerror):
        return None      # echo and the like: not part of a TCP/UDP trace
    if ip.haslayer(ICMP):
        icmp, inner = ip[ICMP], ip[IPerror]
        layer = inner.getlayer(TCPerror) or inner.getlayer(UDPerror)
        if layer is None:
            return None
        proto = "tcp" if isinstance(layer, TCPerror) else "udp"
        error = IcmpError(int(icmp.type), int(icmp.code), proto,
                          AddrPort(inner.src, int(layer.sport)),
                          AddrPort(inner.dst, int(layer.dport)),
                          int(layer.seq) if proto == "tcp" else None,
                          bytes(layer.payload) if proto == "udp" else b"")
        return CapturedPacket(host, interface, direction, ts, "icmp", AddrPort(ip.src, 0),
                              AddrPort(ip.dst, 0), icmp=error)
    if ip.haslayer(TCP) and not ip.haslayer(IPerror):
        tcp = ip[TCP]
        return CapturedPacket(host, interface, direction, ts, "tcp",
                              AddrPort(ip.src, int(tcp.sport)), AddrPort(ip.dst, int(tcp.dport)),
                              str(tcp.flags), int(tcp.seq), int(tcp.ack), bytes(tcp.payload))
    if ip.haslayer(UDP) and not ip.haslayer(IPerror):
        udp = ip[UDP]
        return CapturedPacket(host, interface, direction, ts, "udp",
                              AddrPort(ip.src, int(udp.sport)), AddrPort(ip.dst, int(udp.dport)),
                              payload=bytes(udp.payload))
    return None
