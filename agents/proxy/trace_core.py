"""The packet walk both proxy tracers share: one core, two rule dialects.

Tests must check the rules that are really applied, in either proxy mode,
and `svclab trace` must say which chains a live packet went through.  Both
are the same walk over different syntax: the first packet of a connection
meets the netfilter hooks in order, each hook runs its base chains, chains
jump and go to other chains, random matches split the packet into branches
with probabilities.  This module holds that walk once.  A mode supplies
only its rules (`PacketTracer`'s three abstract methods: which base chains
a hook runs, the rules of a chain, what one rule does to a packet):
agents.proxy.iptables_tracer over iptables-restore text,
agents.proxy.nft_tracer over nft text.

The hooks a first packet meets, in order (`hooks_after` says which follow
the first one, from where routing sends the packet after its DNAT):

    prerouting or output   first: from outside, or locally originated
    input or forward       delivered to the node, or routed on (the node's
                           own packet to itself meets output, then input)
    postrouting            last, when the packet leaves the node

A packet knows its input and output interface (``Packet.iif``/``oif``):
the tracer is given a map of the node's local pod IPs to their ``cali*``
veths, every other address is behind ``eth0``; iif is set when the packet
arrives, oif once routing (after DNAT) chose it.  Policy rules (agents.policy)
match on them, and on conntrack state NEW (the first packet).

Every branch records its path (`Step`s): each chain it entered and each
rule that matched in it, as kube-proxy's packet-flow test helpers record
the rules a traced packet matched, so a failing test or a trace can say
why.  Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from agents.proxy.errors import TracerError

MAX_DEPTH = 32
MASQUERADE_MARK = 0x4000
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
DEFAULT_INTERFACE = "eth0"

# What one rule can do to a packet (Effect.action), whatever the syntax.
MISS = "MISS"          # the rule does not match: on to the next rule
NEXT = "NEXT"          # it matched and lets the packet go on (set a mark, ...)
JUMP = "JUMP"          # run Effect.chain; its RETURN resumes after this rule
GOTO = "GOTO"          # run Effect.chain; its RETURN returns from this chain
NAT = "NAT"            # DNAT or masquerade: leaves the chain as accepted
ACCEPT, DROP, REJECT, RETURN = "ACCEPT", "DROP", "REJECT", "RETURN"
STOPPED = (DROP, REJECT)    # verdicts that end the packet's way


@dataclass(frozen=True)
class Step:
    """One entry of a branch's path: a chain it entered, or a rule that
    matched in that chain (``rule``: the rule's text as written)."""

    hook: str                   # prerouting | output | input | forward | postrouting
    table: str                  # nat | filter: iptables table, nft base chain type
    chain: str
    rule: str | None = None     # None: the chain was entered
    base: bool = False          # the chain is the hook's base (built-in) chain


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection, as the rules changed it so far.

    mark, dnat and masquerade say what MARK and NAT did; recent_set names
    the affinity lists a rule put the client in; accepted: one of our rules
    said ACCEPT; path: the Steps this branch went through.
    """

    src: str
    dst: str
    dport: int
    protocol: str
    mark: int = 0
    dnat: str | None = None
    recent_set: tuple[str, ...] = ()
    accepted: bool = False
    masquerade: bool = False
    path: tuple[Step, ...] = ()
    iif: str = ""               # input interface ("" when locally originated)
    oif: str = ""               # output interface, once routed

    def translated(self, to: str) -> Packet:
        """DNATed to 'ip' or 'ip:port'."""
        ip, _, port = to.partition(":")
        return replace(self, dst=ip, dport=int(port or self.dport), dnat=to)

    def remembered(self, name: str) -> Packet:
        """With the client added to affinity list name."""
        return replace(self, recent_set=tuple(sorted({*self.recent_set, name})))

    def went(self, step: Step) -> Packet:
        """With step added to its path."""
        return replace(self, path=self.path + (step,))


@dataclass(frozen=True)
class Outcome:
    """One possible fate of the packet.

    verdict: ACCEPT (DNATed or accepted by one of our rules), DROP, REJECT,
    or NO-MATCH (none of our rules decided anything).  masquerade_mark: the
    masquerade mark (0x4000) was set in the first hook; masquerade: the
    packet was masqueraded (in postrouting).
    """

    verdict: str
    dnat: str | None
    masquerade_mark: bool
    masquerade: bool
    recent_set: tuple[str, ...] = ()
    probability: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class Effect:
    """One way a rule acts on a packet: for ``share`` of the branch's
    probability, ``packet`` (as the rule changed it) meets ``action``."""

    share: float
    packet: Packet
    action: str
    chain: str | None = None    # the target of JUMP and GOTO


@dataclass(frozen=True)
class Env:
    """What a rule may ask besides the packet: is an address the node's own,
    is the client in an affinity list already (``recent``), which interface
    leads to an address (``interfaces``: local pod IP -> its cali veth)."""

    local: frozenset[str]
    recent: frozenset[str] = frozenset()
    interfaces: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def is_local(self, ip: str) -> bool:
        return ip in self.local or ipaddress.ip_address(ip) in LOOPBACK

    def interface(self, ip: str) -> str:
        """The interface a packet to (or from) ip goes out of (comes in on)."""
        if self.is_local(ip):
            return "lo"
        return self.interfaces.get(ip, DEFAULT_INTERFACE)


class AnyRule(Protocol):
    """A parsed rule of either mode: all the walk itself reads is its text."""

    text: str


@dataclass(frozen=True)
class TracedBranch:
    """One possible fate of the packet, with the way it took there."""

    probability: float
    packet: Packet
    verdict: str        # ACCEPT | DROP | REJECT | NO-MATCH (final_verdict)
    marked: bool        # the masquerade mark was set in the first hook

    @property
    def path(self) -> tuple[Step, ...]:
        return self.packet.path

    @property
    def entered(self) -> tuple[Step, ...]:
        """The chains it jumped or went to (not the hooks' base chains)."""
        return tuple(s for s in self.path if s.rule is None and not s.base)

    def chains(self) -> tuple[str, ...]:
        return tuple(s.chain for s in self.entered)

    def rules(self) -> tuple[str, ...]:
        """The text of every rule that matched, in order."""
        return tuple(s.rule for s in self.path if s.rule is not None)

    def outcome(self) -> Outcome:
        pk = self.packet
        return Outcome(self.verdict, pk.dnat, self.marked, pk.masquerade,
                       pk.recent_set)

    def describe(self) -> str:
        """'nat prerouting: PREROUTING -> KUBE-SERVICES -> ...; nat
        postrouting: ...': the chains entered, per base chain."""
        groups: list[list[str]] = []
        for step in self.path:
            if step.base or not groups:
                groups.append([f"{step.table} {step.hook}: {step.chain}"])
            elif step.rule is None:
                groups[-1].append(step.chain)
        return "; ".join(" -> ".join(g) for g in groups) or "(no chain)"


def hooks_after(locally_originated: bool, delivered_locally: bool) -> tuple[str, ...]:
    """The hooks a packet meets after its first one, by where it is routed."""
    if delivered_locally:
        return ("input", "postrouting") if locally_originated else ("input",)
    return ("postrouting",) if locally_originated else ("forward", "postrouting")


class PacketTracer(ABC):
    """Walks the first packet of a connection through one mode's rules.

    A mode says which base chains a hook runs (``entry_chains``), what rules
    a chain holds (``chain_rules``) and what one rule does to a packet
    (``evaluate``); the walk, the hook order, the depth limit, is_local, the
    recorded path and the outcomes are here.  local_addresses: the node's;
    interfaces: the node's local pod IPs -> their cali veths.
    """

    masquerade_mark = MASQUERADE_MARK

    def __init__(self, local_addresses: Iterable[str] = (),
                 interfaces: Mapping[str, str] | None = None) -> None:
        self.local = frozenset(local_addresses)
        # None: the caller did not say which interfaces lead where, so rules
        # matching on interfaces are refused rather than guessed.
        self.interfaces = None if interfaces is None else dict(interfaces)

    @abstractmethod
    def entry_chains(self, hook: str) -> Sequence[tuple[str, str]]:
        """(table, chain) of the base chains hook runs, in the kernel's order."""

    @abstractmethod
    def chain_rules(self, table: str, chain: str) -> Sequence[AnyRule] | None:
        """The rules of chain in table, in order; None when it does not exist."""

    @abstractmethod
    def evaluate(self, rule: AnyRule, pk: Packet, env: Env) -> list[Effect]:
        """What rule does to pk: Effects whose shares add up to 1.  Raise
        TracerError for anything the mode does not understand."""

    def is_local(self, ip: str) -> bool:
        return Env(self.local).is_local(ip)

    def branches(self, src: str, dst: str, dport: int, protocol: str = "TCP", *,
                 locally_originated: bool = False,
                 recent: frozenset[str] = frozenset()) -> tuple[TracedBranch, ...]:
        """Every branch of the first packet of a connection, with its path."""
        env = Env(self.local, frozenset(recent), self.interfaces or {})
        first = "output" if locally_originated else "prerouting"
        iif = "" if locally_originated else env.interface(src)
        start = [(1.0, Packet(src, dst, dport, protocol.upper(), iif=iif), ACCEPT)]
        out = []
        for p, pk, verdict in self._hook(first, start, env):
            marked = bool(pk.mark & self.masquerade_mark)
            live = [(p, pk, verdict)]
            for hook in hooks_after(locally_originated, env.is_local(pk.dst)):
                live = self._hook(hook, live, env)
            out += [TracedBranch(q, pk2, final_verdict(pk2, v), marked)
                    for q, pk2, v in live]
        return tuple(out)

    def trace(self, src: str, dst: str, dport: int, protocol: str = "TCP", *,
              locally_originated: bool = False,
              recent: frozenset[str] = frozenset()) -> tuple[Outcome, ...]:
        """All possible outcomes for the first packet of a connection."""
        return collect_outcomes(self.branches(
            src, dst, dport, protocol, locally_originated=locally_originated,
            recent=recent))

    def _hook(self, hook: str, branches, env: Env):
        """Run hook's base chains on every live branch; only DROP and REJECT
        end a branch (ACCEPT and RETURN pass it on to the next chain).
        From output on, the packet is routed: its oif is known."""
        if hook != "prerouting":
            branches = [(p, _routed(pk, hook, env), v) for p, pk, v in branches]
        for table, chain in self.entry_chains(hook):
            out = []
            for p, pk, verdict in branches:
                if verdict in STOPPED:
                    out.append((p, pk, verdict))
                    continue
                base = Step(hook, table, chain, base=True)
                for q, pk2, res in self._run(base, pk, env, 0):
                    out.append((p * q, pk2, res if res in STOPPED else verdict))
            branches = out
        return branches

    def _run(self, where: Step, pk: Packet, env: Env, depth: int):
        """[(probability, packet, result)] of running chain where.chain;
        result is RETURN (fell off the end) or a verdict."""
        if depth > MAX_DEPTH:
            raise TracerError(f"chain nesting deeper than {MAX_DEPTH} at {where.chain}")
        rules = self.chain_rules(where.table, where.chain)
        if rules is None:
            raise TracerError(f"jump to missing chain {where.table}/{where.chain}")
        results = []
        stack = [(1.0, pk.went(where), 0)]
        while stack:
            p, pk, i = stack.pop()
            if i >= len(rules):
                results.append((p, pk, RETURN))
                continue
            for effect in self.evaluate(rules[i], pk, env):
                q = p * effect.share
                if q <= 0.0:
                    continue
                if effect.action == MISS:
                    stack.append((q, effect.packet, i + 1))
                    continue
                matched = replace(where, rule=rules[i].text, base=False)
                done, resumed = self._act(effect, q, effect.packet.went(matched), where,
                                          env, depth)
                results += done
                stack += [(r, pk2, i + 1) for r, pk2 in resumed]
        return results

    def _act(self, effect: Effect, q: float, pk: Packet, where: Step, env: Env,
             depth: int):
        """What a matched rule's action leads to: ([(probability, packet,
        result)] that leave the chain, [(probability, packet)] that go on
        with the next rule: after NEXT, or when a JUMP's chain RETURNs)."""
        action = effect.action
        if action == NEXT:
            return [], [(q, pk)]
        if action == NAT:
            return [(q, pk, ACCEPT)], []
        if action in (ACCEPT, DROP, REJECT, RETURN):
            return [(q, replace(pk, accepted=True) if action == ACCEPT else pk, action)], []
        if action not in (JUMP, GOTO) or not effect.chain:
            raise TracerError(f"unknown action {action} in chain {where.chain}")
        done, resumed = [], []
        target = Step(where.hook, where.table, effect.chain)
        for q2, pk2, res in self._run(target, pk, env, depth + 1):
            if res == RETURN and action == JUMP:
                resumed.append((q * q2, pk2))
            else:
                done.append((q * q2, pk2, res))
        return done, resumed


def _routed(pk: Packet, hook: str, env: Env) -> Packet:
    oif = "" if hook == "input" else env.interface(pk.dst)
    return pk if pk.oif == oif else replace(pk, oif=oif)


def final_verdict(pk: Packet, verdict: str) -> str:
    """How a finished branch ends: DROP or REJECT, ACCEPT when it was DNATed
    or accepted by one of our rules, NO-MATCH otherwise."""
    return verdict if verdict in STOPPED else (
        ACCEPT if pk.dnat or pk.accepted else "NO-MATCH")


def collect_outcomes(branches: Iterable[TracedBranch]) -> tuple[Outcome, ...]:
    """The sorted outcomes of a walk's branches, equal outcomes summed."""
    outcomes: dict[Outcome, float] = {}
    for branch in branches:
        key = branch.outcome()
        outcomes[key] = outcomes.get(key, 0.0) + branch.probability
    return tuple(sorted(
        (replace(o, probability=p) for o, p in outcomes.items()),
        key=lambda o: (o.verdict, o.dnat or "", o.masquerade, o.recent_set)))
