"""Probe outcomes from real packets: classification and strict reply matching."""
from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
from scapy.packet import Raw

from base.errors import UsageError
from probes.reach import Probe, classify
from probes.runner import parse_target

SYN = IP(src="192.168.1.5", dst="10.96.0.20") / TCP(sport=40000, dport=80, flags="S", seq=1000)


def reply(src="10.96.0.20", **tcp):
    return IP(src=src, dst="192.168.1.5") / TCP(sport=80, dport=40000, **tcp)


def icmp_error(code, src="172.31.0.11"):
    return (IP(src=src, dst="192.168.1.5") / ICMP(type=3, code=code)
            / IPerror(bytes(SYN)[:28]))


def test_syn_ack_is_open_rst_is_refused():
    probe = Probe("10.96.0.20", 80, "tcp")
    assert classify(probe, reply(flags="SA", ack=1001)) == ("open", {"responder": "10.96.0.20"})
    assert classify(probe, reply(flags="RA", ack=1001))[0] == "refused"


@pytest.mark.parametrize("code,name", [(3, "port-unreachable"), (13, "admin-prohibited"),
                                       (1, "host-unreachable")])
def test_icmp_unreachable_is_rejected_with_type_and_code(code, name):
    outcome, info = classify(Probe("10.96.0.20", 80, "tcp"), icmp_error(code))
    assert outcome == "rejected"
    assert info == {"responder": "172.31.0.11", "icmp_type": 3, "icmp_code": code}


def test_silence_is_dropped():
    assert classify(Probe("10.96.0.20", 80, "tcp"), None) == ("dropped", {})


def test_udp_reply_is_open_and_keeps_the_payload():
    probe = Probe("10.96.0.20", 53, "udp")
    got = IP(src="10.96.0.20") / UDP(sport=53, dport=40000) / Raw(b"svclab web-1 192.168.1.9")
    assert classify(probe, got) == ("open", {"responder": "10.96.0.20",
                                             "reply": "svclab web-1 192.168.1.9"})


def test_reply_matching_is_strict_about_addresses_ports_and_sequence():
    """A reply that was not un-NATed (it comes from the pod, not the VIP) must
    not answer the probe: that is what a broken translation looks like."""
    good = reply(flags="SA", ack=1001)
    assert good.answers(SYN)
    assert not reply(src="192.168.2.7", flags="SA", ack=1001).answers(SYN)
    wrong_port = IP(src="10.96.0.20", dst="192.168.1.5") / TCP(sport=81, dport=40000,
                                                                 flags="SA", ack=1001)
    assert not wrong_port.answers(SYN)
    assert not reply(flags="SA", ack=5).answers(SYN)
    assert icmp_error(3).answers(SYN)


def test_targets_parse_or_fail_with_usage_errors():
    assert parse_target("10.96.0.1:443") == Probe("10.96.0.1", 443, "tcp")
    assert parse_target("203.0.113.100", "icmp") == Probe("203.0.113.100", 0, "icmp")
    for text, proto in (("10.96.0.1", "tcp"), ("10.96.0.1:0", "udp"), ("web:80", "tcp"),
                        ("10.96.0.1:80", "icmp")):
        with pytest.raises(UsageError, match="--to"):
            parse_target(text, proto)
