"""Following one connection through synthetic captures: legs, hops, NAT and the story."""
from __future__ import annotations

from probes.trace.flow import AddrPort, CapturedPacket, FlowOrigin, IcmpError, follow
from probes.trace.report import Decision, Trace

TOKEN = b"svclab-trace-abc"
CLIENT = AddrPort("203.0.113.100", 54321)
PUBLIC = AddrPort("198.51.100.11", 31326)
PRIVATE = AddrPort("172.31.0.11", 31326)
MASQ = AddrPort("172.31.0.11", 40000)
POD = AddrPort("192.168.2.5", 80)
ISN, SISN = 1000, 900000
PEERS = {("web-1", "eth0"): ("ip-172-31-0-11", "cali1"),
         ("ip-172-31-0-11", "cali1"): ("web-1", "eth0")}


def pkt(host, iface, direction, ts, src, dst, flags="S", seq=ISN, ack=0, payload=b"", **kw):
    return CapturedPacket(host, iface, direction, ts, "tcp", src, dst, flags, seq, ack,
                          payload, **kw)


def origin(**kw):
    base = dict(proto="tcp", source_host="client", local=CLIENT, target=PUBLIC, token=TOKEN,
                started=10.0, finished=11.0)
    return FlowOrigin(**{**base, **kw})


def seed_packets():
    """The seed: client -> public IP:nodePort -> igw DNAT -> node DNAT+SNAT -> pod."""
    out = [
        pkt("client", "eth0", "out", 10.001, CLIENT, PUBLIC),
        pkt("igw", "eth1", "in", 10.002, CLIENT, PUBLIC),
        pkt("igw", "eth0", "out", 10.003, CLIENT, PRIVATE),
        pkt("ip-172-31-0-11", "eth0", "in", 10.004, CLIENT, PRIVATE),
        # the pod's receive keeps the node's ingress timestamp: earlier than the send
        pkt("web-1", "eth0", "in", 10.0045, MASQ, POD),
        pkt("ip-172-31-0-11", "cali1", "out", 10.005, MASQ, POD),
        pkt("web-1", "eth0", "out", 10.006, POD, MASQ, "SA", SISN, ISN + 1),
        pkt("ip-172-31-0-11", "cali1", "in", 10.007, POD, MASQ, "SA", SISN, ISN + 1),
        pkt("ip-172-31-0-11", "eth0", "out", 10.008, PRIVATE, CLIENT, "SA", SISN, ISN + 1),
        pkt("igw", "eth0", "in", 10.009, PRIVATE, CLIENT, "SA", SISN, ISN + 1),
        pkt("igw", "eth1", "out", 10.010, PUBLIC, CLIENT, "SA", SISN, ISN + 1),
        pkt("client", "eth0", "in", 10.011, PUBLIC, CLIENT, "SA", SISN, ISN + 1),
        pkt("client", "eth0", "out", 10.012, CLIENT, PUBLIC, "PA", ISN + 1, SISN + 1,
            b"GET /?svclab-trace=" + TOKEN),
        pkt("web-1", "eth0", "in", 10.013, MASQ, POD, "PA", ISN + 1, SISN + 1,
            b"GET /?svclab-trace=" + TOKEN),
        # another flow on the same ports (a health check): never part of the trace
        pkt("ip-172-31-0-11", "eth0", "in", 10.002, AddrPort("172.31.0.5", 5555), PRIVATE,
            "S", 77777777),
    ]
    return out


def test_the_seed_flow_is_followed_through_every_translation():
    (leg,) = follow(seed_packets(), origin(), PEERS)
    assert [(s.host, s.interface, s.direction) for s in leg.request] == [
        ("client", "eth0", "out"), ("igw", "eth1", "in"), ("igw", "eth0", "out"),
        ("ip-172-31-0-11", "eth0", "in"), ("ip-172-31-0-11", "cali1", "out"),
        ("web-1", "eth0", "in")]
    changes = {s.host: s.changes for s in leg.request if s.changes}
    assert changes == {
        "igw": ("dst 198.51.100.11:31326 -> 172.31.0.11:31326",),
        "ip-172-31-0-11": ("src 203.0.113.100:54321 -> 172.31.0.11:40000",
                           "dst 172.31.0.11:31326 -> 192.168.2.5:80")}
    assert [s.host for s in leg.reply] == ["web-1", "ip-172-31-0-11", "ip-172-31-0-11",
                                           "igw", "igw", "client"]
    assert leg.reply[0].kind == "SYN-ACK" and str(leg.reply[-1].src) == "198.51.100.11:31326"
    assert leg.packets == 14 and "172.31.0.5" not in str(leg)


