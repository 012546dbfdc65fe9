"""The ELB host's netfilter rules as text: NLB forwarding and the listeners'
security group, rendered from data in one iptables-restore --noflush input.

nat (NLB listeners): PREROUTING -> ELB-PREROUTING, one `-d VIP -p P --dport`
jump per listener and load-balancer node (one VIP per zone) to ELB-L-<hash>,
which DNATs each new flow to one of the targets that node has in service
(kube-proxy's statistic-random cascade) at `<node>:<nodePort>`.  The client
address is left alone: that is what "client IP preserved" means.

mangle (every listener, both flavours, and the ALBs' listeners): new flows
to a VIP pass only on a listener port and, with loadBalancerSourceRanges
(an ALB's inbound CIDRs), only from those ranges; everything else to a VIP
is dropped (a security group does not answer).  An NLB node with no
registered target it may send to drops too.

Chains the previous apply had and this one has not are flushed and deleted
in the same transaction.  Pure: `render_rules` does no I/O.

Each DNAT rule's packet counter counts the flows it sent to its target (the
nat table sees only a flow's first packet): `parse_dnat_counts` reads them
from `iptables-save -c`, so the status can say how many connections each
NLB node gave each target.
"""
from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from base.alb_api import Alb
from base.elb_api import NLB, LoadBalancer

NAT_CHAIN = "ELB-PREROUTING"
FIREWALL_CHAIN = "ELB-FIREWALL"
LISTENER_PREFIX = "ELB-L-"
RANGES_PREFIX = "ELB-FW-"
ANY = "0.0.0.0/0"


@dataclass(frozen=True)
class Present:
    """What an iptables-save showed: our chains, and whether the jumps exist."""

    nat_chains: frozenset[str] = frozenset()
    mangle_chains: frozenset[str] = frozenset()
    nat_jump: bool = False
    mangle_jump: bool = False


def chain_name(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:16]


def listener_chain(lb: LoadBalancer, port: int, protocol: str, vip: str | None = None) -> str:
    """The DNAT chain of one listener on one node's VIP (the first node's by default)."""
    return chain_name(LISTENER_PREFIX, lb.key, vip or lb.vip, port, protocol)


def ranges_chain(lb: LoadBalancer) -> str:
    return chain_name(RANGES_PREFIX, lb.key, lb.vip)


def _alb_firewall(albs: Sequence[Alb]) -> tuple[list[str], list[str]]:
    """(chains, rules) of the ALBs' security groups: their listener ports, from
    their inbound ranges."""
    chains, body = [], []
    for alb in sorted(albs, key=lambda a: a.name):
        verdict = "-j ACCEPT"
        if set(alb.source_ranges) != {ANY}:
            fw = chain_name(RANGES_PREFIX, "alb", alb.name, alb.vip)
            chains.append(fw)
            body += [f"-A {fw} -s {cidr} -j ACCEPT" for cidr in alb.source_ranges]
            body.append(f"-A {fw} {_comment(f'ALB {alb.name} inbound ranges')} -j DROP")
            verdict = f"-j {fw}"
        for vip in alb.vips:
            for listener in alb.listeners:
                body.append(f"-A {FIREWALL_CHAIN} -d {vip}/32 -p tcp -m tcp --dport "
                            f"{listener.port} {_comment(f'ALB {alb.name}:{listener.port}')} "
                            f"{verdict}")
    return chains, body


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def render_rules(lbs: tuple[LoadBalancer, ...] | list[LoadBalancer],
                 in_service: dict[str, tuple[str, ...]], present: Present = Present(),
                 serving: dict[tuple[str, str], tuple[str, ...]] | None = None,
                 albs: Sequence[Alb] = ()) -> str:
    """All ELB-* chains for these load balancers (and the ALBs' security
    groups).  in_service: key -> target addresses every node of that LB
    sends to; serving: (key, VIP) -> the addresses that one node sends to
    (takes precedence)."""
    serving = serving or {}
    nat_body: list[str] = []
    nat_chains = [NAT_CHAIN]
    mangle_body: list[str] = []
    mangle_chains = [FIREWALL_CHAIN]
    for lb in sorted(lbs, key=lambda lb: lb.key):
        restricted = set(lb.source_ranges) != {ANY}
        fw = ranges_chain(lb)
        if restricted:
            mangle_chains.append(fw)
            mangle_body += [f"-A {fw} -s {cidr} -j ACCEPT" for cidr in lb.source_ranges]
            mangle_body.append(f"-A {fw} {_comment(f'{lb.key} loadBalancerSourceRanges')} "
                               "-j DROP")
        for node, listener in [(n, l) for n in lb.nodes for l in lb.listeners]:
            proto = listener.protocol.lower()
            match = f"-d {node.vip}/32 -p {proto} -m {proto} --dport {listener.port}"
            where = f"{lb.key}:{listener.port}/{listener.protocol} {lb.flavour}"
            if node.zone:
                where += f" {node.zone}"
            if lb.flavour == NLB and not lb.targets_for(node):
                verdict = "-j DROP"
                where += " no targets"
            else:
                verdict = f"-j {fw}" if restricted else "-j ACCEPT"
            mangle_body.append(f"-A {FIREWALL_CHAIN} {match} {_comment(where)} {verdict}")
            if lb.flavour != NLB:
                continue
            chain = listener_chain(lb, listener.port, listener.protocol, node.vip)
            nat_chains.append(chain)
            nat_body.append(f"-A {NAT_CHAIN} {match} {_comment(where)} -j {chain}")
            addresses = serving.get((lb.key, node.vip), in_service.get(lb.key, ()))
            nat_body += _dnat_cascade(chain, addresses, proto, listener.node_port)
    alb_chains, alb_body = _alb_firewall(albs)
    mangle_chains += alb_chains
    mangle_body += alb_body
    for vip in sorted({vip for lb in lbs for vip in lb.vips}
                      | {vip for alb in albs for vip in alb.vips}):
        mangle_body.append(f"-A {FIREWALL_CHAIN} -d {vip}/32 "
                           f"{_comment('not a listener')} -j DROP")
    stale_nat = sorted(present.nat_chains - set(nat_chains))
    stale_mangle = sorted(present.mangle_chains - set(mangle_chains))
    out = ["*mangle"]
    out += [f":{c} - [0:0]" for c in mangle_chains + stale_mangle]
    if not present.mangle_jump:
        out.append(f"-A PREROUTING -m conntrack --ctstate NEW -j {FIREWALL_CHAIN}")
    out += mangle_body
    out += [f"-X {c}" for c in stale_mangle]
    out += ["COMMIT", "*nat"]
    out += [f":{c} - [0:0]" for c in nat_chains + stale_nat]
    if not present.nat_jump:
        out.append(f"-A PREROUTING -j {NAT_CHAIN}")
    out += nat_body
    out += [f"-X {c}" for c in stale_nat]
    out += ["COMMIT", ""]
    return "\n".join(out)


