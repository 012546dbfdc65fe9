"""The ALBs' security groups in the ELB host's netfilter rules (agents/elb/rules.py):
listener ports pass (from the inbound ranges), everything else to an ALB's
address is dropped."""
from __future__ import annotations

from agents.elb.rules import render_rules
from base.alb_api import Alb, Listener


def alb(name: str, vip: str, ranges=("0.0.0.0/0",)) -> Alb:
    return Alb(name, f"{name}.us-east-1.elb.amazonaws.com", "internet-facing", vip,
               (Listener(80, "HTTP"), Listener(8443, "HTTP")), source_ranges=ranges)


def mangle(text: str) -> list[str]:
    return [line for line in text.split("COMMIT")[0].splitlines() if line.startswith("-A ")]


def test_listener_ports_pass_and_the_rest_is_dropped():
    rules = mangle(render_rules([], {}, albs=[alb("web", "203.0.113.20")]))
    assert rules == [
        "-A PREROUTING -m conntrack --ctstate NEW -j ELB-FIREWALL",
        '-A ELB-FIREWALL -d 203.0.113.20/32 -p tcp -m tcp --dport 80 -m comment --comment '
        '"ALB web:80" -j ACCEPT',
        '-A ELB-FIREWALL -d 203.0.113.20/32 -p tcp -m tcp --dport 8443 -m comment --comment '
        '"ALB web:8443" -j ACCEPT',
        '-A ELB-FIREWALL -d 203.0.113.20/32 -m comment --comment "not a listener" -j DROP']


def test_inbound_ranges_get_a_chain_of_their_own():
    text = render_rules([], {}, albs=[alb("web", "203.0.113.20", ("198.51.100.0/24",))])
    rules = mangle(text)
    chain = rules[3].split()[-1]
    assert rules[3].startswith("-A ELB-FIREWALL -d 203.0.113.20/32 -p tcp -m tcp --dport 80 ")
    assert chain.startswith("ELB-FW-") and f":{chain} - [0:0]" in text
    assert rules[1:3] == [f"-A {chain} -s 198.51.100.0/24 -j ACCEPT",
                          f'-A {chain} -m comment --comment "ALB web inbound ranges" -j DROP']


def test_without_albs_nothing_changes():
    assert render_rules([], {}) == render_rules([], {}, albs=())
    assert "ALB" not in render_rules([], {})
