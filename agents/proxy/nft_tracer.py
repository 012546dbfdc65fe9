"""A pure-Python packet tracer over the nft text the nftables renderer writes.

Tests must check what is really applied, so this reads the rendered `nft -f`
commands (``add``/``flush``/``delete`` of tables, chains, sets, maps,
elements and rules), applies them in order to an in-memory table the way the
kernel would — refusing, like nft, to add rules to missing chains, to delete
elements that are not there or chains and sets that are still referenced —
and walks the first packet of a connection through the base chains in hook
and priority order: prerouting (or output for locally originated packets),
then input or forward, then postrouting.  ``numgen random mod N vmap``
branches into N outcomes of probability 1/N, ``numgen random mod M V`` into
a match of probability 1/M and a miss; a lookup in an affinity set matches when
the set name is in ``recent`` (a client that already has affinity), and
``update @set`` is reported in the outcome.  It understands only the subset
of nft the renderer uses and raises TracerError on anything else.
Answers are agents.proxy.tracer.Outcome values, as the iptables tracer's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from agents.proxy.errors import TracerError
from agents.proxy.nft_model import TERMINAL, apply_commands
from agents.proxy.tracer import Outcome, Packet, collect_outcomes

MAX_DEPTH = 32


class NftTracer:
    """Walks packets through an applied table; local_addresses: the node's."""

    def __init__(self, text: str, local_addresses=(), *,
                 masquerade_mark: int = 0x4000) -> None:
        self.table = apply_commands(text)
        self.local = frozenset(local_addresses)
        self.mask = masquerade_mark
        self._loopback = ipaddress.ip_network("127.0.0.0/8")

    def apply(self, text: str) -> None:
        """Apply a further transaction (e.g. a partial sync) on top."""
        self.table = apply_commands(text, self.table)

    def is_local(self, ip: str) -> bool:
        return ip in self.local or ipaddress.ip_address(ip) in self._loopback

    def _lookup(self, item: tuple, pk: Packet):
        proto = pk.protocol.lower()
        key = ((pk.dst, proto, str(pk.dport)) if item[1] == "addr"
               else (proto, str(pk.dport)))
        return self.table.maps[item[2]].get(key)

    def _match(self, item: tuple, pk: Packet, recent: frozenset[str]) -> bool:
        kind = item[0]
        if kind in ("inset", "innet"):
            ip = pk.src if item[1] == "s" else pk.dst
            if kind == "inset":
                found = (item[3] in recent if item[3] in self.table.dynamic
                         else ip in self.table.sets[item[3]])
            else:
                found = any(ipaddress.ip_address(ip) in net
                            for net in item[3])
            return found != item[2]
        if kind == "proto":
            return item[1] == pk.protocol.lower()
        if kind == "ct":
            return item[1] == "new"       # the first packet of a connection
        if kind == "fib":
            return self.is_local(pk.src if item[1] == "s" else pk.dst)
        if kind == "mark":
            return pk.mark & item[1] == item[2]
        raise TracerError(f"unknown match {kind}")

    def run_chain(self, chain: str, pk: Packet, recent: frozenset[str],
                  depth: int = 0):
        """[(probability, packet, result)]; result RETURN or a verdict."""
        if depth > MAX_DEPTH:
            raise TracerError(f"chain nesting deeper than {MAX_DEPTH}")
        rules = self.table.chains.get(chain)
        if rules is None:
            raise TracerError(f"jump to missing chain {chain}")
        results = []
        stack = [(1.0, pk, 0)]
        while stack:
            p, pk, i = stack.pop()
            if i >= len(rules):
                results.append((p, pk, "RETURN"))
                continue
            results += self._rule(rules[i], p, pk, i, stack, recent, depth)
        return results

    def _rule(self, rule, p, pk, i, stack, recent, depth):
        for item in rule.items:
            kind = item[0]
            if kind == "setmark":
                mark = pk.mark | item[2] if item[1] == "or" \
                    else pk.mark ^ item[2]
                pk = replace(pk, mark=mark)
            elif kind == "update":
                pk = replace(pk, recent_set=tuple(sorted(
                    {*pk.recent_set, item[1]})))
            elif kind == "dnat":
                ip, _, port = item[1].partition(":")
                return [(p, replace(pk, dst=ip, dport=int(port or pk.dport),
                                    dnat=item[1]), "ACCEPT")]
            elif kind == "masquerade":
                return [(p, replace(pk, masquerade=True), "ACCEPT")]
            elif kind == "verdict":
                return self._verdict(item[1:], p, pk, i, stack, recent, depth)
            elif kind == "vmap":
                found = self._lookup(item, pk)
                if found is None:
                    break
                return self._verdict(found, p, pk, i, stack, recent, depth)
            elif kind == "numgen-eq":       # a fresh draw: 1/M matches
                stack.append((p * (item[1] - 1) / item[1], pk, i + 1))
                p = p / item[1]
            elif kind == "numgen":
                out = []
                for k in range(item[1]):
                    if k not in item[2]:
                        raise TracerError(f"numgen {k} unmapped: {rule.text}")
                    out += self._verdict(item[2][k], p / item[1], pk, i,
                                         stack, recent, depth)
                return out
            elif not self._match(item, pk, recent):
                break
        stack.append((p, pk, i + 1))
        return []

    def _verdict(self, verdict, p, pk, i, stack, recent, depth):
        kind, target = verdict
        if kind in TERMINAL:
            if kind == "accept":
                pk = replace(pk, accepted=True)
            return [(p, pk, TERMINAL[kind])]
        if kind == "return":
            return [(p, pk, "RETURN")]
        out = []
        for q, pk2, res in self.run_chain(target, pk, recent, depth + 1):
            if res == "RETURN" and kind == "jump":
                stack.append((p * q, pk2, i + 1))
            else:
                out.append((p * q, pk2, res))
        return out

    def _hook(self, hook: str, branches, recent):
        chains = sorted((prio, name) for name, (_, h, prio)
                        in self.table.base.items() if h == hook)
        for _, chain in chains:
            out = []
            for p, pk, verdict in branches:
                if verdict in ("DROP", "REJECT"):
                    out.append((p, pk, verdict))
                    continue
                for q, pk2, res in self.run_chain(chain, pk, recent):
                    out.append((p * q, pk2,
                                res if res in ("DROP", "REJECT") else verdict))
            branches = out
        return branches

    def walk(self, pk, locally_originated: bool, recent: frozenset[str]):
        """Every branch of a first packet through the hooks it meets:
        yields (marked in the first hook, probability, packet, verdict)."""
        first = "output" if locally_originated else "prerouting"
        for p, pk1, verdict in self._hook(first, [(1.0, pk, "ACCEPT")], recent):
            marked = bool(pk1.mark & self.mask)
            local = self.is_local(pk1.dst)
            hooks = ["input"] if local else []
            if not locally_originated and not local:
                hooks = ["forward"]
            if locally_originated or not local:
                hooks.append("postrouting")
            live = [(p, pk1, verdict)]
            for hook in hooks:
                live = self._hook(hook, live, recent)
            for q, pk3, v3 in live:
                yield marked, q, pk3, v3

    def trace(self, src: str, dst: str, dport: int, protocol: str = "TCP", *,
              locally_originated: bool = False,
              recent: frozenset[str] = frozenset()) -> tuple[Outcome, ...]:
        """All possible outcomes for the first packet of a connection."""
        return collect_outcomes(self.walk(
            Packet(src, dst, dport, protocol.upper()), locally_originated, recent))


def trace(text: str, src: str, dst: str, dport: int, protocol: str = "TCP",
          *, local_addresses=(), locally_originated: bool = False,
          recent: frozenset[str] = frozenset()) -> tuple[Outcome, ...]:
    """Parse text and trace one packet (see NftTracer.trace)."""
    return NftTracer(text, local_addresses).trace(
        src, dst, dport, protocol, locally_originated=locally_originated,
        recent=recent)
