"""The nftables mode's packet tracer: the nft text the nftables renderer writes.

Tests must check what is really applied, so this applies the rendered
`nft -f` commands to an in-memory table (agents.proxy.nft_table, which
refuses what nft would refuse) and traces packets through it.  This module
is the nft dialect only: which base chains a hook runs (by priority) and
what one rule's statements (agents.proxy.nft_rule) do to a packet; the walk
through the hooks, the branches, the recorded path and the outcomes are
agents.proxy.trace_core's, shared with the iptables tracer.

``numgen random mod N vmap`` splits a branch into N of probability 1/N,
``numgen random mod M V`` into a match of probability 1/M and a miss; a
lookup in an affinity (dynamic) set matches when the set name is in
``recent`` (a client that already has affinity), and ``update @set`` is
reported in the outcome.  Statements the model does not know raise
TracerError.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from agents.proxy.errors import TracerError
from agents.proxy.nft_rule import (
    AddrMatch,
    CtState,
    Dnat,
    FibLocal,
    MarkMatch,
    MarkSet,
    Masquerade,
    NumgenMatch,
    NumgenVmap,
    ProtoMatch,
    Rule,
    SetMatch,
    SetUpdate,
    Statement,
    Verdict,
    VmapLookup,
)
from agents.proxy.nft_table import apply_commands
from agents.proxy.trace_core import (
    ACCEPT,
    DROP,
    GOTO,
    JUMP,
    MISS,
    NAT,
    NEXT,
    REJECT,
    RETURN,
    Effect,
    Env,
    Outcome,
    Packet,
    PacketTracer,
)

ACTIONS = {"accept": ACCEPT, "drop": DROP, "reject": REJECT, "return": RETURN,
           "jump": JUMP, "goto": GOTO}


class NftTracer(PacketTracer):
    """Walks packets through an applied table; local_addresses: the node's."""

    def __init__(self, text: str, local_addresses=(), *,
                 masquerade_mark: int = 0x4000) -> None:
        super().__init__(local_addresses)
        self.masquerade_mark = masquerade_mark
        self.table = apply_commands(text)

    def apply(self, text: str) -> None:
        """Apply a further transaction (e.g. a partial sync) on top."""
        self.table = apply_commands(text, self.table)

    def entry_chains(self, hook: str) -> list[tuple[str, str]]:
        chains = sorted((base.priority, name) for name, base in self.table.base.items()
                        if base.hook == hook)
        return [(self.table.base[name].type, name) for _, name in chains]

    def chain_rules(self, table: str, chain: str) -> list[Rule] | None:
        return self.table.chains.get(chain)     # one table: chain names are unique

    def evaluate(self, rule: Rule, pk: Packet, env: Env) -> list[Effect]:
        """The rule's statements in order: changes to the packet apply as
        they come, the first failed match makes the rest a MISS."""
        effects: list[Effect] = []
        share = 1.0
        for item in rule.items:
            match item:
                case MarkSet(op, value):
                    pk = replace(pk, mark=pk.mark | value if op == "or" else pk.mark ^ value)
                case SetUpdate(name):
                    pk = pk.remembered(name)
                case Dnat(to):
                    return [*effects, Effect(share, pk.translated(to), NAT)]
                case Masquerade():
                    return [*effects, Effect(share, replace(pk, masquerade=True), NAT)]
                case Verdict():
                    return [*effects, _verdict(item, share, pk)]
                case VmapLookup():
                    found = self._lookup(item, pk)
                    if found is None:
                        return [*effects, Effect(share, pk, MISS)]
                    return [*effects, _verdict(found, share, pk)]
                case NumgenMatch(mod):      # a fresh draw: 1/mod matches
                    effects.append(Effect(share * (mod - 1) / mod, pk, MISS))
                    share /= mod
                case NumgenVmap(mod):
                    return [*effects, *(_verdict(self._numgen_target(item, k, rule),
                                                 share / mod, pk) for k in range(mod))]
                case _:
                    if not self._match(item, pk, env):
                        return [*effects, Effect(share, pk, MISS)]
        return [*effects, Effect(share, pk, NEXT)]

    def _lookup(self, item: VmapLookup, pk: Packet) -> Verdict | None:
        proto = pk.protocol.lower()
        key = ((pk.dst, proto, str(pk.dport)) if item.key == "addr"
               else (proto, str(pk.dport)))
        return self.table.maps[item.name].get(key)

    @staticmethod
    def _numgen_target(item: NumgenVmap, number: int, rule: Rule) -> Verdict:
        verdict = item.target(number)
        if verdict is None:
            raise TracerError(f"numgen {number} unmapped: {rule.text}")
        return verdict

    def _match(self, item: Statement, pk: Packet, env: Env) -> bool:
        match item:
            case SetMatch(fld, negated, name):
                ip = pk.src if fld == "saddr" else pk.dst
                found = (name in env.recent if name in self.table.dynamic
                         else ip in self.table.sets[name])
                return found != negated
            case AddrMatch(fld, negated, nets):
                ip = ipaddress.ip_address(pk.src if fld == "saddr" else pk.dst)
                return any(ip in net for net in nets) != negated
            case ProtoMatch(proto):
                return proto == pk.protocol.lower()
            case CtState(state):
                return state == "new"       # the first packet of a connection
            case FibLocal(fld):
                return env.is_local(pk.src if fld == "saddr" else pk.dst)
            case MarkMatch(mask, value):
                return pk.mark & mask == value
        raise TracerError(f"unknown match {item}")


def _verdict(verdict: Verdict, share: float, pk: Packet) -> Effect:
    return Effect(share, pk, ACTIONS[verdict.kind], verdict.chain)


def trace(text: str, src: str, dst: str, dport: int, protocol: str = "TCP",
          *, local_addresses=(), locally_originated: bool = False,
          recent: frozenset[str] = frozenset()) -> tuple[Outcome, ...]:
    """Parse text and trace one packet (see PacketTracer.trace)."""
    return NftTracer(text, local_addresses).trace(
        src, dst, dport, protocol, locally_originated=locally_originated,
        recent=recent)
