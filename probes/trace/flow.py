"""Follow one connection through packets captured on many hosts: pure functions.

NAT rewrites addresses and ports at every hop, so a flow cannot be followed
by its 5-tuple.  What survives translation is the TCP sequence space (and, for
UDP, the payload): every packet of the client's direction carries a sequence
number just above the client's initial one, every answer acknowledges one.
A proxy (a Classic ELB listener) opens a second connection with a sequence
space of its own, carrying the same request bytes: each packet carrying the
trace token with an unknown sequence number starts another *leg*.

Input: `CapturedPacket`s from every pcap (probes/trace/pcap.py).  Output:
per leg, the sightings of its first request packet (SYN or datagram) and of
its first answer (SYN-ACK, RST, ICMP error or UDP reply), ordered by capture
time, each with the address change against the sighting before it on the
same host.  No I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

WINDOW = 1 << 16        # bytes of sequence space a trace's request/answer can use
SLACK_S = 0.5           # capture time margin around the send


@dataclass(frozen=True)
class AddrPort:
    """An address and port as a packet carries them (port 0: ICMP, no port)."""

    addr: str
    port: int

    def __str__(self) -> str:
        return f"{self.addr}:{self.port}" if self.port else self.addr


@dataclass(frozen=True)
class IcmpError:
    type: int
    code: int
    inner_proto: str            # tcp | udp
    inner_src: AddrPort
    inner_dst: AddrPort
    inner_seq: int | None = None
    inner_payload: bytes = b""


@dataclass(frozen=True)
class CapturedPacket:
    """One packet as tcpdump saw it on one host's interface."""

    host: str                   # lab label of the host
    interface: str
    direction: str              # in | out
    ts: float
    proto: str                  # tcp | udp | icmp
    src: AddrPort
    dst: AddrPort
    flags: str = ""             # TCP flags, scapy notation (S, SA, PA, R, RA ...)
    seq: int = 0
    ack: int = 0
    payload: bytes = b""
    icmp: IcmpError | None = None

    def kind(self) -> str:
        if self.proto == "icmp":
            return f"icmp {self.icmp.type}/{self.icmp.code}" if self.icmp else "icmp"
        if self.proto == "udp":
            return "udp"
        if "R" in self.flags:
            return "RST"
        if "S" in self.flags:
            return "SYN-ACK" if "A" in self.flags else "SYN"
        return self.flags


@dataclass(frozen=True)
class FlowOrigin:
    """What the sender did: its socket, the address it connected to, the token."""

    proto: str
    source_host: str
    local: AddrPort
    target: AddrPort
    token: bytes
    started: float
    finished: float


@dataclass(frozen=True)
class Sighting:
    """A packet of the flow on one host's interface, and what changed there."""

    host: str
    interface: str
    direction: str
    ts: float
    src: AddrPort
    dst: AddrPort
    kind: str
    changes: tuple[str, ...] = ()     # "dst A -> B", "src A -> B" against the previous sighting


@dataclass(frozen=True)
class Leg:
    """One TCP connection (or UDP exchange) of the trace."""

    index: int
    request: tuple[Sighting, ...]
    reply: tuple[Sighting, ...]
    packets: int                      # every captured packet of this leg, all hosts
    hosts: tuple[str, ...] = field(default=())


def _in_window(value: int, start: int) -> bool:
    return (value - start) % (1 << 32) < WINDOW


class _TcpLeg:
    def __init__(self, isn: int):
        self.isn = isn

    def side(self, packet: CapturedPacket) -> str | None:
        if packet.proto == "tcp":
            if _in_window(packet.seq, self.isn):
                return "fwd"
            if "A" in packet.flags and _in_window(packet.ack, self.isn):
                return "rev"
        elif packet.icmp is not None and packet.icmp.inner_proto == "tcp" \
                and packet.icmp.inner_seq is not None \
                and _in_window(packet.icmp.inner_seq, self.isn):
            return "rev"
        return None


