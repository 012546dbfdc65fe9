"""The iptables mode's packet tracer: iptables-restore / iptables-save text.

Tests must check what is really applied, so the tracer reads the rendered
text (or the iptables-save output of a node), not the RuleSet.  This module
is the iptables dialect only: it parses the text into tables of rules and
says what one rule does to a packet; the walk through the hooks (nat
PREROUTING or OUTPUT, filter OUTPUT, INPUT or FORWARD, nat POSTROUTING),
the branches, the recorded path and the outcomes are agents.proxy.trace_core's,
shared with the nft tracer.  ``-m statistic --mode random`` splits a branch
by its probability; ``-m recent --rcheck`` matches when the list name is in
the ``recent`` set given by the caller (a client with affinity state), and
``--set`` is reported in the outcome.  It knows only the match and target
subset the renderer uses and raises TracerError on anything else instead of
skipping it.  For NetworkPolicy rules (agents.policy) it also reads
``-i``/``-o`` (``+`` is a prefix wildcard; the packet's interfaces come
from the map of local pod IPs given to the tracer), ``-m multiport
--dports`` with ranges, ``--dport a:b``, conntrack state (a first packet is
NEW) and ``-m mark`` / ``-j MARK``.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, replace

from agents.proxy.errors import TracerError
from agents.proxy.trace_core import (
    GOTO,
    JUMP,
    MISS,
    NAT,
    NEXT,
    Effect,
    Env,
    Outcome,
    Packet,
    PacketTracer,
)

BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
           "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
MODULES = {"tcp", "udp", "sctp", "comment", "addrtype", "statistic", "recent",
           "mark", "conntrack", "multiport"}
BUILTIN_ALL = {c for chains in BUILTIN.values() for c in chains}
VERDICTS = {"ACCEPT", "DROP", "REJECT", "RETURN"}
# The base chains each netfilter hook runs, in order (nat INPUT is not walked).
HOOK_CHAINS = {"prerouting": (("nat", "PREROUTING"),),
               "output": (("nat", "OUTPUT"), ("filter", "OUTPUT")),
               "input": (("filter", "INPUT"),),
               "forward": (("filter", "FORWARD"),),
               "postrouting": (("nat", "POSTROUTING"),)}


@dataclass(frozen=True)
class Match:
    """One match of a rule; negated matches invert the result."""

    kind: str
    value: object
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    """One ``-A``/``-I`` rule: its matches, target (None: no -j) and the
    target's options; text is the line as written (recorded in the path)."""

    chain: str
    matches: tuple[Match, ...]
    target: str | None
    goto: bool
    options: tuple[tuple[str, str], ...]
    line: int
    text: str

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)


