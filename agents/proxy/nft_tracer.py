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
TracerError.  Several tables of one node (kube-proxy's and the NetworkPolicy
table ip svclab-netpol) can be walked together: ``tables=``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace

from agents.proxy.errors import TracerError
from agents.proxy.nft_rule import (
    AddrMatch,
    CtState,
    Dnat,
    FibLocal,
    IfaceMatch,
    MarkMatch,
    MarkSet,
    Masquerade,
    NumgenMatch,
    NumgenVmap,
    PortMatch,
    ProtoMatch,
    Rule,
    SetMatch,
    SetUpdate,
    Statement,
    Verdict,
    VmapLookup,
)
from agents.proxy.nft_table import Table, apply_commands
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
    """Walks packets through applied tables; local_addresses: the node's.

    text is table ip kube-proxy's; ``tables`` adds other tables of the same
    node by name (e.g. {"ip svclab-netpol": text}): their base chains join
    the hooks by priority.  A chain name must be unique across the tables
    (the walk finds a jump's target by name).
    """

    def __init__(self, text: str, local_addresses=(), *,
                 masquerade_mark: int = 0x4000, interfaces=None,
                 tables: Mapping[str, str] | None = None) -> None:
        super().__init__(local_addresses, interfaces)
        self.masquerade_mark = masquerade_mark
        self.table = apply_commands(text)
        self.others = {name: apply_commands(body, name=name)
                       for name, body in (tables or {}).items()}
        self._index()

    def _index(self) -> None:
        self._owner: dict[str, Table] = {}
        for table in (self.table, *self.others.values()):
            for chain in table.chains:
                if chain in self._owner:
                    raise TracerError(f"chain {chain} is in two tables")
                self._owner[chain] = table

    def apply(self, text: str) -> None:
        """Apply a further transaction (e.g. a partial sync) on top."""
        self.table = apply_commands(text, self.table)
        self._index()

    def entry_chains(self, hook: str) -> list[tuple[str, str]]:
        chains = sorted((base.priority, i, name)
                        for i, table in enumerate((self.table, *self.others.values()))
                        for name, base in table.base.items() if base.hook == hook)
        return [(self._owner[name].base[name].type, name) for _, _, name in chains]

    def chain_rules(self, table: str, chain: str) -> list[Rule] | None:
        owner = self._owner.get(chain)          # chain names are unique
        return None if owner is None else owner.chains.get(chain)

    def evaluate(self, rule: Rule, pk: Packet, env: Env) -> list[Effect]:
        """The rule's statements in order: changes to the packet apply as
        they come, the first failed match makes the rest a MISS."""
        effects: list[Effect] = []
        share = 1.0
        for item in rule.items:
            match item:
                case MarkSet(op, value):
                    pk = replace(pk, mark=_mark_op(op, pk.mark, value))
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
        return self._container(item.name).maps[item.name].get(key)

    def _container(self, name: str) -> Table:
        """The table holding set or map name."""
        for table in (self.table, *self.others.values()):
            if name in table.sets or name in table.maps:
                return table
        raise TracerError(f"no set or map {name}")

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
                table = self._container(name)
                found = (name in env.recent if name in table.dynamic
                         else ip in table.sets[name])
                return found != negated
            case AddrMatch(fld, negated, nets):
                ip = ipaddress.ip_address(pk.src if fld == "saddr" else pk.dst)
                return any(ip in net for net in nets) != negated
            case ProtoMatch(proto):
                return proto == pk.protocol.lower()
            case CtState():
                return item.matches("new")  # the first packet of a connection
            case PortMatch():
                return item.matches(pk.dport)
            case IfaceMatch(fld):
                if self.interfaces is None:
                    raise TracerError(f"{fld} needs the node's interfaces (interfaces=)")
                return item.matches(pk.iif if fld == "iifname" else pk.oif)
            case FibLocal(fld):
                return env.is_local(pk.src if fld == "saddr" else pk.dst)
            case MarkMatch(mask, value):
                return pk.mark & mask == value
        raise TracerError(f"unknown match {item}")


def _mark_op(op: str, mark: int, value: int) -> int:
    if op == "or":
        return mark | value
    if op == "and":
        return mark & value
    return mark ^ value


def _verdict(verdict: Verdict, share: float, pk: Packet) -> Effect:
    return Effect(share, pk, ACTIONS[verdict.kind], verdict.chain)


def trace(text: str, src: str, dst: str, dport: int, protocol: str = "TCP",
          *, local_addresses=(), locally_originated: bool = False,
          recent: frozenset[str] = frozenset(), interfaces=None,
          tables: Mapping[str, str] | None = None) -> tuple[Outcome, ...]:
    """Parse text and trace one packet (see PacketTracer.trace)."""
    return NftTracer(text, local_addresses, interfaces=interfaces, tables=tables).trace(
        src, dst, dport, protocol, locally_originated=locally_originated,
        recent=recent)
