"""Reachability probes, run inside a lab host's namespaces.

One probe = one new flow and the first reply that answers it.  ICMP echo is
crafted and matched with scapy (addresses, identifiers, or the header quoted
in an ICMP error).  TCP and UDP go through the kernel's own sockets
(probes/sockprobe.py), which see replies after conntrack has undone the
translation — also for traffic NATed on the sending host itself, which a
raw-socket receiver sees untranslated.  Matching is never loosened: a reply
from an address we did not send to is a broken translation and stays
unanswered.

Outcomes:
  open      SYN-ACK, a UDP reply, or an ICMP echo reply
  refused   TCP RST
  rejected  ICMP destination unreachable (type and code kept)
  dropped   nothing within the timeout

`python -m probes.reach` reads a JSON list of probes on stdin and prints a
JSON list of results; probes/runner.py starts it inside the source host.
"""
from __future__ import annotations

import json
import random
import socket
import sys
from dataclasses import asdict, dataclass

from probes.sockprobe import run_socket_probes

OPEN, REFUSED, REJECTED, DROPPED = "open", "refused", "rejected", "dropped"
ICMP_UNREACH_CODES = {0: "net-unreachable", 1: "host-unreachable", 3: "port-unreachable",
                      9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
PAYLOAD = b"svclab-probe\n"


@dataclass(frozen=True)
class Probe:
    dst: str
    port: int = 0
    proto: str = "tcp"          # tcp | udp | icmp

    def label(self) -> str:
        return f"{self.dst}:{self.port}/{self.proto}" if self.proto != "icmp" else \
            f"{self.dst}/icmp"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    outcome: str
    responder: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    rtt_ms: float | None = None
    reply: str | None = None      # UDP reply payload (text), when open
    source: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["target"] = self.probe.label()
        return data

    @classmethod
    def from_json(cls, data: dict) -> ProbeResult:
        data = dict(data)
        data.pop("target", None)
        return cls(probe=Probe(**data.pop("probe")), **data)

    def describe(self) -> str:
        text = f"{self.source or '?'} -> {self.probe.label()}: {self.outcome}"
        if self.outcome == REJECTED:
            reason = ICMP_UNREACH_CODES.get(self.icmp_code, f"code {self.icmp_code}")
            text += f" (ICMP type {self.icmp_type} code {self.icmp_code} {reason})"
        if self.responder:
            text += f" by {self.responder}"
        if self.rtt_ms is not None:
            text += f" in {self.rtt_ms:.2f} ms"
        return text


def classify(probe: Probe, reply) -> tuple[str, dict]:
    """Pure: map the scapy reply that answered a probe to an outcome."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    if reply is None:
        return DROPPED, {}
    info = {"responder": reply[IP].src}
    if reply.haslayer(ICMP) and reply[ICMP].type == 3:
        return REJECTED, {**info, "icmp_type": 3, "icmp_code": int(reply[ICMP].code)}
    if reply.haslayer(ICMP) and reply[ICMP].type != 0:
        return REJECTED, {**info, "icmp_type": int(reply[ICMP].type),
                          "icmp_code": int(reply[ICMP].code)}
    if probe.proto == "tcp" and reply.haslayer(TCP):
        flags = reply[TCP].flags
        if flags.S and flags.A:
            return OPEN, info
        if flags.R:
            return REFUSED, info
    if probe.proto == "udp" and reply.haslayer(UDP):
        return OPEN, {**info, "reply": bytes(reply[UDP].payload).decode(errors="replace")}
    if probe.proto == "icmp" and reply.haslayer(ICMP) and reply[ICMP].type == 0:
        return OPEN, info
    raise ValueError(f"unexpected answer to {probe.label()}: {reply.summary()}")


def kernel_source_address(dst: str) -> str:
    """The source address the kernel would pick for dst (no packet is sent).

    Scapy's own route table cannot pick a source for a /32 address behind an
    on-link gateway (a Calico pod), so ask the kernel.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((dst, 9))
        return sock.getsockname()[0]


def build_packet(probe: Probe, rng: random.Random):
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.packet import Raw
    ip = IP(src=kernel_source_address(probe.dst), dst=probe.dst)
    if probe.proto == "tcp":
        return ip / TCP(sport=rng.randint(32768, 60999), dport=probe.port, flags="S",
                        seq=rng.getrandbits(32))
    if probe.proto == "udp":
        return ip / UDP(sport=rng.randint(32768, 60999), dport=probe.port) / Raw(PAYLOAD)
    if probe.proto == "icmp":
        return ip / ICMP(id=rng.getrandbits(16), seq=1)
    raise ValueError(f"proto: unsupported {probe.proto!r}; allowed: tcp, udp, icmp")


def run_probes(probes: list[Probe], timeout: float) -> list[ProbeResult]:
    """Send every probe at once and wait up to `timeout` for the answers."""
    results: dict[int, ProbeResult] = {}
    flows = [(i, p) for i, p in enumerate(probes) if p.proto in ("tcp", "udp")]
    echoes = [(i, p) for i, p in enumerate(probes) if p.proto == "icmp"]
    unknown = [p for p in probes if p.proto not in ("tcp", "udp", "icmp")]
    if unknown:
        raise ValueError(f"proto: unsupported {unknown[0].proto!r}; allowed: tcp, udp, icmp")
    if flows:
        found = run_socket_probes([p for _, p in flows], timeout, PAYLOAD)
        for (index, probe), info in zip(flows, found):
            results[index] = ProbeResult(probe, **info)
    if echoes:
        for (index, _), result in zip(echoes, _scapy_probes([p for _, p in echoes], timeout)):
            results[index] = result
    return [results[i] for i in range(len(probes))]


def _scapy_probes(probes: list[Probe], timeout: float) -> list[ProbeResult]:
    from scapy.config import conf
    from scapy.layers.inet import IP
    from scapy.supersocket import L3RawSocket
    conf.verb = 0
    rng = random.Random()
    packets = [build_packet(p, rng) for p in probes]
    # Kernel raw socket out (the host's own routes, ARP and local delivery
    # apply), and a receive socket on every interface: replies to a local
    # address come back on lo, others on eth0.
    with L3RawSocket() as sock:
        answered, _ = sock.sr(packets, timeout=timeout, retry=0, multi=False, verbose=0)
    replies = {_key(sent): (sent, got) for sent, got in answered}
    results = []
    for probe, packet in zip(probes, packets):
        sent, got = replies.get(_key(packet), (None, None))
        outcome, info = classify(probe, got)
        rtt = None
        if got is not None and sent is not None:
            rtt = round((got.time - sent.sent_time) * 1000, 3)
        source = got[IP].dst if got is not None else None
        results.append(ProbeResult(probe, outcome, rtt_ms=rtt, source=source, **info))
    return results


def _key(packet) -> tuple:
    """What identifies a probe packet among those sent together."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    layer = packet.getlayer(TCP) or packet.getlayer(UDP)
    if layer is not None:
        return (packet[IP].dst, type(layer).__name__, layer.sport, layer.dport)
    return (packet[IP].dst, "ICMP", packet[ICMP].id, 0)


def main() -> int:
    request = json.load(sys.stdin)
    probes = [Probe(**p) for p in request["probes"]]
    results = run_probes(probes, float(request.get("timeout", 1.0)))
    json.dump([r.to_json() for r in results], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
