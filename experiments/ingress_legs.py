"""The ingress experiment's hop table: which addresses each leg of client -> ALB -> pod
carried, read from the captures.  Pure.

An ALB proxies: the client's connection ends at the ALB's VIP, and the ALB
opens a connection of its own from its ENI in the VPC to the target (a
node's NodePort with target-type instance), where kube-proxy translates it
again to a pod.  Captured on the client, the elb host and the pods, every
probe request shows up three times:

    1 client -> ALB     on the client, sent:     client -> VIP:80
    2 ALB -> NodePort   on the elb host, sent:   ENI -> node:NodePort, X-Forwarded-For added
    3 node -> pod       on the pod, received:    node (masqueraded) -> pod:8080

Requests are told apart from the ALB's health checks by their User-Agent;
the X-Forwarded-For each leg carried is read from the request head itself.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from probes.trace.flow import CapturedPacket

PROBE_AGENT = b"svclab-spread"
CLIENT_TO_ALB, ALB_TO_TARGET, NODE_TO_POD = "1 client -> ALB", "2 ALB -> NodePort", "3 node -> pod"
LEGS = (CLIENT_TO_ALB, ALB_TO_TARGET, NODE_TO_POD)


@dataclass(frozen=True)
class LegRow:
    """One leg of one path's requests: where it was seen, what it carried."""

    path: str                       # the request path (no query)
    leg: str
    captured_on: tuple[str, ...]    # host labels
    requests: int
    sources: tuple[str, ...]        # source addresses (no ports), most requests first
    destinations: tuple[str, ...]   # address:port
    forwarded_for: tuple[str, ...]  # X-Forwarded-For values in the request heads ("" none)

    def to_row(self) -> dict:
        return {"path": self.path, "leg": self.leg, "captured_on": " ".join(self.captured_on),
                "requests": self.requests, "sources": " ".join(self.sources),
                "destinations": " ".join(self.destinations),
                "x_forwarded_for": " ".join(self.forwarded_for) or "-"}


def request_head(payload: bytes) -> tuple[str, dict[str, str]] | None:
    """(path, lower-case headers) of an HTTP GET head in a TCP payload, else None."""
    if not payload.startswith(b"GET "):
        return None
    head = payload.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = head[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[1].split("?", 1)[0], headers


def leg_of(packet: CapturedPacket, kind: str, vip: str, nodes: set[str]) -> str | None:
    """Which leg a probe request packet shows, from where it was captured."""
    if kind == "client" and packet.direction == "out" and packet.dst.addr == vip:
        return CLIENT_TO_ALB
    if kind == "loadbalancer" and packet.direction == "out" and packet.dst.addr in nodes:
        return ALB_TO_TARGET
    if kind == "pod" and packet.direction == "in":
        return NODE_TO_POD
    return None


def leg_rows(packets: Iterable[CapturedPacket], kinds: Mapping[str, str], vip: str,
             nodes: set[str], agent: bytes = PROBE_AGENT) -> list[LegRow]:
    """Per (path, leg): the probe requests seen there and their addresses.

    kinds: host label -> host kind (client, loadbalancer, node, pod);
    nodes: the node addresses an instance target group sends to."""
    seen: dict[tuple[str, str], list] = collections.defaultdict(list)
    agent_text = agent.decode()
    once = set()
    for packet in packets:
        parsed = request_head(packet.payload) if packet.proto == "tcp" else None
        if parsed is None or parsed[1].get("user-agent") != agent_text:
            continue
        key = (packet.host, packet.direction, packet.src, packet.dst, packet.seq)
        if key in once:                         # a retransmit is the same request
            continue
        once.add(key)
        leg = leg_of(packet, kinds.get(packet.host, ""), vip, nodes)
        if leg is not None:
            seen[(parsed[0], leg)].append((packet, parsed[1].get("x-forwarded-for", "")))
    rows = []
    for (path, leg), found in sorted(seen.items(), key=lambda i: (i[0][0], LEGS.index(i[0][1]))):
        rows.append(LegRow(
            path=path, leg=leg, captured_on=tuple(sorted({p.host for p, _ in found})),
            requests=len(found),
            sources=_by_count(p.src.addr for p, _ in found),
            destinations=_by_count(str(p.dst) for p, _ in found),
            forwarded_for=_by_count(xff for _, xff in found if xff)))
    return rows


def _by_count(values: Iterable[str]) -> tuple[str, ...]:
    counts = collections.Counter(values)
    return tuple(sorted(counts, key=lambda v: (-counts[v], v)))


__all__ = ["LEGS", "LegRow", "leg_rows", "request_head"]