class _UdpLeg:
    def __init__(self, token: bytes):
        self.token = token

    def side(self, packet: CapturedPacket) -> str | None:
        if packet.proto == "udp" and self.token in packet.payload:
            return "fwd" if packet.payload == self.token else "rev"
        if packet.icmp is not None and packet.icmp.inner_proto == "udp" \
                and self.token in packet.icmp.inner_payload:
            return "rev"
        return None


def _timely(packets, origin: FlowOrigin) -> list[CapturedPacket]:
    low, high = origin.started - SLACK_S, origin.finished + SLACK_S
    return sorted((p for p in packets if low <= p.ts <= high), key=_order)


def _order(packet: CapturedPacket) -> tuple:
    return (packet.ts, packet.direction == "out")


def find_legs(packets, origin: FlowOrigin) -> list:
    """The legs of the traced connection, in the order their packets appear."""
    packets = _timely(packets, origin)
    if origin.proto == "udp":
        return [_UdpLeg(origin.token)] if any(
            _UdpLeg(origin.token).side(p) for p in packets) else []
    legs: list[_TcpLeg] = []
    for packet in packets:
        if packet.proto == "tcp" and origin.token in packet.payload \
                and not any(leg.side(packet) == "fwd" for leg in legs):
            legs.append(_TcpLeg((packet.seq - 1) % (1 << 32)))
    if legs:
        return legs
    # Nothing was sent after a handshake (refused, rejected, dropped): the SYN
    # that left the source host from the sender's port, else its only SYN.
    syns = [p for p in packets if p.host == origin.source_host and p.proto == "tcp"
            and p.flags == "S" and p.direction == "out"]
    own = [p for p in syns if p.src.port == origin.local.port] or syns[:1]
    return [_TcpLeg(own[0].seq)] if own else []


def _first_sightings(packets: list[CapturedPacket]) -> list[CapturedPacket]:
    """The earliest sighting per (host, interface, direction): retransmits collapse."""
    seen, out = set(), []
    for packet in packets:
        key = (packet.host, packet.interface, packet.direction)
        if key not in seen:
            seen.add(key)
            out.append(packet)
    return out


def _changes(before: tuple[AddrPort, AddrPort], after: tuple[AddrPort, AddrPort]) -> tuple:
    changes = []
    if before[0] != after[0]:
        changes.append(f"src {before[0]} -> {after[0]}")
    if before[1] != after[1]:
        changes.append(f"dst {before[1]} -> {after[1]}")
    return tuple(changes)


# (host, interface) -> the other end of its veth: a host's interface, or a bridge's port
Peers = dict[tuple[str, str], tuple[str, str]]


def _wire_order(packets: list[CapturedPacket], peers: Peers) -> list[CapturedPacket]:
    """Order sightings as the packet travelled: each receive after its send.

    A packet can keep the timestamp it got on entering the sending host, so
    the receiving end of a link can look earlier than the send, or tie with
    it.  The link plan says which sightings are the two ends of one wire: a
    veth's two ends, or two hosts' ports on one bridge (the bridge itself is
    not captured; it changes no address, so the send is the one carrying the
    same addresses).  A topological sort keeps each host's own sightings in
    capture order, puts every receive after its send, and otherwise keeps
    capture order.
    """
    count = len(packets)
    after: list[set[int]] = [set() for _ in range(count)]
    last_on_host: dict[str, int] = {}
    for index, packet in enumerate(packets):
        if packet.host in last_on_host:
            after[last_on_host[packet.host]].add(index)
        last_on_host[packet.host] = index
        sender = _sender(packets, index, peers)
        if sender is not None:
            after[sender].add(index)
    waiting = [0] * count
    for successors in after:
        for successor in successors:
            waiting[successor] += 1
    ready = [i for i in range(count) if not waiting[i]]
    order: list[int] = []
    while ready:
        current = min(ready)
        ready.remove(current)
        order.append(current)
        for successor in after[current]:
            waiting[successor] -= 1
            if not waiting[successor]:
                ready.append(successor)
    if len(order) < count:      # contradictory stamps and links: keep capture order
        return list(packets)
    return [packets[i] for i in order]