def _dnat_cascade(chain: str, addresses: tuple[str, ...], proto: str,
                  node_port: int) -> list[str]:
    """One DNAT per target; the i-th of n taken with probability 1/(n-i)."""
    rules = []
    count = len(addresses)
    for index, address in enumerate(sorted(addresses)):
        left = count - index
        chance = "" if left == 1 else \
            f"-m statistic --mode random --probability {1 / left:.11f} "
        rules.append(f"-A {chain} -p {proto} {_comment(f'target {address}')} {chance}"
                     f"-j DNAT --to-destination {address}:{node_port}")
    return rules


_COUNTED = re.compile(r"^\[(\d+):\d+\] -A (ELB-L-\S+) .* --to-destination ([0-9.]+):\d+$")


def parse_dnat_counts(nat_save: str) -> dict[str, dict[str, int]]:
    """chain -> target address -> flows, from `iptables-save -c -t nat`."""
    counts: dict[str, dict[str, int]] = {}
    for line in nat_save.splitlines():
        found = _COUNTED.match(line)
        if found:
            per_target = counts.setdefault(found[2], {})
            per_target[found[3]] = per_target.get(found[3], 0) + int(found[1])
    return counts


def parse_present(nat_save: str, mangle_save: str) -> Present:
    """Our chains and jumps, from `iptables-save -t nat` and `-t mangle`."""
    def chains(text: str) -> frozenset[str]:
        return frozenset(line[1:].split()[0] for line in text.splitlines()
                         if line.startswith(":ELB-"))
    return Present(
        nat_chains=chains(nat_save), mangle_chains=chains(mangle_save),
        nat_jump=any(l.startswith("-A PREROUTING") and l.endswith(f"-j {NAT_CHAIN}")
                     for l in nat_save.splitlines()),
        mangle_jump=any(l.startswith("-A PREROUTING") and l.endswith(f"-j {FIREWALL_CHAIN}")
                        for l in mangle_save.splitlines()))


def removal_rules(present: Present) -> str:
    """Everything ELB-* gone (agent shutdown with --cleanup, or tests)."""
    out = ["*mangle"]
    out += [f":{c} - [0:0]" for c in sorted(present.mangle_chains)]
    if present.mangle_jump:
        out.append(f"-D PREROUTING -m conntrack --ctstate NEW -j {FIREWALL_CHAIN}")
    out += [f"-X {c}" for c in sorted(present.mangle_chains)]
    out += ["COMMIT", "*nat"]
    out += [f":{c} - [0:0]" for c in sorted(present.nat_chains)]
    if present.nat_jump:
        out.append(f"-D PREROUTING -j {NAT_CHAIN}")
    out += [f"-X {c}" for c in sorted(present.nat_chains)]
    out += ["COMMIT", ""]
    return "\n".join(out)