# The lab's other wires: hosts' ports on the inet and vpc bridges (not captured).
BRIDGED = {**PEERS,
           ("client", "eth0"): ("inet", "inet-eth2"), ("igw", "eth1"): ("inet", "inet-eth1"),
           ("igw", "eth0"): ("vpc", "vpc-eth1"), ("ip-172-31-0-11", "eth0"): ("vpc", "vpc-eth2"),
           ("ip-172-31-0-12", "eth0"): ("vpc", "vpc-eth3")}


def test_a_receive_across_a_bridge_follows_its_send_even_when_stamped_first():
    """A receive stamped the same as, or before, its send on a bridge still comes after it."""
    far = AddrPort("192.168.2.1", 80)
    packets = [
        pkt("client", "eth0", "out", 10.001, CLIENT, PUBLIC),
        pkt("igw", "eth1", "in", 10.002, CLIENT, PUBLIC),
        pkt("igw", "eth0", "out", 10.003, CLIENT, PRIVATE),
        pkt("ip-172-31-0-11", "eth0", "in", 10.003, CLIENT, PRIVATE),
        pkt("ip-172-31-0-11", "eth0", "out", 10.004, MASQ, far),
        pkt("ip-172-31-0-12", "eth0", "in", 10.0035, MASQ, far),     # stamped before the send
        pkt("ip-172-31-0-12", "eth0", "out", 10.006, far, MASQ, "SA", SISN, ISN + 1),
        pkt("ip-172-31-0-11", "eth0", "in", 10.007, far, MASQ, "SA", SISN, ISN + 1),
        pkt("ip-172-31-0-11", "eth0", "out", 10.008, PRIVATE, CLIENT, "SA", SISN, ISN + 1),
        pkt("igw", "eth0", "in", 10.009, PRIVATE, CLIENT, "SA", SISN, ISN + 1),
        pkt("client", "eth0", "in", 10.010, PUBLIC, CLIENT, "SA", SISN, ISN + 1),  # a tie
        pkt("igw", "eth1", "out", 10.010, PUBLIC, CLIENT, "SA", SISN, ISN + 1),
    ]
    (leg,) = follow(packets, origin(), BRIDGED)
    assert [(s.host, s.direction) for s in leg.request] == [
        ("client", "out"), ("igw", "in"), ("igw", "out"), ("ip-172-31-0-11", "in"),
        ("ip-172-31-0-11", "out"), ("ip-172-31-0-12", "in")]
    assert [(s.host, s.direction) for s in leg.reply] == [
        ("ip-172-31-0-12", "out"), ("ip-172-31-0-11", "in"), ("ip-172-31-0-11", "out"),
        ("igw", "in"), ("igw", "out"), ("client", "in")]
    assert leg.reply[-1].changes == () and str(leg.reply[-1].src) == str(PUBLIC)
    # Without the link plan, capture order (a receive first on a tie) is all there is.
    (blind,) = follow(packets, origin())
    assert [s.host for s in blind.reply][-2:] == ["client", "igw"]


def test_the_story_reads_like_the_seed():
    legs = follow(seed_packets(), origin(), PEERS)
    decision = Decision("ip-172-31-0-11", 0, "kube-proxy (iptables)",
                        "KUBE-SERVICES -> KUBE-NODEPORTS -> KUBE-SVC-X -> KUBE-SEP-Y: "
                        "DNAT to 192.168.2.5:80, masquerade (KUBE-POSTROUTING)",
                        dnat="192.168.2.5:80", masquerade=True)
    trace = Trace("lab", "client", "198.51.100.11:31326", "tcp", str(PUBLIC), str(CLIENT),
                  "open", {"pod": "web-1", "podIP": "192.168.2.5", "client": str(MASQ)},
                  tuple(legs), (decision,))
    steps = trace.steps(legs[0])
    assert steps[0] == "1) client -> 198.51.100.11:31326 (from 203.0.113.100:54321)"
    assert steps[1] == "2) igw: DNAT to 172.31.0.11:31326"
    assert steps[2].startswith("3) ip-172-31-0-11: masquerade (SNAT) to 172.31.0.11:40000, "
                               "DNAT to 192.168.2.5:80  [kube-proxy (iptables): KUBE-SERVICES")
    assert steps[3] == "4) web-1: receives 172.31.0.11:40000 -> 192.168.2.5:80 on eth0"
    assert steps[4] == "5) reply web-1: SYN-ACK 192.168.2.5:80 -> 172.31.0.11:40000"
    assert steps[-1] == "8) reply client: receives 198.51.100.11:31326 -> 203.0.113.100:54321"
    text = trace.describe()
    assert "answered by web-1 (192.168.2.5), which saw the client as 172.31.0.11:40000" in text
    assert trace.to_json()["steps"] == steps