def _net(text: str, rule_text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise TracerError(f"bad address {text!r} in: {rule_text}") from exc


def _port_match(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    return int(lo), int(hi or lo)


def _mark(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


def parse_rule(chain: str, tokens: list[str], line: int, text: str,
               interfaces: bool = False) -> Rule:
    """Parse the tokens after '-A CHAIN' (raise on anything unknown; -i/-o
    only when the tracer knows the node's interfaces)."""
    matches: list[Match] = []
    modules: set[str] = set()
    recent: dict[str, str] = {}
    target: str | None = None
    goto = False
    options: list[tuple[str, str]] = []
    neg = False
    i = 0

    def fail(why: str) -> TracerError:
        return TracerError(f"line {line}: {why}: {text}")

    def arg() -> str:
        if i + 1 >= len(tokens):
            raise fail(f"{tokens[i]} needs a value")
        return tokens[i + 1]

    while i < len(tokens):
        tok = tokens[i]
        if target is not None:          # target options
            if tok in ("--to-destination", "--or-mark", "--xor-mark",
                       "--set-xmark", "--set-mark", "--reject-with"):
                options.append((tok, arg()))
                i += 2
            elif tok == "--random-fully":
                options.append((tok, ""))
                i += 1
            else:
                raise fail(f"unsupported target option {tok!r}")
            continue
        if tok == "!":
            neg = True
            i += 1
            continue
        step = 2
        if tok in ("-s", "--source", "-d", "--destination"):
            kind = "src" if tok in ("-s", "--source") else "dst"
            matches.append(Match(kind, _net(arg(), text), neg))
        elif tok in ("-i", "--in-interface", "-o", "--out-interface") and interfaces:
            matches.append(Match("iif" if tok in ("-i", "--in-interface") else "oif",
                                 arg(), neg))
        elif tok in ("--dports", "--destination-ports") and "multiport" in modules:
            matches.append(Match("dports", tuple(_port_match(p) for p in arg().split(",")),
                                 neg))
        elif tok in ("-p", "--protocol"):
            matches.append(Match("proto", arg().lower(), neg))
        elif tok in ("-m", "--match"):
            if neg or arg() not in MODULES:
                raise fail(f"unsupported match module {arg()!r}")
            modules.add(arg())
        elif tok in ("--dport", "--destination-port"):
            if not modules & {"tcp", "udp", "sctp"}:
                raise fail("--dport without -m tcp/udp/sctp")
            matches.append(Match("dport", _port_match(arg()), neg))
        elif tok == "--comment" and "comment" in modules:
            pass
        elif tok in ("--dst-type", "--src-type") and "addrtype" in modules:
            if arg() != "LOCAL":
                raise fail(f"unsupported address type {arg()!r}")
            matches.append(Match(tok[2:5] + "_local", True, neg))
        elif tok == "--mode" and "statistic" in modules:
            if arg() != "random":
                raise fail("only --mode random is supported")
        elif tok == "--probability" and "statistic" in modules:
            matches.append(Match("statistic", float(arg()), neg))
        elif tok in ("--name", "--seconds", "--mask") and "recent" in modules:
            recent[tok] = arg()
            if tok == "--mask" and arg() != "255.255.255.255":
                raise fail("only --mask 255.255.255.255 is supported")
        elif tok in ("--rcheck", "--set", "--reap", "--rsource") \
                and "recent" in modules:
            recent[tok] = "!" if neg else ""
            step = 1
        elif tok == "--mark" and "mark" in modules:
            matches.append(Match("mark", _mark(arg()), neg))
        elif tok in ("--ctstate", "--state") and "conntrack" in modules:
            matches.append(Match("ctstate", frozenset(arg().split(",")), neg))
        elif tok in ("-j", "--jump", "-g", "--goto"):
            if neg:
                raise fail("negated target")
            target, goto = arg(), tok in ("-g", "--goto")
        else:
            raise fail(f"unsupported token {tok!r}")
        neg = False
        i += step
    if "--rcheck" in recent and "--set" in recent:
        raise fail("both --rcheck and --set")
    if "--rcheck" in recent or "--set" in recent:
        if "--name" not in recent:
            raise fail("-m recent without --name")
        kind = "rcheck" if "--rcheck" in recent else "rset"
        matches.append(Match(kind, recent["--name"],
                             recent.get("--rcheck") == "!"))
    return Rule(chain, tuple(matches), target, goto, tuple(options), line,
                text)


def parse_tables(text: str, interfaces: bool = False) -> dict[str, dict[str, list[Rule]]]:
    """Apply iptables-restore text to empty tables (our subset of syntax);
    interfaces: -i/-o are understood (the tracer knows the interfaces)."""
    tables: dict[str, dict[str, list[Rule]]] = {}
    table: dict[str, list[Rule]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = tables.setdefault(line[1:], {})
            for chain in BUILTIN.get(line[1:], ()):
                table.setdefault(chain, [])
            continue
        if table is None:
            raise TracerError(f"line {number}: rule outside a table: {line}")
        if line == "COMMIT":
            table = None
            continue
        tokens = shlex.split(line)
        op, chain = tokens[0], tokens[1] if len(tokens) > 1 else ""
        if op.startswith(":"):
            table[op[1:]] = [] if op[1:] not in BUILTIN_ALL else table[op[1:]]
        elif op == "-X":
            table.pop(chain, None)
        elif op in ("-A", "-I"):
            if chain not in table:
                raise TracerError(f"line {number}: no chain {chain}: {line}")
            rest = tokens[2:]
            pos = 0
            if op == "-I" and rest and rest[0].isdigit():
                pos, rest = int(rest[0]) - 1, rest[1:]
            rule = parse_rule(chain, rest, number, line, interfaces)
            if op == "-A":
                table[chain].append(rule)
            else:
                table[chain].insert(pos, rule)
        else:
            raise TracerError(f"line {number}: unsupported command {op!r}")
    return tables


class Tracer(PacketTracer):
    """Walks packets through parsed iptables rules; local_addresses: the node's;
    interfaces: its local pod IPs -> cali veths (needed for -i/-o rules)."""

    def __init__(self, text: str, local_addresses=(), interfaces=None) -> None:
        super().__init__(local_addresses, interfaces)
        self.tables = parse_tables(text, interfaces is not None)

    def entry_chains(self, hook: str) -> list[tuple[str, str]]:
        return [(table, chain) for table, chain in HOOK_CHAINS[hook]
                if chain in self.tables.get(table, {})]

    def chain_rules(self, table: str, chain: str) -> list[Rule] | None:
        return self.tables.get(table, {}).get(chain)

    def evaluate(self, rule: Rule, pk: Packet, env: Env) -> list[Effect]:
        """The matches decide (``-m statistic`` splits the branch), then the
        target acts on the packet that matched."""
        return [self._target(rule, self._recent_set(rule, pk), share) if matched
                else Effect(share, pk, MISS)
                for share, matched in self._matches(rule, pk, env)]

    def _matches(self, rule: Rule, pk: Packet, env: Env) -> list[tuple[float, bool]]:
        """[(share of the branch, matched)] for rule against pk."""
        branch_p: float | None = None
        for m in rule.matches:
            if m.kind == "statistic":
                branch_p = 1.0 - m.value if m.negated else m.value
                continue
            if m.kind in ("src", "dst"):
                ok = ipaddress.ip_address(pk.src if m.kind == "src" else pk.dst) in m.value
            elif m.kind == "proto":
                ok = m.value in ("all", pk.protocol.lower())
            elif m.kind == "dport":
                ok = m.value[0] <= pk.dport <= m.value[1]
            elif m.kind == "dports":
                ok = any(lo <= pk.dport <= hi for lo, hi in m.value)
            elif m.kind in ("iif", "oif"):
                ok = _iface_matches(m.value, pk.iif if m.kind == "iif" else pk.oif)
            elif m.kind in ("dst_local", "src_local"):
                ok = env.is_local(pk.dst if m.kind == "dst_local" else pk.src)
            elif m.kind == "mark":
                ok = pk.mark & m.value[1] == m.value[0]
            elif m.kind == "ctstate":
                states = {"NEW"} | ({"DNAT"} if pk.dnat else set())
                ok = bool(states & m.value)
            elif m.kind == "rcheck":
                ok = m.value in env.recent
            elif m.kind == "rset":
                ok = True
            else:
                raise TracerError(f"unknown match {m.kind} in: {rule.text}")
            if ok == m.negated:
                return [(1.0, False)]
        if branch_p is None:
            return [(1.0, True)]
        return [(branch_p, True), (1.0 - branch_p, False)]

    @staticmethod
    def _recent_set(rule: Rule, pk: Packet) -> Packet:
        """pk with the client put in the lists of rule's ``-m recent --set``."""
        for m in rule.matches:
            if m.kind == "rset":
                pk = pk.remembered(m.value)
        return pk

    @staticmethod
    def _target(rule: Rule, pk: Packet, share: float) -> Effect:
        """What a matched rule's target does."""
        t = rule.target
        if t is None:
            return Effect(share, pk, NEXT)
        if t in VERDICTS:
            return Effect(share, pk, t)
        if t == "DNAT":
            to = rule.option("--to-destination")
            if to is None:
                raise TracerError(f"DNAT without --to-destination: {rule.text}")
            return Effect(share, pk.translated(to), NAT)
        if t == "MASQUERADE":
            return Effect(share, replace(pk, masquerade=True), NAT)
        if t == "MARK":
            return Effect(share, replace(pk, mark=_marked(rule, pk.mark)), NEXT)
        if t in ("SNAT", "REDIRECT", "LOG", "MASQ"):
            raise TracerError(f"unsupported target {t}: {rule.text}")
        return Effect(share, pk, GOTO if rule.goto else JUMP, t)


def _iface_matches(pattern: str, name: str) -> bool:
    """iptables' -i/-o: a trailing + matches every name with that prefix."""
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _marked(rule: Rule, mark: int) -> int:
    """The packet mark after rule's ``-j MARK``."""
    if rule.option("--or-mark") is not None:
        return mark | int(rule.option("--or-mark"), 0)
    if rule.option("--xor-mark") is not None:
        return mark ^ int(rule.option("--xor-mark"), 0)
    if rule.option("--set-xmark") is not None:
        value, mask = _mark(rule.option("--set-xmark"))
        return (mark & ~mask) ^ value
    raise TracerError(f"unsupported MARK rule: {rule.text}")


def trace(text: str, src: str, dst: str, dport: int, protocol: str = "TCP", *,
          local_addresses=(), locally_originated: bool = False,
          recent: frozenset[str] = frozenset(), interfaces=None) -> tuple[Outcome, ...]:
    """Parse text and trace one packet (see PacketTracer.trace)."""
    return Tracer(text, local_addresses, interfaces).trace(
        src, dst, dport, protocol, locally_originated=locally_originated,
        recent=recent)