def _sender(packets: list[CapturedPacket], index: int, peers: Peers) -> int | None:
    """The index of the send at the far end of the wire `packets[index]` arrived on."""
    packet = packets[index]
    far = peers.get((packet.host, packet.interface))
    if packet.direction != "in" or far is None:
        return None
    for i, other in enumerate(packets):
        if other.direction != "out" or other.host == packet.host:
            continue
        end = (other.host, other.interface)
        same_wire = end == far or peers.get(end, (None,))[0] == far[0]
        if same_wire and (other.src, other.dst) == (packet.src, packet.dst):
            return i
    return None


def sightings_of(packets: list[CapturedPacket], start: tuple[AddrPort, AddrPort] | None = None,
                 start_host: str | None = None, peers: Peers | None = None
                 ) -> tuple[Sighting, ...]:
    """Ordered sightings of one packet, with the changes made on each host.

    start: the tuple the sending program used on start_host (a translation
    done on the sending host itself shows against it).  peers: the link plan's wires,
    to order a receive after its send (see _wire_order).
    """
    last_on_host: dict[str, tuple[AddrPort, AddrPort]] = {}
    if start is not None and start_host is not None:
        last_on_host[start_host] = start
    out = []
    ordered = _wire_order(_first_sightings(sorted(packets, key=_order)), peers or {})
    for packet in ordered:
        here = (packet.src, packet.dst)
        before = last_on_host.get(packet.host)
        changes = _changes(before, here) if before is not None else ()
        last_on_host[packet.host] = here
        out.append(Sighting(packet.host, packet.interface, packet.direction, packet.ts,
                            packet.src, packet.dst, packet.kind(), changes))
    return tuple(out)


def follow(packets, origin: FlowOrigin, peers: Peers | None = None) -> list[Leg]:
    """Every leg with its request and reply paths (see module docstring)."""
    timely = _timely(packets, origin)
    legs = []
    for index, leg in enumerate(find_legs(timely, origin)):
        mine = [(p, leg.side(p)) for p in timely]
        mine = [(p, side) for p, side in mine if side]
        forward = [p for p, side in mine if side == "fwd"]
        backward = [p for p, side in mine if side == "rev"]
        first = forward[0] if forward else None
        request = [p for p in forward if first is not None and _same_packet(p, first)]
        answer = backward[0] if backward else None
        reply = [p for p in backward if answer is not None and _same_packet(p, answer)]
        start = (origin.local, origin.target) if index == 0 else None
        # The app's view of the answer: from the target to its own socket.
        request_path = sightings_of(request, start, origin.source_host, peers)
        reply_path = sightings_of(reply, peers=peers)
        reply_path = _with_final_view(reply_path, origin if index == 0 else None)
        hosts = tuple(dict.fromkeys(p.host for p, _ in mine))
        legs.append(Leg(index, request_path, reply_path, len(mine), hosts))
    return legs


def _with_final_view(path: tuple[Sighting, ...], origin: FlowOrigin | None) -> tuple:
    """Mark a reply that the sending host still translates after capture (its own NAT)."""
    if origin is None or not path or path[-1].host != origin.source_host:
        return path
    last = path[-1]
    app_view = (origin.target, origin.local)
    if (last.src, last.dst) == app_view or last.kind.startswith("icmp"):
        return path
    final = Sighting(last.host, "(socket)", "in", last.ts, app_view[0], app_view[1],
                     last.kind, _changes((last.src, last.dst), app_view))
    return path + (final,)


def _same_packet(packet: CapturedPacket, first: CapturedPacket) -> bool:
    """Another sighting (or a retransmit) of the same request/answer packet."""
    if packet.proto != first.proto:
        return False
    if packet.proto == "tcp":
        return packet.flags == first.flags and packet.seq == first.seq
    if packet.proto == "icmp":
        return packet.icmp == first.icmp or (
            packet.icmp is not None and first.icmp is not None
            and (packet.icmp.type, packet.icmp.code) == (first.icmp.type, first.icmp.code))
    return packet.payload == first.payload


__all__ = ["AddrPort", "IcmpError", "CapturedPacket", "FlowOrigin", "Sighting", "Leg",
           "find_legs", "follow", "sightings_of", "WINDOW"]