def test_a_proxy_starts_a_second_leg_found_by_the_token():
    vip, elb, node = AddrPort("203.0.113.11", 80), AddrPort("172.31.0.5", 6000), PRIVATE
    request = b"GET /?svclab-trace=" + TOKEN
    packets = [
        pkt("client", "eth0", "out", 10.001, CLIENT, vip),
        pkt("elb", "eth1", "in", 10.002, CLIENT, vip),
        pkt("elb", "eth1", "out", 10.003, vip, CLIENT, "SA", 5, ISN + 1),
        pkt("client", "eth0", "out", 10.004, CLIENT, vip, "PA", ISN + 1, 6, request),
        pkt("elb", "eth0", "out", 10.005, elb, node, "S", 424242),
        pkt("elb", "eth0", "out", 10.007, elb, node, "PA", 424243, 9, request),
        pkt("ip-172-31-0-11", "eth0", "in", 10.006, elb, node, "S", 424242),
    ]
    legs = follow(packets, origin(target=vip))
    assert len(legs) == 2
    assert [s.host for s in legs[0].request] == ["client", "elb"]
    assert [(s.host, str(s.dst)) for s in legs[1].request] == [
        ("elb", "172.31.0.11:31326"), ("ip-172-31-0-11", "172.31.0.11:31326")]


def test_a_dropped_syn_is_followed_to_where_it_vanished_retransmits_collapse():
    packets = [pkt("client", "eth0", "out", 10.0 + t, CLIENT, PUBLIC) for t in (0.01, 1.01)]
    packets += [pkt("igw", "eth0", "out", 10.02 + t, CLIENT, PRIVATE) for t in (0, 1)]
    packets += [pkt("ip-172-31-0-11", "eth0", "in", 10.03 + t, CLIENT, PRIVATE) for t in (0, 1)]
    packets += [pkt("client", "eth0", "out", 10.5, CLIENT, PUBLIC, seq=5)]   # another socket
    (leg,) = follow(packets, origin(finished=12.0))
    assert [s.host for s in leg.request] == ["client", "igw", "ip-172-31-0-11"]
    assert leg.reply == () and leg.packets == 6


def test_udp_is_followed_by_its_payload_and_an_icmp_error_answers_it():
    cip = AddrPort("10.96.0.20", 53)
    packets = [
        CapturedPacket("web-0", "eth0", "out", 10.1, "udp", AddrPort("192.168.1.9", 4000), cip,
                       payload=TOKEN),
        CapturedPacket("web-0", "eth0", "out", 10.2, "udp", AddrPort("192.168.1.9", 4001), cip,
                       payload=b"other"),
        CapturedPacket("ip-172-31-0-11", "cali9", "out", 10.3, "icmp", AddrPort("172.31.0.11", 0),
                       AddrPort("192.168.1.9", 0),
                       icmp=IcmpError(3, 3, "udp", AddrPort("192.168.1.9", 4000), cip,
                                      inner_payload=TOKEN)),
    ]
    (leg,) = follow(packets, origin(proto="udp", source_host="web-0",
                                    local=AddrPort("192.168.1.9", 4000), target=cip))
    assert [s.host for s in leg.request] == ["web-0"]
    assert [(s.host, s.kind) for s in leg.reply] == [("ip-172-31-0-11", "icmp 3/3")]


def test_nat_on_the_sending_host_shows_against_what_the_program_asked_for():
    node, cip, pod = AddrPort("172.31.0.10", 5000), AddrPort("10.96.0.20", 80), POD
    masq = AddrPort("172.31.0.10", 6000)
    packets = [
        pkt("n0", "eth0", "out", 10.1, masq, pod),
        pkt("n0", "eth0", "in", 10.2, pod, masq, "SA", SISN, ISN + 1),
    ]
    (leg,) = follow(packets, origin(source_host="n0", local=node, target=cip))
    assert leg.request[0].changes == ("src 172.31.0.10:5000 -> 172.31.0.10:6000",
                                      "dst 10.96.0.20:80 -> 192.168.2.5:80")
    socket_view = leg.reply[-1]
    assert socket_view.interface == "(socket)"
    assert (str(socket_view.src), str(socket_view.dst)) == ("10.96.0.20:80", "172.31.0.10:5000")


def test_nothing_captured_means_no_leg():
    assert follow([], origin()) == []
